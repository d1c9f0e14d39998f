// The guest's own addresses come from /proc/net; a mapping that is or holds
// one is left out of the desired state.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { readLocalAddresses, withoutSelfCapture } from '../../../src/net/local-addresses.js';
import { desired } from '../fakes.js';

describe('readLocalAddresses', () => {
  test('reads IPv6 from if_inet6 and IPv4 from the LOCAL host entries of fib_trie, not networks or broadcasts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'addrmap-procnet-'));
    await writeFile(
      join(dir, 'if_inet6'),
      '00000000000000000000000000000001 01 80 10 80       lo\nfd000001000000000000000000000001 02 40 00 80       gv\n',
    );
    await writeFile(
      join(dir, 'fib_trie'),
      [
        'Main:',
        '  +-- 0.0.0.0/0 3 0 5',
        '     |-- 192.0.2.0',
        '        /24 link UNICAST',
        '     |-- 192.0.2.1',
        '        /32 host LOCAL',
        '     |-- 192.0.2.255',
        '        /32 link BROADCAST',
        'Local:',
        '     |-- 192.0.2.1',
        '        /32 host LOCAL',
        '     |-- 127.0.0.1',
        '        /32 host LOCAL',
        '',
      ].join('\n'),
    );
    const l = await readLocalAddresses(dir);
    expect(l.v6.sort()).toEqual(['::1', 'fd00:1::1']);
    expect(l.v4.sort()).toEqual(['127.0.0.1', '192.0.2.1']);
  });
});

describe('withoutSelfCapture', () => {
  const local = { v4: ['192.0.2.1'], v6: ['fd00:1::1', 'fdaa::77'] };

  test('drops a single mapping from a local address, a prefix holding one, loopback; keeps the rest untouched', () => {
    const d = {
      ...desired(
        { 'fd00:1::1': 'fdaa::1', 'fdaa::5': 'fdaa::6', '::1': 'fdaa::1' },
        { '192.0.2.1': '198.51.100.1', '127.0.0.9': '198.51.100.1', '198.51.100.7': '198.51.100.8' },
      ),
      prefixes: [
        { family: 6 as const, from: 'fd00:1::', to: 'fdbb::', length: 64 },
        { family: 6 as const, from: 'fdcc::', to: 'fdbb::', length: 64 },
      ],
    };
    const { desired: out, captured } = withoutSelfCapture(d, local);
    expect([...out.v6.keys()]).toEqual(['fdaa::5']);
    expect([...out.v4.keys()]).toEqual(['198.51.100.7']);
    expect(out.prefixes!.map((p) => p.from)).toEqual(['fdcc::']);
    expect(captured.map((c) => [c.from, c.local])).toEqual([
      ['fd00:1::/64', 'fd00:1::1'],
      ['192.0.2.1', '192.0.2.1'],
      ['127.0.0.9', '127.0.0.9'],
      ['fd00:1::1', 'fd00:1::1'],
      ['::1', '::1'],
    ]);
  });

  test("addrmap's own addresses on lo (the guest's previous ones) do not count, and nothing captured returns the same object", () => {
    const d = { ...desired({ 'fdaa::77': 'fdaa::78' }), prefixes: [{ family: 6 as const, from: 'fdaa::', to: 'fdbb::', length: 64 }] };
    const r = withoutSelfCapture(d, local, new Set(['fdaa::77']));
    expect(r.captured).toEqual([]);
    expect(r.desired).toBe(d);
  });
});
