// Prefix mappings on the real kernel: a host evacuated wholesale moves every
// address behind its routing prefix; host bits are kept; a single-address
// mapping inside the prefix wins (longest match); a prefix evacuated twice
// resolves to the final one; IPv4 prefixes work the same.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { normalizeIp } from '../../src/net/address.js';
import { ADDR, Lab, type AgentProcess } from '../support/lab.js';

const OLD = 'fdaa:0:18:a7b:7d::/80';
const NEW = 'fdaa:0:18:a7b:c2::/80';
const NEWER = 'fdaa:0:18:a7b:c3::/80';
const host = (prefix: string, bits: string) => normalizeIp(prefix.replace('::/80', `:${bits}`));

let lab: Lab;
let agent: AgentProcess | null;
beforeEach(async () => {
  lab = await Lab.create();
  // The peer stands for every VM of the evacuated host: several addresses in each new prefix.
  await lab.setPeerAddresses([
    host(NEW, 'f066:b83b:2'),
    host(NEW, '0:0:5'),
    host(NEWER, 'f066:b83b:2'),
    host(NEWER, '0:0:5'),
    '198.51.100.18',
    '198.51.100.20',
  ]);
  await lab.startPeer();
  agent = null;
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  await lab?.destroy();
});

const push = (generation: number, mappings: { from: string; to: string }[]) => lab.push({ version: 1, generation, mappings });

describe('prefix mappings', () => {
  it('move every address of the old prefix to the same host bits in the new one; a single mapping inside wins', async () => {
    await lab.writeConfig({ allowedTargets: ['fc00::/7', '198.51.100.0/24'] });
    expect((await lab.tcp(ADDR.stale6, lab.guest, 800)).ok).toBe(false);
    await push(1, [
      { from: OLD, to: NEW },
      { from: host(OLD, '0:0:9'), to: host(NEWER, '0:0:5') },
      { from: '198.51.100.8/29', to: '198.51.100.16/29' },
    ]);
    agent = await lab.watch();
    expect(await agent.waitFor((e) => e.event === 'applied')).toMatchObject({ mappings: 3, kind: 'full' });

    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${host(NEW, 'f066:b83b:2')}` });
    expect(await lab.tcp(host(OLD, '0:0:5'))).toEqual({ ok: true, reply: `peer ${host(NEW, '0:0:5')}` });
    expect(await lab.udp(host(OLD, '0:0:5'))).toEqual({ ok: true, reply: 'peer ping' });
    expect(await lab.tcp(host(OLD, '0:0:9'))).toEqual({ ok: true, reply: `peer ${host(NEWER, '0:0:5')}` }); // longest match
    expect(await lab.tcp('198.51.100.10')).toEqual({ ok: true, reply: 'peer 198.51.100.18' });

    const ruleset = await lab.ruleset();
    expect(ruleset).toContain(
      `ip6 daddr ${OLD} counter packets - bytes - dnat ip6 to ip6 daddr & fdaa:0:18:a7b:c2:ffff:ffff:ffff | fdaa:0:18:a7b:c2::`,
    );

    // Counters and status for the prefix.
    await lab.tcpSend(ADDR.stale6, 20_000);
    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status.drift).toEqual([]);
    const row = status.mappings.find((m: { from: string }) => m.from === OLD);
    expect(row).toMatchObject({ to: NEW, inKernel: true });
    expect(row.bytes).toBeGreaterThan(20_000);

    const explained = await lab.addrmap(['explain', ADDR.stale6]);
    expect(explained.stdout).toContain(`${ADDR.stale6} is translated to ${host(NEW, 'f066:b83b:2')}`);
    expect(explained.stdout).toContain(`by the prefix mapping ${OLD} -> ${NEW}`);
  });

  it('a prefix evacuated twice resolves to the final prefix; retargeting rewrites the prefix rules atomically', async () => {
    await push(1, [{ from: OLD, to: NEW }]);
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'applied' && e.generation === 1);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${host(NEW, 'f066:b83b:2')}` });

    await push(2, [
      { from: OLD, to: NEW },
      { from: NEW, to: NEWER },
    ]);
    expect(await agent.waitFor((e) => e.event === 'applied' && e.generation === 2)).toMatchObject({
      kind: 'delta',
      added: 1,
      retargeted: 1,
    });
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${host(NEWER, 'f066:b83b:2')}` });
    expect(await lab.tcp(host(NEW, '0:0:5'))).toEqual({ ok: true, reply: `peer ${host(NEWER, '0:0:5')}` });
    const ruleset = await lab.ruleset();
    // Longest first, then the rest; both go straight to the final prefix.
    expect(ruleset).toContain(
      `ip6 daddr ${OLD} counter packets - bytes - dnat ip6 to ip6 daddr & fdaa:0:18:a7b:c3:ffff:ffff:ffff | fdaa:0:18:a7b:c3::`,
    );
    expect(ruleset).toContain(
      `ip6 daddr ${NEW} counter packets - bytes - dnat ip6 to ip6 daddr & fdaa:0:18:a7b:c3:ffff:ffff:ffff | fdaa:0:18:a7b:c3::`,
    );

    // A restart adopts the prefix rules as they are.
    await agent.stop('SIGKILL');
    agent = await lab.watch();
    expect(await agent.waitFor((e) => e.generation === 2 && (e.event === 'unchanged' || e.event === 'applied'))).toMatchObject({
      kind: 'none',
    });
  });

  it('a stale prefix outside every route gets a route for the prefix, following its target', async () => {
    await push(1, [{ from: 'fdbb:0:1::/80', to: NEW }]);
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect(await lab.tcp('fdbb:0:1::5')).toEqual({ ok: true, reply: `peer ${host(NEW, '0:0:5')}` });
    expect(await lab.routes()).toContain(`fdbb:0:1::/80 via ${ADDR.peer6} dev gv proto 173`);
  });

  it('refuses prefixes of different lengths, host bits set, or a prefix against an address', async () => {
    for (const [m, reason] of [
      [{ from: OLD, to: 'fdaa:0:18:a7b::/64' }, /prefix lengths differ \(\/80 and \/64\)/],
      [{ from: 'fdaa:0:18:a7b:7d::1/80', to: NEW }, /host bits are set/],
      [{ from: OLD, to: ADDR.new6 }, /mappings\[0\]: from is a prefix but to is an address/],
    ] as const) {
      await push(1, [m]);
      const r = await lab.addrmap(['apply']);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(reason);
      // Named, never quoted: the refused file's text stays out of the message.
      expect(r.stderr).not.toContain(m.from);
    }
    expect(await lab.ruleset()).toBe('');
  });
});
