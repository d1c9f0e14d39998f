// A guest image without netbase (debootstrap's minbase, slim container
// images): no /etc/protocols, no /etc/services, so nft lists protocol numbers
// where a full image shows names. addrmap must read its own table either way,
// or it takes every listing for drift and rebuilds the table over and over.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, mappingFile, type AgentProcess } from '../support/lab.js';

const OLD = 'fdaa:0:18:a7b:7d::77';
const NEW = 'fdaa:0:18:a7b:c2::77';

let lab: Lab;
let agent: AgentProcess | null = null;
let etc: string;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  // `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc/*: every process
  // of this guest (addrmap, nft, status) sees empty protocol and service files.
  etc = join('/etc/netns', lab.guest);
  await mkdir(etc, { recursive: true });
  await writeFile(join(etc, 'protocols'), '');
  await writeFile(join(etc, 'services'), '');
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  agent = null;
  await lab?.destroy();
  await rm(etc, { recursive: true, force: true });
});

describe('an image without /etc/protocols and /etc/services', () => {
  it('lists protocol numbers, and addrmap still takes its table for its own: no repairs, status healthy', async () => {
    await lab.push({ ...mappingFile(1, [[ADDR.stale6, ADDR.new6]]), self: [{ from: OLD, to: NEW }] });
    agent = await lab.watch();
    await agent.waitFor((e) => e.event === 'applied');
    // The names are really gone for this guest: nft shows numbers.
    const listed = await lab.exec(lab.guest, 'nft', ['-j', 'list', 'chain', 'inet', 'addrmap', 'self_prerouting']);
    expect(listed.stdout).toContain('{"set": [6, 17]}');
    expect(listed.stdout).not.toContain('"tcp"');

    // The verification after the start's rebuild, and a few chain checks.
    await new Promise((r) => setTimeout(r, 3000));
    expect(agent.events.filter((e) => e.event === 'drift_repaired' || e.event === 'drift_detected')).toEqual([]);
    const status = await lab.addrmap(['status', '--json']);
    const report = JSON.parse(status.stdout);
    expect(report.drift).toEqual([]);
    expect(report.health).toBe('healthy');
    expect((await lab.tcp(ADDR.stale6)).ok).toBe(true);
  });
});
