// Read-only questions anyone on the guest may ask the running agent: status
// and explain, answered with what the agent (root) reads live from the kernel,
// so support staff without root see live counters, drift and flows. Nothing a
// request says can change anything: the only requests are questions, their
// answers are computed by the same read-only code `status` runs as root and
// shared (see shared(): a loop of askers costs the agent half its time at
// most; explain shares the kernel view it reads, whatever address is asked
// about, see explain.ts), and requests, connections and idle time are
// bounded (line-socket.ts).
import { chmod } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { askLine, listenAt, serveLines } from './line-socket.js';

export const QUERY_SOCKET = 'query.sock';

const LIMITS = { maxRequestBytes: 512, maxConnections: 8, idleMs: 3000 };
/** An answer is reused for this long: a loop of askers costs one kernel read a second. */
const FRESH_MS = 1000;

export type Query = { query: 'status' } | { query: 'explain'; address: string };
export type QueryReply = { ok: true; result: unknown } | { ok: false; error: string };

export interface Answers {
  status(): Promise<unknown>;
  explain(address: string): Promise<unknown>;
}

export class QuerySocket {
  private constructor(private readonly server: Server) {}

  /**
   * Serves queries in the state directory. Call only while holding the agent
   * lock: a socket file already there is then a dead agent's, and replaced.
   */
  static async open(stateDir: string, answers: Answers): Promise<QuerySocket> {
    const path = join(stateDir, QUERY_SOCKET);
    const server = createServer();
    const status = shared(() => answers.status());
    serveLines(server, LIMITS, async (req) => {
      const q = parseQuery(req);
      if (!q) return { ok: false, error: 'unknown query' } satisfies QueryReply;
      try {
        const result = q.query === 'status' ? await status() : await answers.explain(q.address);
        return { ok: true, result } satisfies QueryReply;
      } catch (e) {
        return { ok: false, error: (e as Error).message } satisfies QueryReply;
      }
    });
    await listenAt(server, path, true);
    // Connecting to a Unix socket takes write permission on it: everyone may ask.
    await chmod(path, 0o666);
    server.unref();
    return new QuerySocket(server);
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** The running agent's answer, or null when no agent answers (then the state files are the fallback). */
export async function askAgent(stateDir: string, q: Query, timeoutMs = 5000): Promise<QueryReply | null> {
  const r = (await askLine(join(stateDir, QUERY_SOCKET), q, timeoutMs)) as QueryReply | null;
  return r && typeof r.ok === 'boolean' ? r : null;
}

function parseQuery(req: unknown): Query | null {
  if (typeof req !== 'object' || req === null) return null;
  const r = req as Record<string, unknown>;
  if (r.query === 'status') return { query: 'status' };
  if (r.query === 'explain' && typeof r.address === 'string' && r.address.length <= 100) return { query: 'explain', address: r.address };
  return null;
}

/**
 * fn's result, shared by everyone who asks while it is computed and for
 * FRESH_MS after it is done, or as long again as it took (a 100k listing
 * takes seconds): askers in a loop keep the agent busy half the time at most.
 */
export function shared<T>(fn: () => Promise<T>, clock: () => number = Date.now): () => Promise<T> {
  let last: { until: number; p: Promise<T> } | null = null;
  return () => {
    if (!last || clock() > last.until) {
      const started = clock();
      const p = fn();
      const entry = { until: Infinity, p };
      last = entry;
      p.then(
        () => (entry.until = clock() + Math.max(FRESH_MS, clock() - started)),
        // A failure is not kept: the next asker tries again.
        () => {
          if (last === entry) last = null;
        },
      );
    }
    return last.p;
  };
}
