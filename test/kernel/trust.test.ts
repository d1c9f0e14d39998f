// Files that someone other than root could have written, oversized files and
// targets outside the allowed ranges are refused: the kernel keeps the last
// good state, and the refusal shows in the logs and in status.
import { chmod, chown, mkdir, rename, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, mappingFile, writeAtomically, type AgentProcess } from '../support/lab.js';

let lab: Lab;
let agent: AgentProcess;
let good: string;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
  agent = await lab.watch();
  await agent.waitFor((e) => e.event === 'applied');
  good = await lab.ruleset();
});
afterEach(async () => {
  await agent?.stop('SIGKILL');
  await lab?.destroy();
});

async function expectRefused(reason: RegExp, change: () => Promise<unknown>) {
  const n = agent.events.filter((e) => e.event === 'refused').length;
  await change();
  const e = await agent.waitFor(() => agent.events.filter((x) => x.event === 'refused').length > n, 5000);
  const last = agent.events.filter((x) => x.event === 'refused').at(-1)!;
  expect(`${(last.entry as string | undefined) ?? ''} ${String(last.reason)}`).toMatch(reason);
  expect(await lab.ruleset()).toBe(good);
  expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
  const status = JSON.parse((await lab.addrmap(['status', '--json'])).stdout);
  expect(status.lastPush.outcome).toBe('refused');
  expect(`${status.lastPush.entry ?? ''} ${status.lastPush.reason}`).toMatch(reason);
  return e;
}

const next = (g: number) => JSON.stringify(mappingFile(g, [[ADDR.stale6, ADDR.newer6]]));

describe('trust', () => {
  it('refuses a mapping file not owned by root', async () => {
    await expectRefused(/owned by uid 65534, not root/, async () => {
      const tmp = `${lab.paths.mappings}.tmp`;
      await writeFile(tmp, next(2));
      await chown(tmp, 65534, 65534);
      await rename(tmp, lab.paths.mappings);
    });
  });

  it('refuses a mapping file writable by group or others', async () => {
    await expectRefused(/writable by group or others \(mode 0664\)/, async () => {
      const tmp = `${lab.paths.mappings}.tmp`;
      await writeFile(tmp, next(2));
      await chmod(tmp, 0o664);
      await rename(tmp, lab.paths.mappings);
    });
  });

  it('refuses a mapping file that is a symlink, or reached through one', async () => {
    const elsewhere = join(lab.dir, 'elsewhere.json');
    await writeAtomically(elsewhere, next(2));
    await expectRefused(/is a symlink/, async () => {
      const tmp = `${lab.paths.mappings}.tmp`;
      await symlink(elsewhere, tmp);
      await rename(tmp, lab.paths.mappings);
    });
  });

  it('refuses a mapping file in a directory another user owns', async () => {
    await agent.stop('SIGKILL');
    const dir = join(lab.dir, 'push');
    await mkdir(dir);
    const file = join(dir, 'mappings.json');
    await writeAtomically(file, JSON.stringify(mappingFile(1, [[ADDR.stale6, ADDR.new6]])));
    agent = await lab.watch({ ADDRMAP_MAPPINGS: file });
    await agent.waitFor((e) => e.generation === 1);
    await expectRefused(/directory .*push is owned by uid 65534, not root/, async () => {
      await chown(dir, 65534, 65534);
      await writeAtomically(file, next(2));
    });
  });

  it('refuses a file over the size cap before parsing it', async () => {
    await expectRefused(/over the 33554432-byte limit/, async () => {
      const tmp = `${lab.paths.mappings}.tmp`;
      await writeFile(tmp, next(2));
      await truncate(tmp, 33 * 1024 * 1024); // padded with NULs: not even JSON
      await rename(tmp, lab.paths.mappings);
    });
  });

  it('refuses a target outside allowedTargets (default: fc00::/7 only)', async () => {
    const passes = agent.events.length;
    await lab.writeConfig({ allowedTargets: ['fdaa:0:18:a7b:c2::/80'] });
    // Let the agent take the new config in before the push, as an operator would.
    await agent.waitFor(() => agent.events.slice(passes).some((e) => e.event === 'unchanged'));
    await expectRefused(
      /mappings\[0\] to fdaa:0:18:a7b:c3:f066:b83b:2 is outside the allowed target ranges \(fdaa:0:18:a7b:c2::\/80\)/,
      () => lab.push(next(2)),
    );
    // Back to the default ranges: a push valid under both, then an IPv4 target, which the default refuses.
    await lab.push(mappingFile(3, [[ADDR.stale6, ADDR.new6]]));
    // A new generation with the same content: logged as applied with nothing to change.
    await agent.waitFor((e) => e.generation === 3 && (e.event === 'applied' || e.event === 'unchanged'));
    const passes2 = agent.events.length;
    await writeFile(lab.paths.config, '{}');
    await agent.waitFor(() => agent.events.slice(passes2).some((e) => e.event === 'unchanged'));
    await expectRefused(/to 198\.51\.100\.20 is outside the allowed target ranges \(fc00::\/7\)/, () =>
      lab.push(
        mappingFile(4, [
          [ADDR.stale6, ADDR.new6],
          [ADDR.stale4, ADDR.new4],
        ]),
      ),
    );
  });

  it('refuses a config file with the same rules, keeping the feature as it was', async () => {
    const n = agent.events.filter((e) => e.event === 'config_refused').length;
    const tmp = `${lab.paths.config}.tmp`;
    await writeFile(tmp, JSON.stringify({ enabled: false }));
    await chown(tmp, 65534, 65534);
    await rename(tmp, lab.paths.config);
    await agent.waitFor(() => agent.events.filter((x) => x.event === 'config_refused').length > n);
    const e = agent.events.filter((x) => x.event === 'config_refused').at(-1)!;
    expect(e.reason).toMatch(/config refused: .*owned by uid 65534, not root/);
    expect(await lab.ruleset()).toBe(good);
  });
});
