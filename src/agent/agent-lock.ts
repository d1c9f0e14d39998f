// One agent per table: the watching agent holds a Unix socket in the state
// directory for its whole life. A second `watch` finds it answering and
// exits, naming the running agent's pid; `apply` hands its pass to the
// running agent instead of changing the kernel behind its back (the agent
// would undo it). A socket left by a killed agent answers nobody and is
// taken over. Only root can connect: the socket is root's, mode 0755.
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { prepareStateDir } from '../state/state-file.js';
import { askLine, listenAt, serveLines } from './line-socket.js';

const AGENT_SOCKET = 'agent.sock';

export interface PassReply {
  outcome: string;
  message?: string;
}

export type PassRequest = { request: 'pass'; acceptLowerGeneration?: boolean };
type Request = { request: 'who' } | PassRequest;
type Reply = { pid: number } & Partial<PassReply>;

/** At most this many connections at once; each closes after a few seconds idle. */
const LIMITS = { maxRequestBytes: 1024, maxConnections: 4, idleMs: 5000 };

export class AgentLock {
  private onPass: (req: PassRequest) => Promise<PassReply> = async () => ({ outcome: 'unchanged' });

  private constructor(private readonly server: Server) {}

  /** Takes the lock, or says which agent holds it. */
  static async acquire(stateDir: string): Promise<AgentLock | { heldBy: number }> {
    await prepareStateDir(stateDir);
    const path = join(stateDir, AGENT_SOCKET);
    const lock = new AgentLock(createServer());
    serveLines(lock.server, LIMITS, (req) => lock.answer(req as Request));
    try {
      await listenAt(lock.server, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      const holder = await ask(stateDir, { request: 'who' }, 2000).catch(() => null);
      if (holder) return { heldBy: holder.pid };
      await listenAt(lock.server, path, true); // a killed agent's socket
    }
    lock.server.unref();
    return lock;
  }

  handlePasses(fn: (req: PassRequest) => Promise<PassReply>): void {
    this.onPass = fn;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  private async answer(req: Request | null): Promise<Reply> {
    if (req?.request !== 'pass') return { pid: process.pid };
    // A pass at 100k mappings takes a while: the connection waits for it.
    const r = await this.onPass({ request: 'pass', acceptLowerGeneration: req.acceptLowerGeneration === true }).catch(
      (e: Error): PassReply => ({ outcome: 'failed', message: e.message }),
    );
    return { pid: process.pid, ...r };
  }
}

/** Asks the agent holding the lock; null when none answers. */
export async function ask(stateDir: string, req: Request, timeoutMs: number): Promise<Reply | null> {
  const r = (await askLine(join(stateDir, AGENT_SOCKET), req, timeoutMs)) as Reply | null;
  return r && Number.isInteger(r.pid) ? r : null;
}
