// Docs that cannot drift: the log events the code writes, the list in
// src/agent/events.ts and the table in docs/operations.md are the same set;
// so are the top-level fields `status --json` prints and their table there.
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import ts from 'typescript';
import { LOG_EVENTS } from '../../src/agent/events.js';
import type { Logger } from '../../src/agent/logger.js';
import { collectStatus } from '../../src/support/status.js';
import { memoryLogger, tempDir } from './fakes.js';

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

/**
 * The event names the code logs, as the compiler sees them: the type of
 * each `event` given to a logger call, so a name chosen by a conditional
 * (`event: o.kind`) counts with every name it can be.
 */
function loggedEvents(): Set<string> {
  const files = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(ROOT, 'src', f));
  const config = ts.getParsedCommandLineOfConfigFile(
    join(ROOT, 'tsconfig.json'),
    {},
    { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} },
  );
  const program = ts.createProgram(files, config!.options);
  const checker = program.getTypeChecker();
  const out = new Set<string>();
  const visit = (node: ts.Node): void => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      LEVELS.has(node.expression.name.text) &&
      node.arguments[0] &&
      ts.isObjectLiteralExpression(node.arguments[0])
    ) {
      for (const p of node.arguments[0].properties) {
        if (!ts.isPropertyAssignment(p) || p.name.getText() !== 'event') continue;
        const t = checker.getTypeAtLocation(p.initializer);
        for (const u of t.isUnion() ? t.types : [t]) if (u.isStringLiteral()) out.add(u.value);
      }
    }
    ts.forEachChild(node, visit);
  };
  for (const f of program.getSourceFiles()) if (f.fileName.startsWith(join(ROOT, 'src'))) visit(f);
  return out;
}

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

describe('log events', () => {
  // An event outside the list does not compile (Logger takes LogEvent); what
  // is left to check is that every listed one is still logged somewhere.
  test('every listed event is logged', () => {
    expect([...loggedEvents()].sort()).toEqual(Object.keys(LOG_EVENTS).sort());
  });

  test('the logger takes no event outside the list', () => {
    const log: Logger = memoryLogger().log;
    // @ts-expect-error not a listed event: what this test holds is that this line does not compile
    log.info({ event: 'no_such_event' }, 'never listed');
    log.info({ event: 'watching' }, 'listed');
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
