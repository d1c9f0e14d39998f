// Docs that cannot drift: the log events the code writes, the list in
// src/agent/events.ts and the table in docs/operations.md are the same set;
// so are the top-level fields `status --json` prints and their table there.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { LOG_EVENTS } from '../../src/agent/events.js';
import { collectStatus } from '../../src/support/status.js';
import { tempDir } from './fakes.js';

const ROOT = resolve(import.meta.dirname, '../..');
const operations = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');

/** The first cells (`name`, or several `a`, `b`) of the table after a heading line. */
function tableNames(after: string): string[] {
  const start = operations.indexOf(after);
  expect(start, after).toBeGreaterThan(-1);
  const lines = operations.slice(start).split('\n');
  const first = lines.findIndex((l) => l.startsWith('| '));
  const names: string[] = [];
  for (const l of lines.slice(first + 2)) {
    if (!l.startsWith('|')) break;
    names.push(...[...l.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.replace(/\[\]$/, '')));
  }
  return names.sort();
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => readFileSync(join(e.parentPath, e.name), 'utf8'));
}

describe('log events', () => {
  const written = new Set(sources(join(ROOT, 'src')).flatMap((t) => [...t.matchAll(/event: '([a-z_]+)'/g)].map((m) => m[1]!)));
  // The pass writes one of two names through a conditional.
  written.add('applied').add('unchanged');

  test('every event the code writes is in the list, and every listed one is written', () => {
    expect([...written].sort()).toEqual(Object.keys(LOG_EVENTS).sort());
  });

  test('docs/operations.md lists exactly those events', () => {
    expect(tableNames('| event | meaning |')).toEqual(Object.keys(LOG_EVENTS).sort());
  });
});

describe('status --json', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterEach(async () => {
    await cleanup();
  });

  test('docs/operations.md lists exactly its top-level fields', async () => {
    const report = await collectStatus({ stateDir: dir, nft: null, conntrack: null });
    expect(tableNames('Its\ntop-level fields')).toEqual(Object.keys(report).sort());
  });
});
