import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { askLine, listenAt, serveLines } from '../../../src/agent/line-socket.js';
import { askAgent, QUERY_SOCKET, QuerySocket } from '../../../src/agent/query-socket.js';
import { tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
const open: Socket[] = [];
let server: Server | null;
let query: QuerySocket | null;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  server = null;
  query = null;
});
afterEach(async () => {
  for (const c of open.splice(0)) c.destroy();
  if (server) await new Promise((r) => server!.close(r));
  await query?.close();
  await cleanup();
});

/** A connection that sends nothing; resolves once connected, with a promise of its close and what came back. */
function idle(path: string): Promise<{ socket: Socket; closed: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    open.push(c);
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString()));
    const closed = new Promise<string>((r) => c.on('close', () => r(got)));
    c.once('error', reject);
    c.on('connect', () => resolve({ socket: c, closed }));
  });
}

/** Resolves once the server has taken `n` connections. */
function accepted(s: Server, n: number): Promise<void> {
  let seen = 0;
  return new Promise((r) =>
    s.on('connection', () => {
      if (++seen === n) r();
    }),
  );
}

describe('serveLines', () => {
  test('an idle connection is closed unanswered; a request whose answer takes longer than the idle time is still answered', async () => {
    const path = join(dir, 's.sock');
    server = createServer();
    let release: () => void = () => {};
    serveLines(server, { maxRequestBytes: 64, maxConnections: 4, idleMs: 50 }, (req) =>
      (req as { slow?: boolean }).slow ? new Promise((r) => (release = () => r('late'))) : Promise.resolve('now'),
    );
    await listenAt(server, path);
    const quiet = await idle(path);
    expect(await quiet.closed).toBe('');
    const slow = askLine(path, { slow: true }, 5000);
    // The idle timer fires well before this answer: the reply still comes.
    await new Promise((r) => setTimeout(r, 200));
    release();
    expect(await slow).toBe('late');
  });

  test('past maxConnections a new connection is closed at once; once one ends, the next is served', async () => {
    const path = join(dir, 's.sock');
    server = createServer();
    serveLines(server, { maxRequestBytes: 64, maxConnections: 2, idleMs: 60_000 }, () => Promise.resolve('ok'));
    await listenAt(server, path);
    const taken = accepted(server, 2);
    const held = [await idle(path), await idle(path)];
    await taken;
    const dropped = new Promise((r) => server!.once('drop', r));
    expect(await askLine(path, { q: 1 }, 5000)).toBeNull();
    await dropped;
    held[0]!.socket.destroy();
    await held[0]!.closed;
    // The server counts the closed connection once it has seen it close.
    let answer: unknown = null;
    for (let i = 0; i < 50 && answer === null; i++) answer = await askLine(path, { q: 2 }, 5000);
    expect(answer).toBe('ok');
  });
});

describe('the query socket bounds', () => {
  test('8 connections at most: a ninth asker gets no answer while 8 are held, and one once they are gone', async () => {
    query = await QuerySocket.open(dir, { status: async () => ({ health: 'healthy' }), explain: async () => ({}) });
    const path = join(dir, QUERY_SOCKET);
    const held = [];
    for (let i = 0; i < 8; i++) held.push(await idle(path));
    // Held by asking nothing: a connection that asks is answered and closed.
    expect(await askAgent(dir, { query: 'status' })).toBeNull();
    for (const h of held) h.socket.destroy();
    await Promise.all(held.map((h) => h.closed));
    let answer = null;
    for (let i = 0; i < 50 && answer === null; i++) answer = await askAgent(dir, { query: 'status' });
    expect(answer).toEqual({ ok: true, result: { health: 'healthy' } });
  });

  test('an idle connection (no request) is closed by the agent, unanswered', async () => {
    query = await QuerySocket.open(dir, { status: async () => ({}), explain: async () => ({}) });
    const quiet = await idle(join(dir, QUERY_SOCKET));
    // Closed by the agent's idle timer (3 s): the test times out if it never is.
    expect(await quiet.closed).toBe('');
  });
});
