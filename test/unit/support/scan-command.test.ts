import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { scanCommand, type ScanOptions } from '../../../src/support/scan-command.js';
import { APPLIED_FILE, writeState, type AppliedState } from '../../../src/state/state-file.js';
import { tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
let stateDir: string;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  stateDir = join(dir, 'state');
  await mkdir(stateDir);
  const applied: AppliedState = {
    schema: 1,
    generation: 7,
    at: '2026-01-01T00:00:00.000Z',
    file: '/etc/addrmap/mappings.json',
    entries: [],
    resolved: [
      { family: 6, from: 'fdaa:0:18::2', to: 'fdaa:0:19::2' },
      { family: 6, from: 'fdaa:0:30::/64', to: 'fdaa:0:31::/64' },
      { family: 4, from: '198.51.100.10', to: '198.51.100.20' },
    ],
  };
  await writeState(stateDir, APPLIED_FILE, applied);
});
afterEach(async () => {
  await cleanup();
});

async function scan(o: Partial<ScanOptions>) {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d: Buffer) => (stdout += d.toString()));
  err.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await scanCommand({ paths: [], stateDir, out, err, ...o });
  return { code, stdout, stderr };
}

describe('addrmap scan', () => {
  test('addresses inside a prefix mapping are found, with the prefix and their own target; an honest summary', async () => {
    const conf = join(dir, 'app.conf');
    await writeFile(conf, 'members = [fdaa:0:30::7]:5432, fdaa:0:18::2\nother = fdaa:0:40::1\n');
    const r = await scan({ paths: [conf] });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      `${conf}:1:11: [fdaa:0:30::7]:5432 is stale (inside fdaa:0:30::/64), now fdaa:0:31::7: members = [fdaa:0:30::7]:5432, fdaa:0:18::2\n` +
        `${conf}:1:32: fdaa:0:18::2 is stale, now fdaa:0:19::2: members = [fdaa:0:30::7]:5432, fdaa:0:18::2\n`,
    );
    expect(r.stderr).toBe('2 occurrence(s) of 2 stale address(es) in 1 of 1 file(s) read (3 mapping(s) searched)\n');
  });

  test('a path that does not exist is a usage error, and nothing is scanned', async () => {
    const r = await scan({ paths: [dir, join(dir, 'missing.conf')] });
    expect(r).toEqual({ code: 2, stdout: '', stderr: `addrmap: scan: ${join(dir, 'missing.conf')} does not exist\n` });
  });

  test('clean files exit 0 and say what was searched', async () => {
    const conf = join(dir, 'clean.conf');
    await writeFile(conf, 'peer = fdaa:0:19::2\n');
    expect(await scan({ paths: [conf] })).toEqual({
      code: 0,
      stdout: '',
      stderr: '0 occurrence(s) of 0 stale address(es) in 0 of 1 file(s) read (3 mapping(s) searched)\n',
    });
  });

  test('--diff proposes the rewrite (names from --names where given) and writes nothing', async () => {
    const conf = join(dir, 'app.conf');
    const text = 'peer = [FDAA:0:18::2]:5432\ncache = ::ffff:198.51.100.10\nmember fdaa:0:30::7\n';
    await writeFile(conf, text);
    const names = join(dir, 'names.json');
    await writeFile(names, JSON.stringify({ 'FDAA:0:19::2': 'db.internal' }));
    const r = await scan({ paths: [conf], diff: true, names });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      `--- a${conf}\n+++ b${conf}\n@@ -1,3 +1,3 @@\n` +
        '-peer = [FDAA:0:18::2]:5432\n+peer = db.internal:5432\n' +
        '-cache = ::ffff:198.51.100.10\n+cache = ::ffff:198.51.100.20\n' +
        '-member fdaa:0:30::7\n+member fdaa:0:31::7\n',
    );
    expect(await readFile(conf, 'utf8')).toBe(text);
    // What the runbook says to do with it: patch applies it as it is.
    const applied = spawnSync('patch', ['-p1', '-d', '/'], { input: r.stdout, encoding: 'utf8' });
    expect(applied.status).toBe(0);
    expect(await readFile(conf, 'utf8')).toBe('peer = db.internal:5432\ncache = ::ffff:198.51.100.20\nmember fdaa:0:31::7\n');
  });

  test('a bad --names file is refused by entry, without repeating its bytes', async () => {
    const names = join(dir, 'names.json');
    await writeFile(names, JSON.stringify({ 'fdaa::1': 'ok.internal', 'not-an-address\u001b[31m': 'x' }));
    const r = await scan({ paths: [dir], diff: true, names });
    expect(r).toEqual({ code: 2, stdout: '', stderr: `addrmap: --names ${names}: entry 2: the key is not an IP address\n` });
    await writeFile(names, JSON.stringify({ 'fdaa::1': 'bad name;rm' }));
    expect((await scan({ paths: [dir], diff: true, names })).stderr).toBe(
      `addrmap: --names ${names}: entry 1 (fdaa::1): the value must be a host name\n`,
    );
  });

  test('no applied mappings: a usage error naming the state directory', async () => {
    const r = await scan({ paths: [dir], stateDir: join(dir, 'nowhere') });
    expect(r).toEqual({ code: 2, stdout: '', stderr: `addrmap: no applied mappings in ${join(dir, 'nowhere')}; nothing to look for\n` });
  });
});
