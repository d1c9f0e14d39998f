// The worker's side of netns-worker.ts: reads calls from stdin, answers on
// stdout, one at a time, in order (the code under test sees calls as a single
// caller would make them).
import { createInterface } from 'node:readline';

type Fn = (...args: unknown[]) => unknown;

export function serve(module: Record<string, unknown>): void {
  let queue = Promise.resolve();
  createInterface({ input: process.stdin }).on('line', (line) => {
    const { id, fn, args } = JSON.parse(line) as { id: number; fn: string; args: unknown[] };
    queue = queue.then(async () => {
      const answer = await call(module[fn], fn, args).then(
        (result) => ({ id, result: result ?? null }),
        (e: unknown) => ({ id, error: fields(e) }),
      );
      process.stdout.write(JSON.stringify(answer) + '\n');
    });
  });
  process.stdin.on('end', () => void queue.then(() => process.exit(0)));
  process.stdout.write('serving\n');
}

async function call(f: unknown, name: string, args: unknown[]): Promise<unknown> {
  if (typeof f !== 'function') throw new Error(`the worker module exports no function ${name}`);
  return (f as Fn)(...args);
}

/** An error as data: its message, name and own fields (e.g. an NftError's kind and detail). */
function fields(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { message: String(e) };
  return { ...(e as unknown as Record<string, unknown>), name: e.name, message: e.message };
}
