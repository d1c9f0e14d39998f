import { stat } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { askAgent, QUERY_SOCKET, QuerySocket } from '../../../src/agent/query-socket.js';
import { tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
let socket: QuerySocket | null;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  socket = null;
});
afterEach(async () => {
  await socket?.close();
  await cleanup();
});

/** Sends raw bytes; resolves with what came back before the agent closed the connection. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const c = createConnection(join(dir, QUERY_SOCKET));
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString()));
    c.on('close', () => resolve(got));
    c.on('error', () => {});
    c.on('connect', () => c.write(bytes));
  });
}

describe('the query socket', () => {
  test('answers status and explain, for anyone (mode 0666); concurrent askers share one status computation', async () => {
    let computed = 0;
    socket = await QuerySocket.open(dir, {
      status: async () => ({ health: 'healthy', n: ++computed }),
      explain: async (address) => ({ address, translated: false }),
    });
    expect((await stat(join(dir, QUERY_SOCKET))).mode & 0o777).toBe(0o666);
    const [a, b] = await Promise.all([askAgent(dir, { query: 'status' }), askAgent(dir, { query: 'status' })]);
    expect(a).toEqual({ ok: true, result: { health: 'healthy', n: 1 } });
    expect(b).toEqual(a);
    expect(computed).toBe(1);
    expect(await askAgent(dir, { query: 'explain', address: 'fdaa::1' })).toEqual({
      ok: true,
      result: { address: 'fdaa::1', translated: false },
    });
  });

  test('only questions: anything else is refused; oversized or non-JSON requests are closed unanswered; a failing answer is an error', async () => {
    socket = await QuerySocket.open(dir, {
      status: () => Promise.reject(new Error('kernel unreadable')),
      explain: async () => ({}),
    });
    expect(await raw('{"query":"pass"}\n')).toBe('{"ok":false,"error":"unknown query"}\n');
    expect(await raw(`{"query":"explain","address":"${'1'.repeat(200)}"}\n`)).toBe('{"ok":false,"error":"unknown query"}\n');
    expect(await raw(`${'x'.repeat(600)}`)).toBe('');
    expect(await raw('not json\n')).toBe('');
    expect(await askAgent(dir, { query: 'status' })).toEqual({ ok: false, error: 'kernel unreadable' });
  });

  test('no agent: null, so status falls back to the state files', async () => {
    expect(await askAgent(dir, { query: 'status' }, 500)).toBeNull();
  });
});
