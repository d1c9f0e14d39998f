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

/**
 * The string literals (quoted or template, `${...}` as a hole) a file gives
 * as problems: pushed to `problems`, `unreadable` or `warnings`, mapped into
 * them, returned as one (`return errors.map(...)`, the unanswered push), or
 * the agent-not-running and no-state sentences. Comments are skipped; a
 * template nested in a hole is part of the hole.
 */
function problemLiterals(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const context =
    /(?:(?:problems|unreadable|warnings)\.push\(\s*(?:\.\.\.[\w.]+\.map\(\(\w+\) => )?|warnings: [^,;]*\[|const (?:notRunning|noState) = [^;]*|return (?:[\w.]+\.map\(\(\w+\) => )?)$/;
  const out: string[] = [];
  let i = 0;
  // A template from its opening backtick: its text with each hole as "\0"; i left after it.
  const template = (): string => {
    let s = '';
    for (i++; text[i] !== '`'; i++) {
      if (text[i] === '\\') s += text[++i];
      else if (text[i] === '$' && text[i + 1] === '{') {
        let depth = 0;
        for (i++; ; i++) {
          if (text[i] === '`') template();
          else if (text[i] === '{') depth++;
          else if (text[i] === '}' && --depth === 0) break;
        }
        s += '\0';
      } else s += text[i];
    }
    return s;
  };
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (c === '/' && text[i + 1] === '/') i = text.indexOf('\n', i);
    else if (c === '/' && text[i + 1] === '*') i = text.indexOf('*/', i) + 1;
    else if (c === '`' || c === "'") {
      const start = i;
      let s: string;
      if (c === '`') s = template();
      else {
        s = '';
        for (i++; text[i] !== "'"; i++) s += text[i] === '\\' ? text[++i] : text[i];
      }
      if (context.test(text.slice(Math.max(0, start - 200), start).replace(/\s+/g, ' '))) out.push(s);
    }
  }
  return out;
}

describe('problem lines', () => {
  // Where status's problems come from: status itself, and the agent's warnings (the reconciler's and its route plan's, the recorder's).
  const FILES = [
    'src/support/status.ts',
    'src/support/status-drift.ts',
    'src/support/status-usage.ts',
    'src/kernel/reconciler.ts',
    'src/kernel/route-plan.ts',
    'src/agent/recorder.ts',
  ];
  const produced = FILES.flatMap(problemLiterals);
  const documented = tableNames('| `PROBLEMS` line starts with |');
  /** A table entry as a pattern: its upper-case placeholders (PATH, ENTRY, ...) and "..." stand for anything. */
  const entryPattern = (e: string) =>
    new RegExp(
      `^${e
        .split(/( ?\.\.\.|\b[A-Z]{2,}\b)/)
        .map((part, k) => (k % 2 ? '[^]*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
        .join('')}`,
    );
  /** A produced literal as a pattern: its holes stand for anything. */
  const literalPattern = (l: string) =>
    new RegExp(
      `^${l
        .split('\0')
        .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^]*')}`,
    );
  const matches = (literal: string, entry: string) =>
    entryPattern(entry).test(literal.replaceAll('\0', 'X')) || literalPattern(literal).test(entry.replace(/\.\.\.|\b[A-Z]{2,}\b/g, 'X'));

  test('the problems are found where the code makes them', () => {
    // Enough to know the scan works: one from each kind of site.
    expect(produced).toEqual(
      expect.arrayContaining([
        'drift: \0',
        "push not answered: the mapping file changed \0s ago (\0) and the agent has not written its state since; it is not known to be applied (the agent's log says why: out of descriptors, state not writable, or stuck)",
        'the addrmap watch agent is not running: pushes are not applied',
        'own previous address not added: \0',
        'mapping file \0 is absent; current mappings kept',
      ]),
    );
  });

  test('every problem line the code can produce has its row in docs/operations.md, and every row is one the code produces', () => {
    expect(produced.filter((l) => !documented.some((e) => matches(l, e)))).toEqual([]);
    expect(documented.filter((e) => !produced.some((l) => matches(l, e)))).toEqual([]);
  });
});
