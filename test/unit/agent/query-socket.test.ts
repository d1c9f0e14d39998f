import { stat } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { askAgent, QUERY_SOCKET, QuerySocket, shared } from '../../../src/agent/query-socket.js';
import { explainAt } from '../../../src/support/explain.js';
import { EMPTY_VIEW, planSync } from '../../../src/kernel/plan.js';
import { APPLIED_FILE, writeState, type AppliedState } from '../../../src/state/state-file.js';
import { FakeNft } from '../../fakes/nft.js';
import { desired, tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
let socket: QuerySocket | null;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  socket = null;
});
afterEach(async () => {
  vi.useRealTimers();
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

/** A FakeNft holding fd00::1 -> fdaa::1 that counts its listings. */
async function countingNft(): Promise<{ nft: FakeNft; listings: () => number }> {
  const nft = new FakeNft();
  await nft.run(planSync(EMPTY_VIEW, desired({ 'fd00::1': 'fdaa::1' })).tx);
  let n = 0;
  const list = nft.list.bind(nft);
  nft.list = () => {
    n++;
    return list();
  };
  return { nft, listings: () => n };
}

describe('explain over the query socket', () => {
  test('askers looping over addresses share one kernel listing until it is stale; then it is read again', async () => {
    // Only the clock is faked: the sockets still run on real time.
    vi.useFakeTimers({ toFake: ['Date'] });
    const applied: AppliedState = {
      schema: 1,
      generation: 3,
      at: '2026-01-01T00:00:00.000Z',
      file: '/etc/addrmap/mappings.json',
      entries: [{ from: 'fd00::1', to: 'fdaa::1' }],
      resolved: [{ family: 6, from: 'fd00::1', to: 'fdaa::1' }],
    };
    await writeState(dir, APPLIED_FILE, applied);
    const { nft, listings } = await countingNft();
    socket = await QuerySocket.open(dir, { status: async () => ({}), explain: (a) => explainAt(a, dir, nft) });
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await askAgent(dir, { query: 'explain', address: `fd00::${(i % 5) + 1}` }));
    answers.push(...(await Promise.all([1, 2, 3, 4].map((i) => askAgent(dir, { query: 'explain', address: `fd00::${i}` })))));
    expect(listings()).toBe(1);
    // Every answer is still the live one: the shared view is the kernel's.
    expect(answers[0]).toMatchObject({ ok: true, result: { address: 'fd00::1', translated: true, kernel: 'fdaa::1' } });
    expect(answers[1]).toMatchObject({ ok: true, result: { address: 'fd00::2', translated: false, kernel: null } });
    vi.setSystemTime(Date.now() + 1500);
    await askAgent(dir, { query: 'explain', address: 'fd00::1' });
    expect(listings()).toBe(2);
  });
});

describe('shared', () => {
  test('one computation for everyone while it runs and for a second after, or as long as it took; a failure is not kept', async () => {
    let now = 0;
    let runs = 0;
    let finish: (v: number) => void = () => {};
    let fail = false;
    const get = shared(
      () =>
        new Promise<number>((resolve, reject) => {
          runs++;
          if (fail) reject(new Error('no'));
          else finish = resolve;
        }),
      () => now,
    );
    const a = get();
    now = 3000; // it takes 3 s
    const b = get();
    finish(1);
    expect(await Promise.all([a, b])).toEqual([1, 1]);
    expect(runs).toBe(1);
    now = 5900; // within as long again as it took
    await get();
    expect(runs).toBe(1);
    now = 6001;
    const c = get();
    finish(2);
    expect(await c).toBe(2);
    expect(runs).toBe(2);
    fail = true;
    now = 20_000;
    await expect(get()).rejects.toThrow('no');
    await expect(get()).rejects.toThrow('no');
    expect(runs).toBe(4);
  });
});
