import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { MAX_FILE_BYTES, scanPaths, type Occurrence, type ScanStats } from '../../../src/support/scan.js';

const V6 = 'fdaa:0:18::2';
const V6_TO = 'fdaa:0:19::2';
const V4 = '198.51.100.10';
const V4_TO = '198.51.100.20';
const stale: ReadonlyMap<string, string> = new Map([
  [V6, V6_TO],
  [V4, V4_TO],
]);

// ---------------------------------------------------------------------------

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'addrmap-scan-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function scan(paths: string[], keys: ReadonlyMap<string, string> = stale): Promise<{ found: Occurrence[]; stats: ScanStats }> {
  const stats: ScanStats = { files: 0, skipped: [] };
  const found: Occurrence[] = [];
  for await (const o of scanPaths(paths, keys, stats)) found.push(o);
  return { found, stats };
}

const brief = (o: Occurrence) => `${o.file.slice(dir.length + 1)}:${o.line}:${o.column} ${o.text} -> ${o.target}`;

describe('scanPaths', () => {
  test('finds every form with file, 1-based line and column, target and line text', async () => {
    const file = join(dir, 'app.conf');
    await writeFile(
      file,
      [
        '# database',
        'host = "[FDAA:0:18::2]:5432"',
        '  replica=fdaa:0000:0018:0000:0000:0000:0000:0002 , other=fdaa:0:18::3',
        'url=postgres://[fdaa:0:18::2]:5432/db',
        'iface fdaa:0:18::2%eth0',
        'v4 198.51.100.10:5432 and 198.51.100.11',
        'mac aa:bb:cc:dd:ee:ff version 198.51.100.10.1',
        'mapped ::ffff:198.51.100.10',
        '',
      ].join('\n'),
    );
    const { found, stats } = await scan([file]);
    expect(found.map(brief)).toEqual([
      `app.conf:2:9 [FDAA:0:18::2]:5432 -> ${V6_TO}`,
      `app.conf:3:11 fdaa:0000:0018:0000:0000:0000:0000:0002 -> ${V6_TO}`,
      `app.conf:4:16 [fdaa:0:18::2]:5432 -> ${V6_TO}`,
      `app.conf:5:7 fdaa:0:18::2%eth0 -> ${V6_TO}`,
      `app.conf:6:4 198.51.100.10:5432 -> ${V4_TO}`,
      `app.conf:8:8 ::ffff:198.51.100.10 -> ${V4_TO}`,
    ]);
    expect(found[0]).toEqual({
      file,
      line: 2,
      column: 9,
      text: '[FDAA:0:18::2]:5432',
      address: V6,
      target: V6_TO,
      lineText: 'host = "[FDAA:0:18::2]:5432"',
    });
    expect(found[1]!.lineText).toBe('  replica=fdaa:0000:0018:0000:0000:0000:0000:0002 , other=fdaa:0:18::3');
    expect(found[4]!.address).toBe(V4);
    expect(stats).toEqual({ files: 1, skipped: [] });
  });

  test('several occurrences on one line, in column order', async () => {
    const file = join(dir, 'one-line');
    await writeFile(file, 'x 198.51.100.10 [fdaa:0:18::2]:1 FDAA:0:18::2 198.51.100.10\n');
    const { found } = await scan([file]);
    expect(found.map((o) => [o.line, o.column, o.text])).toEqual([
      [1, 3, '198.51.100.10'],
      [1, 17, '[fdaa:0:18::2]:1'],
      [1, 34, 'FDAA:0:18::2'],
      [1, 47, '198.51.100.10'],
    ]);
  });

  test('CRLF line endings: same lines and columns, no CR in the line text', async () => {
    const file = join(dir, 'windows.ini');
    await writeFile(file, '[db]\r\nhost=198.51.100.10\r\n\r\naddr=[fdaa:0:18::2]:5432\r\nlast fdaa:0:18::2');
    const { found } = await scan([file]);
    expect(found.map((o) => [o.line, o.column, o.text, o.lineText])).toEqual([
      [2, 6, '198.51.100.10', 'host=198.51.100.10'],
      [4, 6, '[fdaa:0:18::2]:5432', 'addr=[fdaa:0:18::2]:5432'],
      [5, 6, 'fdaa:0:18::2', 'last fdaa:0:18::2'],
    ]);
  });

  test('a UTF-8 byte order mark does not shift the first line', async () => {
    const file = join(dir, 'bom.txt');
    await writeFile(file, '\ufeff198.51.100.10\n');
    const { found } = await scan([file]);
    expect(found.map((o) => [o.line, o.column, o.lineText])).toEqual([[1, 1, '198.51.100.10']]);
  });

  test('a long line is clipped to 300 characters around the match', async () => {
    const file = join(dir, 'minified.json');
    const line = `{"pad":"${'x'.repeat(5000)}","host":"198.51.100.10","more":"${'y'.repeat(5000)}"}`;
    const head = `{"host":"[fdaa:0:18::2]:5432","pad":"${'z'.repeat(1000)}"}`;
    await writeFile(file, `${line}\n${head}\n`);
    const { found } = await scan([file]);
    expect(found).toHaveLength(2);
    const [mid, first] = found as [Occurrence, Occurrence];
    expect(mid.column).toBe(line.indexOf('198.51.100.10') + 1);
    expect(mid.lineText.length).toBeLessThanOrEqual(300);
    expect(mid.lineText).toContain('"host":"198.51.100.10"');
    expect(mid.lineText.startsWith('…') && mid.lineText.endsWith('…')).toBe(true);
    expect(first.lineText.length).toBeLessThanOrEqual(300);
    expect(first.lineText.startsWith('{"host":"[fdaa:0:18::2]:5432"')).toBe(true);
  });

  test('a big file is streamed, with right line numbers at the end', async () => {
    const file = join(dir, 'big.log');
    const lines = Array.from({ length: 200_000 }, (_, i) => `${i} connect 198.51.100.${i % 10} ok`);
    lines.push('tail [fdaa:0:18::2]:1');
    await writeFile(file, lines.join('\n') + '\n');
    const { found, stats } = await scan([file], new Map([[V6, V6_TO]]));
    expect(found.map((o) => [o.line, o.column])).toEqual([[200_001, 6]]);
    expect(stats.files).toBe(1);
  });

  test('keys are compared canonically even if the caller did not canonicalise them', async () => {
    const file = join(dir, 'f');
    await writeFile(file, 'fdaa:0:18::2\n');
    const { found } = await scan([file], new Map([['FDAA:0000:0018::0002', V6_TO]]));
    expect(found.map((o) => o.address)).toEqual([V6]);
  });

  test('IPv4-mapped spellings match the IPv4 key: the kernel translates them as IPv4', async () => {
    const file = join(dir, 'f');
    await writeFile(file, '::ffff:198.51.100.10\n[::ffff:c633:640a]:80\n');
    expect((await scan([file])).found.map((o) => [o.line, o.text, o.address, o.target])).toEqual([
      [1, '::ffff:198.51.100.10', V4, V4_TO],
      [2, '[::ffff:c633:640a]:80', V4, V4_TO],
    ]);
  });

  test('walks directories recursively in sorted order; skips what it cannot or must not read', async () => {
    const root = join(dir, 'etc');
    await mkdir(join(root, 'b', 'deeper'), { recursive: true });
    await mkdir(join(root, 'a'));
    await writeFile(join(root, 'z.conf'), 'z=198.51.100.10\n');
    await writeFile(join(root, 'a', 'x.yaml'), 'hosts:\n  - "fdaa:0:18::2"\n');
    await writeFile(join(root, 'b', 'deeper', 'y.env'), 'DB=198.51.100.10:5432\nOTHER=198.51.100.11\n');
    await writeFile(join(root, 'b', 'B.txt'), 'nothing here\n');
    await writeFile(join(root, 'b', 'empty'), '');
    // Binary: a NUL within the first 8 KiB, with an address in it.
    await writeFile(join(root, 'b', 'data.bin'), Buffer.concat([Buffer.from('198.51.100.10\n'), Buffer.from([0, 1, 2])]));
    // Over the size cap (sparse, so cheap).
    const big = await open(join(root, 'huge.log'), 'w');
    await big.truncate(MAX_FILE_BYTES + 1);
    await big.close();
    // A symlink loop back to the top: must not be followed.
    await symlink('..', join(root, 'b', 'loop'));
    await symlink(root, join(root, 'a', 'abs-loop'));
    // A link that points at itself, and one that points nowhere.
    await symlink('self', join(root, 'self'));
    await symlink('no-such-file', join(root, 'dangling'));
    // A symlink to a file is read.
    await symlink('z.conf', join(root, 'link-to-file'));
    // A FIFO: opening it for reading would wait for a writer forever.
    execFileSync('mkfifo', [join(root, 'fifo')]);

    const { found, stats } = await scan([root, join(dir, 'missing')]);
    expect(found.map(brief)).toEqual([
      `etc/a/x.yaml:2:6 fdaa:0:18::2 -> ${V6_TO}`,
      `etc/b/deeper/y.env:1:4 198.51.100.10:5432 -> ${V4_TO}`,
      `etc/link-to-file:1:3 198.51.100.10 -> ${V4_TO}`,
      `etc/z.conf:1:3 198.51.100.10 -> ${V4_TO}`,
    ]);
    // a/x.yaml, b/B.txt, b/deeper/y.env, b/empty, link-to-file, z.conf
    expect(stats.files).toBe(6);
    const rel = (f: string) => f.slice(dir.length + 1);
    expect(stats.skipped.map((s) => [rel(s.file), s.reason])).toEqual([
      ['etc/a/abs-loop', 'symbolic link to a directory; not followed'],
      ['etc/b/data.bin', 'binary file (NUL byte in the first 8 KiB)'],
      ['etc/b/loop', 'symbolic link to a directory; not followed'],
      ['etc/dangling', 'dangling symbolic link (its target does not exist)'],
      ['etc/fifo', 'not a regular file (FIFO)'],
      ['etc/huge.log', `larger than 64 MiB (${MAX_FILE_BYTES + 1} bytes)`],
      ['etc/self', 'symbolic link loop'],
      ['missing', 'no such file or directory'],
    ]);
  });

  test('paths named on the command line: a file, a symlink to a directory (followed), a FIFO, a dangling link', async () => {
    await mkdir(join(dir, 'real'));
    await writeFile(join(dir, 'real', 'f'), '198.51.100.10\n');
    await writeFile(join(dir, 'g'), '[fdaa:0:18::2]\n');
    await symlink('real', join(dir, 'via-link'));
    await symlink('gone', join(dir, 'dangling'));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    const { found, stats } = await scan([join(dir, 'g'), join(dir, 'via-link'), join(dir, 'fifo'), join(dir, 'dangling')]);
    expect(found.map(brief)).toEqual([`g:1:1 [fdaa:0:18::2] -> ${V6_TO}`, `via-link/f:1:1 198.51.100.10 -> ${V4_TO}`]);
    expect(stats.files).toBe(2);
    expect(stats.skipped.map((s) => [s.file.slice(dir.length + 1), s.reason])).toEqual([
      ['fifo', 'not a regular file (FIFO)'],
      ['dangling', 'dangling symbolic link (its target does not exist)'],
    ]);
  });

  test('a read error is recorded with its reason, not thrown', async () => {
    // Offset 0 of a process's memory is never mapped: reading it fails with EIO.
    const { found, stats } = await scan(['/proc/self/mem', '/dev/null']);
    expect(found).toEqual([]);
    expect(stats.files).toBe(0);
    expect(stats.skipped).toEqual([
      { file: '/proc/self/mem', reason: expect.stringMatching(/^EIO: /) },
      { file: '/dev/null', reason: 'not a regular file (character device)' },
    ]);
  });

  test('stats are optional', async () => {
    await writeFile(join(dir, 'f'), '198.51.100.10\n');
    const found: Occurrence[] = [];
    for await (const o of scanPaths([dir, join(dir, 'missing')], stale)) found.push(o);
    expect(found).toHaveLength(1);
  });

  test('stopping early closes the file and leaves everything as it was', async () => {
    const file = join(dir, 'many');
    const content = '198.51.100.10\n'.repeat(10_000);
    await writeFile(file, content);
    const before = await stat(file);
    let n = 0;
    for await (const _ of scanPaths([file], stale)) {
      if (++n === 3) break;
    }
    expect(n).toBe(3);
    // Read-only: content and modification time untouched, nothing new in the directory.
    expect(await readFile(file, 'utf8')).toBe(content);
    expect((await stat(file)).mtimeMs).toBe(before.mtimeMs);
    const { found } = await scan([dir]);
    expect(found).toHaveLength(10_000);
  });

  test('an empty map finds nothing but still walks', async () => {
    await writeFile(join(dir, 'f'), '198.51.100.10\n');
    const { found, stats } = await scan([dir], new Map());
    expect(found).toEqual([]);
    expect(stats.files).toBe(1);
  });
});
