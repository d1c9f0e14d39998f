import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { RouteTable, sameVia } from '../../../src/kernel/route-table.js';

describe('RouteTable: the kernel answer for a main table under the default rules', () => {
  const t = new RouteTable([
    { family: 6, dst: 'default', dev: 'eth0', gateway: 'fe80::1' },
    { family: 6, dst: 'fdaa::/16', dev: 'eth1', gateway: 'fe80::2' },
    { family: 6, dst: 'fdaa:0:18::/48', dev: 'eth1', gateway: 'fe80::3', metric: 200 },
    { family: 6, dst: 'fdaa:0:18::/48', dev: 'eth1', gateway: 'fe80::4', metric: 100 },
    { family: 6, dst: 'fdaa:0:18:a7b::1', dev: 'eth2' },
    { family: 6, dst: 'fdbb::/16', type: 'unreachable' },
    { family: 4, dst: '198.51.100.0/24', dev: 'eth0' },
    { family: 4, dst: '198.51.100.128/25', dev: 'eth1', gateway: '192.0.2.1' },
  ]);

  test('longest prefix wins; among equal prefixes the lowest metric', () => {
    expect(t.lookup(6, 'fdaa:0:18:a7b::1')).toEqual({ dev: 'eth2' });
    expect(t.lookup(6, 'fdaa:0:18:a7b::2')).toEqual({ dev: 'eth1', gateway: 'fe80::4' });
    expect(t.lookup(6, 'fdaa:1::1')).toEqual({ dev: 'eth1', gateway: 'fe80::2' });
    expect(t.lookup(6, 'fdcc::1')).toEqual({ dev: 'eth0', gateway: 'fe80::1' });
    expect(t.lookup(4, '198.51.100.200')).toEqual({ dev: 'eth1', gateway: '192.0.2.1' });
    expect(t.lookup(4, '198.51.100.20')).toEqual({ dev: 'eth0' });
  });

  test('no route, or an unreachable one, is null', () => {
    expect(t.lookup(6, 'fdbb::1')).toBeNull();
    expect(t.lookup(4, '203.0.113.1')).toBeNull();
    expect(new RouteTable([]).lookup(6, 'fdaa::1')).toBeNull();
  });

  test('sameVia compares device and gateway; null is never the same', () => {
    expect(sameVia({ dev: 'eth0' }, { dev: 'eth0' })).toBe(true);
    expect(sameVia({ dev: 'eth0', gateway: 'fe80::1' }, { dev: 'eth0' })).toBe(false);
    expect(sameVia(null, { dev: 'eth0' })).toBe(false);
  });
});

describe('RouteTable: lookups on 16-bit groups agree with integer arithmetic', () => {
  const big = (groups: number[]) => groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
  const text6 = (groups: number[]) => groups.map((g) => g.toString(16)).join(':');
  // Few distinct group values, so that random addresses often fall into the random prefixes.
  const group = fc.constantFrom(0, 1, 0xfdaa, 0xfdab, 0x8000, 0xffff);
  const address = fc.array(group, { minLength: 8, maxLength: 8 });

  test('the longest matching prefix of any length, as a BigInt reference finds it', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(address, fc.integer({ min: 0, max: 128 })), { minLength: 1, maxLength: 12 }),
        fc.array(address, { maxLength: 20 }),
        (routes, probes) => {
          const entries = routes.map(([g, len], i) => {
            const mask = len === 0 ? 0n : ((1n << BigInt(len)) - 1n) << BigInt(128 - len);
            const net = big(g) & mask;
            const groups = Array.from({ length: 8 }, (_, k) => Number((net >> BigInt(112 - 16 * k)) & 0xffffn));
            return { family: 6 as const, dst: len === 0 ? 'default' : `${text6(groups)}/${len}`, dev: `eth${i}`, len, net, mask };
          });
          const table = new RouteTable(entries);
          for (const p of probes) {
            const v = big(p);
            // First listed wins among equal prefixes (all metrics 0), as the table keeps the first.
            let best: (typeof entries)[number] | undefined;
            for (const e of entries) if ((v & e.mask) === e.net && (!best || e.len > best.len)) best = e;
            expect(table.lookup(6, text6(p))).toEqual(best ? { dev: best.dev } : null);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('IPv4 prefixes that split an octet', () => {
    const t = new RouteTable([
      { family: 4, dst: '10.0.0.0/7', dev: 'a' },
      { family: 4, dst: '10.1.16.0/20', dev: 'b' },
      { family: 4, dst: '10.1.31.255', dev: 'c' },
    ]);
    expect(t.lookup(4, '11.200.0.1')).toEqual({ dev: 'a' });
    expect(t.lookup(4, '12.0.0.1')).toBeNull();
    expect(t.lookup(4, '10.1.31.254')).toEqual({ dev: 'b' });
    expect(t.lookup(4, '10.1.31.255')).toEqual({ dev: 'c' });
    expect(t.lookup(4, '10.1.32.0')).toEqual({ dev: 'a' });
  });
});
