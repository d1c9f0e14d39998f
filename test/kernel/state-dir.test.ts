// The state directory is trusted like the mapping file: someone else's
// directory is not used (a forged generation there locks nothing out), a
// root-owned one writable by others is repaired, a planted symlink is never
// written through, and a FIFO planted as a state file hangs nobody.
import { execFileSync } from 'node:child_process';
import { chmod, chown, mkdir, readFile, readdir, lstat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADDR, Lab, logEvents, mappingFile } from '../support/lab.js';

let lab: Lab;
beforeEach(async () => {
  lab = await Lab.create();
  await lab.startPeer();
  await lab.push(mappingFile(1, [[ADDR.stale6, ADDR.new6]]));
});
afterEach(async () => {
  await lab?.destroy();
});

describe('the state directory', () => {
  it("someone else's is not used: a forged generation there refuses nothing, and nothing is written into it", async () => {
    const dir = lab.paths.stateDir;
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'status.json'),
      JSON.stringify({
        schema: 1,
        pid: null,
        acceptedGeneration: 2 ** 53 - 1,
        applied: null,
        flag: { enabled: true, source: 'environment' },
      }),
    );
    await chown(join(dir, 'status.json'), 65534, 65534);
    await chown(dir, 65534, 65534);
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(0);
    const events = logEvents(r.stdout);
    expect(events.find((e) => e.event === 'state_dir_untrusted')?.reason).toMatch(/owned by uid 65534, not root/);
    expect(events.find((e) => e.event === 'applied')).toMatchObject({ generation: 1 });
    expect(await readdir(dir)).toEqual(['status.json']);
    expect(await lab.tcp(ADDR.stale6)).toEqual({ ok: true, reply: `peer ${ADDR.new6}` });
  });

  it('a root-owned one writable by others is repaired, and a symlink planted as a state file is replaced, never written through', async () => {
    const dir = lab.paths.stateDir;
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o777);
    const victim = join(lab.dir, 'victim');
    await writeFile(victim, 'precious\n');
    await symlink(victim, join(dir, 'status.json'));
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    expect((await lstat(dir)).mode & 0o777).toBe(0o755);
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
    expect((await lstat(join(dir, 'status.json'))).isFile()).toBe(true);
  });

  it('a FIFO planted as a state file hangs neither status nor the agent', async () => {
    const dir = lab.paths.stateDir;
    expect((await lab.addrmap(['apply'])).code).toBe(0);
    execFileSync('rm', ['-f', join(dir, 'applied.json')]);
    execFileSync('mkfifo', [join(dir, 'applied.json')]);
    const started = Date.now();
    const status = await lab.addrmap(['status', '--json']);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(JSON.parse(status.stdout).problems.join('\n')).toMatch(/state not read: .*applied\.json: not a regular file/);
    await lab.push(mappingFile(2, [[ADDR.stale6, ADDR.newer6]]));
    const r = await lab.addrmap(['apply']);
    expect(r.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
