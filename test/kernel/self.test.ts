// The guest's own old address: after this guest migrated, an application
// still configured to bind to (or advertise) its old literal address keeps
// working. The old address becomes bindable without being used as a source,
// and traffic arriving at the new address reaches sockets bound on the old one
// unless a socket takes it at the new address.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from '../../src/kernel/exec.js';
import { ADDR, ADDRMAP, Lab, writeAtomically, type AgentProcess } from '../support/lab.js';

const OLD = 'fdaa:0:18:a7b:7d::77';
const NEW = 'fdaa:0:18:a7b:c2::77';

let lab: Lab;
let agent: AgentProcess | null;
beforeEach(async () => {
  lab = await Lab.create();
  // This time the guest is the migrated VM: it has NEW, the peer reaches it.
  await execFile('ip', ['-n', lab.guest, '-6', 'addr', 'add', `${NEW}/128`, 'dev', 'gv', 'nodad']);
  await execFile('ip', ['-n', lab.peer, '-6', 'route', 'add', `${NEW}/128`, 'via', ADDR.guest6]);
  agent = null;
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  await lab?.destroy();
});

/** Runs addrmap in the peer namespace, with files of its own: the peer's side of the same push. */
async function applyOnPeer(doc: unknown) {
  const dir = join(lab.dir, 'peer');
  await mkdir(dir, { recursive: true });
  await writeAtomically(join(dir, 'mappings.json'), JSON.stringify(doc));
  await writeFile(join(dir, 'config.json'), '{}');
  return execFile('ip', [
    'netns',
    'exec',
    lab.peer,
    'env',
    'ADDRMAP_ENABLED=1',
    `ADDRMAP_CONFIG=${dir}/config.json`,
    `ADDRMAP_MAPPINGS=${dir}/mappings.json`,
    `ADDRMAP_STATE_DIR=${dir}/state`,
    `ADDRMAP_CMDLINE_FILE=${lab.paths.cmdline}`,
    process.execPath,
    ADDRMAP,
    'apply',
  ]);
}

describe("the guest's own previous address", () => {
  it('is bindable but never a source, and a server bound only to it is reached at the new address and, through the peer’s mapping, at the old one', async () => {
    const push = { version: 1, generation: 1, mappings: [{ from: OLD, to: NEW }], self: [{ from: OLD, to: NEW }] };
    await lab.push(push);
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'applied');

    const lo = (await execFile('ip', ['-n', lab.guest, '-6', 'addr', 'show', 'dev', 'lo'])).stdout;
    expect(lo).toMatch(new RegExp(`inet6 ${OLD}/128 scope global nodad deprecated`));
    expect(lo).toContain('preferred_lft 0sec');

    await lab.serve(lab.guest, 'app-on-old', OLD, 7000); // the application's config still says OLD
    await lab.serve(lab.guest, 'svc-on-new', NEW, 7002); // another service, already moved to NEW

    // A peer that dials the new address reaches the socket bound on the old one...
    expect(await lab.tcp(NEW, lab.peer)).toEqual({ ok: true, reply: `app-on-old ${OLD}` });
    // ...while a socket bound at the new address keeps its own traffic.
    expect(await lab.tcp(NEW, lab.peer, 1500, 7002)).toEqual({ ok: true, reply: `svc-on-new ${NEW}` });

    // A peer whose config says OLD: its own addrmap maps OLD -> NEW (the same push, without "self").
    expect((await applyOnPeer({ version: 1, generation: 1, mappings: [{ from: OLD, to: NEW }] })).code).toBe(0);
    expect(await lab.tcp(OLD, lab.peer)).toEqual({ ok: true, reply: `app-on-old ${OLD}` });

    // The guest's own mapping OLD -> NEW is not installed here: OLD is local.
    expect(await lab.ruleset()).not.toMatch(new RegExp(`${OLD} counter`));
    const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
    expect(status.health).toBe('healthy');

    // New outgoing connections leave from the guest's other addresses, never OLD.
    const route = (await execFile('ip', ['-n', lab.guest, '-6', 'route', 'get', ADDR.peer6])).stdout;
    expect(route).not.toContain(OLD);

    // Flag off: the address and the rules go.
    await agent.stop('SIGKILL');
    agent = null;
    expect((await lab.addrmap(['apply'], { ADDRMAP_ENABLED: '0' })).code).toBe(0);
    expect((await execFile('ip', ['-n', lab.guest, '-6', 'addr', 'show', 'dev', 'lo'])).stdout).not.toContain(OLD);
    expect(await lab.ruleset()).toBe('');
  });

  it('refuses IPv4 own addresses with the reason', async () => {
    await lab.push({ version: 1, generation: 1, mappings: [], self: [{ from: '198.51.100.10', to: '198.51.100.20' }] });
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('self[0]: own previous addresses are supported for IPv6 only');
  });
});
