// A contract step: the same call on a fake, here, and on the real
// implementation in a worker inside a lab namespace; the results must be
// equal as JSON (what crosses the worker's line), or the fake is wrong.
import { expect } from 'vitest';
import type { NetnsWorker } from './netns-worker.js';

type Calls = Record<string, (...args: never[]) => Promise<unknown>>;

/** `both(op, ...args)`: runs op on `local` and in the worker (started later, hence a getter), compares, returns the real result. */
export function contractStep<T extends Calls>(local: T, worker: () => NetnsWorker) {
  return async (op: keyof T & string, ...args: unknown[]): Promise<unknown> => {
    const want = await (local[op] as (...a: unknown[]) => Promise<unknown>)(...args);
    const got = await worker().call(op, ...args);
    expect(got, `${op} ${JSON.stringify(args)}`).toEqual(JSON.parse(JSON.stringify(want)));
    return got;
  };
}
