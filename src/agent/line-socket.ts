// The agent's local sockets speak one JSON line each way: a request, then
// one reply, then the connection closes. What a peer may send is bounded
// (bytes, connections, idle time), so a stuck or hostile client costs a
// descriptor for a few seconds at most, never memory or the agent.
import { unlink } from 'node:fs/promises';
import { createConnection, type Server, type Socket } from 'node:net';

export interface LineLimits {
  /** A request longer than this (its newline not seen by then) closes the connection. */
  maxRequestBytes: number;
  maxConnections: number;
  /** Idle connections close after this long; a handler still running is not idle. */
  idleMs: number;
}

/**
 * Serves requests on `server`: each connection's first line, parsed as JSON,
 * goes to `handle`, whose result is the reply. A line that is not JSON closes
 * the connection unanswered.
 */
export function serveLines(server: Server, limits: LineLimits, handle: (req: unknown) => Promise<unknown>): void {
  server.maxConnections = limits.maxConnections;
  // A failed accept (out of descriptors) costs that connection, not the agent.
  server.on('error', () => {});
  server.on('connection', (c: Socket) => {
    c.setTimeout(limits.idleMs, () => c.destroy());
    c.on('error', () => {});
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > limits.maxRequestBytes) c.destroy();
        return;
      }
      c.off('data', onData);
      let req: unknown;
      try {
        req = JSON.parse(buf.slice(0, nl));
      } catch {
        return void c.destroy();
      }
      c.setTimeout(0);
      void handle(req).then(
        (reply) => c.end(JSON.stringify(reply) + '\n'),
        () => c.destroy(),
      );
    };
    c.on('data', onData);
  });
}

/** Sends one request to the socket at `path`; its reply parsed, or null when nobody answers in time or the reply is not JSON. */
export function askLine(path: string, req: unknown, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    const chunks: Buffer[] = [];
    const done = (r: unknown) => {
      c.destroy();
      resolve(r);
    };
    c.setTimeout(timeoutMs, () => done(null));
    c.on('error', () => done(null));
    c.on('connect', () => c.write(JSON.stringify(req) + '\n'));
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('end', () => {
      try {
        done(JSON.parse(Buffer.concat(chunks).toString()));
      } catch {
        done(null);
      }
    });
  });
}

/** Listens on a Unix socket path; `replace`: a socket file left there is removed first (its owner is known to be gone). */
export async function listenAt(server: Server, path: string, replace = false): Promise<void> {
  if (replace) await unlink(path).catch(() => {}); // absent is as good
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
