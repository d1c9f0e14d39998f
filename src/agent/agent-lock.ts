// One agent per table: the watching agent holds a Unix socket in the state
// directory for its whole life. A second `watch` finds it answering and
// exits, naming the running agent's pid; `apply` hands its pass to the
// running agent instead of changing the kernel behind its back (the agent
// would undo it). A socket left by a killed agent answers nobody and is
// taken over. Only root can connect: the socket is root's, mode 0755.
import { unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { prepareStateDir } from '../state/state-file.js';

const AGENT_SOCKET = 'agent.sock';

export interface PassReply {
  outcome: string;
  message?: string;
}

export type PassRequest = { request: 'pass'; acceptLowerGeneration?: boolean };
type Request = { request: 'who' } | PassRequest;
type Reply = { pid: number } & Partial<PassReply>;

/** At most this many connections at once; each closes after a few seconds idle. */
const MAX_CONNECTIONS = 4;
const IDLE_MS = 5000;

export class AgentLock {
  private onPass: (req: PassRequest) => Promise<PassReply> = async () => ({ outcome: 'unchanged' });

  private constructor(private readonly server: Server) {}

  /** Takes the lock, or says which agent holds it. */
  static async acquire(stateDir: string): Promise<AgentLock | { heldBy: number }> {
    await prepareStateDir(stateDir);
    const path = join(stateDir, AGENT_SOCKET);
    const lock = new AgentLock(createServer());
    lock.server.maxConnections = MAX_CONNECTIONS;
    lock.server.on('connection', (c) => lock.serve(c));
    try {
      await listen(lock.server, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      const holder = await ask(stateDir, { request: 'who' }, 2000).catch(() => null);
      if (holder) return { heldBy: holder.pid };
      await unlink(path).catch(() => {}); // a killed agent's socket
      await listen(lock.server, path);
    }
    // A failed accept (out of descriptors) costs that connection, not the agent.
    lock.server.on('error', () => {});
    lock.server.unref();
    return lock;
  }

  handlePasses(fn: (req: PassRequest) => Promise<PassReply>): void {
    this.onPass = fn;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  private serve(c: Socket): void {
    c.setTimeout(IDLE_MS, () => c.destroy());
    c.on('error', () => {});
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString();
      if (buf.length > 1024) return void c.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: Request | null;
      try {
        req = JSON.parse(buf.slice(0, nl)) as Request;
      } catch {
        return void c.destroy();
      }
      const reply = (r: Omit<Reply, 'pid'> = {}) => c.end(JSON.stringify({ pid: process.pid, ...r }) + '\n');
      if (req?.request === 'pass') {
        c.setTimeout(0); // a pass at 100k mappings takes a while
        this.onPass({ request: 'pass', acceptLowerGeneration: req.acceptLowerGeneration === true }).then(reply, (e: Error) =>
          reply({ outcome: 'failed', message: e.message }),
        );
      } else reply();
    });
  }
}

/** Asks the agent holding the lock; null when none answers. */
export function ask(stateDir: string, req: Request, timeoutMs: number): Promise<Reply | null> {
  return new Promise((resolve) => {
    const c = createConnection(join(stateDir, AGENT_SOCKET));
    let buf = '';
    const done = (r: Reply | null) => {
      c.destroy();
      resolve(r);
    };
    c.setTimeout(timeoutMs, () => done(null));
    c.on('error', () => done(null));
    c.on('connect', () => c.write(JSON.stringify(req) + '\n'));
    c.on('data', (d) => (buf += d.toString()));
    c.on('end', () => {
      try {
        const r = JSON.parse(buf) as Reply;
        done(Number.isInteger(r.pid) ? r : null);
      } catch {
        done(null);
      }
    });
  });
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
