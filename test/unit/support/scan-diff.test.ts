import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { fileDiff, respell, rewrite } from '../../../src/support/scan-diff.js';
import type { Occurrence } from '../../../src/support/scan.js';
import { tempDir } from '../fakes.js';

describe('rewrite: the target in the form the stale address was written', () => {
  test.each([
    ['fdaa:0:18::2', 'fdaa:0:19::2', 'fdaa:0:19::2'],
    ['FDAA:0:18::2', 'fdaa:0:19::2', 'FDAA:0:19::2'],
    ['[fdaa:0:18::2]:5432', 'fdaa:0:19::2', '[fdaa:0:19::2]:5432'],
    ['[fdaa:0:18::2%25eth0]:80', 'fdaa:0:19::2', '[fdaa:0:19::2%25eth0]:80'],
    ['fdaa:0:18::2%eth0', 'fdaa:0:19::2', 'fdaa:0:19::2%eth0'],
    ['fdaa:0000:0018:0000:0000:0000:0000:0002', 'fdaa:0:19::2', 'fdaa:0000:0019:0000:0000:0000:0000:0002'],
    ['fdaa:0:18:0:0:0:0:2', 'fdaa:0:19::2', 'fdaa:0:19:0:0:0:0:2'],
    ['fdaa:0:18:0:0:0:0:2:5432', 'fdaa:0:19::2', 'fdaa:0:19:0:0:0:0:2:5432'],
    ['198.51.100.10', '198.51.100.20', '198.51.100.20'],
    ['198.51.100.10:5432', '198.51.100.20', '198.51.100.20:5432'],
    ['::ffff:198.51.100.10', '198.51.100.20', '::ffff:198.51.100.20'],
    ['[::FFFF:C633:640A]:80', '198.51.100.20', '[::FFFF:C633:6414]:80'],
    ['::ffff:c633:640a', '198.51.100.20', '::ffff:c633:6414'],
  ])('%s -> %s gives %s', (text, target, want) => {
    expect(rewrite(text, target)).toBe(want);
  });

  test('with a host name: brackets and zone go, the port stays', () => {
    expect(rewrite('[fdaa:0:18::2]:5432', 'fdaa:0:19::2', 'db.internal')).toBe('db.internal:5432');
    expect(rewrite('[fdaa:0:18::2%25eth0]', 'fdaa:0:19::2', 'db.internal')).toBe('db.internal');
    expect(rewrite('198.51.100.10:5432', '198.51.100.20', 'db.internal')).toBe('db.internal:5432');
    expect(rewrite('fdaa:0:18::2', 'fdaa:0:19::2', 'db.internal')).toBe('db.internal');
  });

  test('an IPv4-mapped spelling of an IPv6 target is written as the target', () => {
    expect(respell('fdaa::1', 'fdbb::1')).toBe('fdbb::1');
  });
});

describe('fileDiff', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterEach(async () => {
    await cleanup();
  });

  const hit = (file: string, line: number, column: number, text: string, address: string, target: string): Occurrence => ({
    file,
    line,
    column,
    text,
    address,
    target,
    lineText: '',
  });

  test('a unified diff with three lines of context, neighbouring changes in one hunk, the file untouched', async () => {
    const file = join(dir, 'app.conf');
    const lines = Array.from({ length: 20 }, (_, i) => `line ${i + 1}`);
    lines[1] = 'peer = [fdaa:0:18::2]:5432';
    lines[4] = 'backup = fdaa:0:18::2, fdaa:0:18::2';
    lines[17] = 'allow 198.51.100.10';
    const text = lines.join('\n') + '\n';
    await writeFile(file, text);
    const diff = await fileDiff(
      file,
      [
        hit(file, 2, 8, '[fdaa:0:18::2]:5432', 'fdaa:0:18::2', 'fdaa:0:19::2'),
        hit(file, 5, 10, 'fdaa:0:18::2', 'fdaa:0:18::2', 'fdaa:0:19::2'),
        hit(file, 5, 24, 'fdaa:0:18::2', 'fdaa:0:18::2', 'fdaa:0:19::2'),
        hit(file, 18, 7, '198.51.100.10', '198.51.100.10', '198.51.100.20'),
      ],
      new Map([['198.51.100.20', 'cache.internal']]),
    );
    expect(diff).toBe(
      [
        `--- a${file}`,
        `+++ b${file}`,
        '@@ -1,8 +1,8 @@',
        ' line 1',
        '-peer = [fdaa:0:18::2]:5432',
        '+peer = [fdaa:0:19::2]:5432',
        ' line 3',
        ' line 4',
        '-backup = fdaa:0:18::2, fdaa:0:18::2',
        '+backup = fdaa:0:19::2, fdaa:0:19::2',
        ' line 6',
        ' line 7',
        ' line 8',
        '@@ -15,6 +15,6 @@',
        ' line 15',
        ' line 16',
        ' line 17',
        '-allow 198.51.100.10',
        '+allow cache.internal',
        ' line 19',
        ' line 20',
        '',
      ].join('\n'),
    );
  });

  test('a last line without a newline is marked; a file changed since the scan gives no hunk for what moved', async () => {
    const file = join(dir, 'x.conf');
    await writeFile(file, 'a\npeer fdaa:0:18::2');
    expect(await fileDiff(file, [hit(file, 2, 6, 'fdaa:0:18::2', 'fdaa:0:18::2', 'fdaa:0:19::2')], new Map())).toBe(
      `--- a${file}\n+++ b${file}\n@@ -1,2 +1,2 @@\n a\n-peer fdaa:0:18::2\n\\ No newline at end of file\n+peer fdaa:0:19::2\n\\ No newline at end of file\n`,
    );
    await writeFile(file, 'a\npeer   fdaa:0:18::2\n');
    expect(await fileDiff(file, [hit(file, 2, 6, 'fdaa:0:18::2', 'fdaa:0:18::2', 'fdaa:0:19::2')], new Map())).toBe('');
  });
});
