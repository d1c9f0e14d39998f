import { chmod, chown, mkdir, symlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { readTrustedBytes, readTrustedFile, UntrustedFileError } from '../../../src/input/trusted-file.js';
import { ownUid } from '../../../src/input/config.js';
import { tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await cleanup();
});

const policy = () => ({ maxBytes: 1024, extraOwners: ownUid() });
const isRoot = process.geteuid?.() === 0;

async function refused(path: string, message: RegExp, p = policy()): Promise<void> {
  const err = await readTrustedFile(path, p).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UntrustedFileError);
  expect((err as Error).message).toMatch(message);
}

describe('readTrustedFile', () => {
  test('reads a file owned by root (or the running user) with mode 0644', async () => {
    const path = join(dir, 'mappings.json');
    await writeFile(path, '{"ok": true}', { mode: 0o644 });
    expect(await readTrustedFile(path, policy())).toBe('{"ok": true}');
  });

  test('a missing file, or a missing directory on the way, reads as null', async () => {
    expect(await readTrustedFile(join(dir, 'absent.json'), policy())).toBeNull();
    expect(await readTrustedFile(join(dir, 'no', 'such', 'dir', 'absent.json'), policy())).toBeNull();
  });

  test('a file writable by group or others is refused', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, '{}');
    await chmod(path, 0o664);
    await refused(path, /writable by group or others \(mode 0664\)/);
    await chmod(path, 0o646);
    await refused(path, /writable by group or others \(mode 0646\)/);
  });

  test('a directory on the path writable by others is refused, unless sticky (like /tmp)', async () => {
    const sub = join(dir, 'drop');
    await mkdir(sub);
    const path = join(sub, 'm.json');
    await writeFile(path, '{}');
    await chmod(sub, 0o777);
    await refused(path, /directory .*drop is writable by group or others \(mode 0777\)/);
    await chmod(sub, 0o1777);
    expect(await readTrustedFile(path, policy())).toBe('{}');
  });

  test('the file must not be a symlink', async () => {
    const real = join(dir, 'real.json');
    await writeFile(real, '{}');
    const link = join(dir, 'm.json');
    await symlink(real, link);
    await refused(link, /is a symlink/);
  });

  test('no directory on the path may be a symlink', async () => {
    const realDir = join(dir, 'real');
    await mkdir(realDir);
    await writeFile(join(realDir, 'm.json'), '{}');
    await symlink(realDir, join(dir, 'via'));
    await refused(join(dir, 'via', 'm.json'), /reached through the symlink .*via/);
  });

  test('a directory in place of the file is refused', async () => {
    await mkdir(join(dir, 'm.json'));
    await refused(join(dir, 'm.json'), /not a regular file/);
  });

  test('a FIFO in place of the file is refused without hanging', async () => {
    const path = join(dir, 'm.json');
    execFileSync('mkfifo', [path]);
    await refused(path, /not a regular file/);
  });

  test('a file over the size cap is refused before it is parsed', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, 'x'.repeat(1025));
    await refused(path, /1025 bytes is over the 1024-byte limit/);
    await writeFile(path, 'x'.repeat(1024));
    expect(await readTrustedFile(path, policy())).toHaveLength(1024);
  });

  test('a file owned by someone else is refused', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, '{}');
    if (isRoot) {
      await chown(path, 12345, 0);
      await refused(path, /owned by uid 12345, not root/);
    } else {
      // Without the running user among the trusted owners, its own temp dir is untrusted.
      await refused(path, /owned by uid \d+, not root/, { maxBytes: 1024, extraOwners: [] });
    }
  });

  test('a directory owned by someone else is refused', async () => {
    const sub = join(dir, 'theirs');
    await mkdir(sub);
    await writeFile(join(sub, 'm.json'), '{}');
    if (isRoot) {
      await chown(sub, 12345, 0);
      await refused(join(sub, 'm.json'), /directory .*theirs is owned by uid 12345, not root/);
    } else {
      await refused(join(sub, 'm.json'), /directory .* is owned by uid \d+, not root/, { maxBytes: 1024, extraOwners: [] });
    }
  });
});

describe('readTrustedBytes into a spare buffer', () => {
  test('reads into the spare when the file fits, into a buffer of its own when not; never into a shared pool', async () => {
    const path = join(dir, 'mappings.json');
    await writeFile(path, 'a'.repeat(300), { mode: 0o644 });
    const first = (await readTrustedBytes(path, policy()))!;
    // Small files too get a buffer of their own: a spare is written over.
    expect(first.byteOffset).toBe(0);
    expect(first.buffer.byteLength).toBe(301);
    await writeFile(path, 'b'.repeat(200), { mode: 0o644 });
    const second = (await readTrustedBytes(path, policy(), first))!;
    expect(second.buffer).toBe(first.buffer);
    expect(second.toString()).toBe('b'.repeat(200));
    await writeFile(path, 'c'.repeat(400), { mode: 0o644 });
    const third = (await readTrustedBytes(path, policy(), second))!;
    expect(third.buffer).not.toBe(first.buffer);
    expect(third.toString()).toBe('c'.repeat(400));
  });
});
