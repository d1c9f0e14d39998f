// The fault tests' stand-in for libnftables (test/support/nft-fault-shim.c)
// held to the real library on a real kernel: with no fault it answers as the
// real library does, command for command; its faults are the kernel's own
// refusals, read by errors.ts as such, and they commit nothing. Both
// libraries run in one netns worker, each with its own context, as the agent
// drives one.
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { Transaction, type Operation } from '../../src/kernel/nft/index.js';
import { encodeBatch } from '../../src/kernel/nft/json.js';
import { LIBNFTABLES } from '../../src/kernel/nft/libnftables.js';
import { EMPTY_VIEW, planSync } from '../../src/kernel/plan.js';
import { FULL_RULESET } from '../../src/kernel/ruleset.js';
import { Lab, ROOT } from '../support/lab.js';
import { NetnsWorker } from '../support/netns-worker.js';
import { faultyLibrary, type FaultyLibrary } from '../support/nft-fault-shim.js';

const WORKER = join(ROOT, 'test/kernel/workers/nft-context.ts');

interface Answer {
  ok: boolean;
  output: string;
  error: string;
  kind: string | null;
}

let lab: Lab;
let worker: NetnsWorker;
let shim: FaultyLibrary;
beforeEach(async () => {
  lab = await Lab.create({ peer: false });
  shim = await faultyLibrary(lab.dir);
  worker = await NetnsWorker.start(lab, lab.guest, WORKER, { env: shim.env });
});
afterEach(async () => {
  await worker?.stop();
  await lab?.destroy();
});

const viaShim = (cmd: string, dryRun = false) => worker.call<Answer>('command', shim.env.ADDRMAP_LIBNFTABLES, cmd, dryRun);
const viaReal = (cmd: string, dryRun = false) => worker.call<Answer>('command', LIBNFTABLES, cmd, dryRun);

const batch = (operations: Operation[]) => {
  const tx = new Transaction();
  tx.operations.push(...operations);
  return JSON.stringify(encodeBatch(tx));
};
/** addrmap's whole table, as its first pass writes it. */
const fullTable = (v6: Record<string, string>) =>
  batch(planSync(EMPTY_VIEW, { v4: new Map(), v6: new Map(Object.entries(v6)), prefixes: [] }, true, FULL_RULESET).tx.operations);
const addElement = (key: string, value: string) =>
  batch([{ verb: 'add', object: { element: { family: 'inet', table: 'addrmap', name: 'dnat6', key, value } } }]);
const listMap = 'list map inet addrmap dnat6';
/** dnat6's pairs, as the real library lists them (keys with counters). */
async function dnat6(): Promise<[string, string][]> {
  const map = JSON.parse((await viaReal(listMap)).output).nftables.find((x: Record<string, unknown>) => 'map' in x).map;
  return (map.elem as [{ elem: { val: string } }, string][]).map(([k, v]) => [k.elem.val, v]);
}

/** The kernel's refusal of a JSON batch, as libnftables 1.0.6 words it (JSON input has no location). */
const KERNEL_ENOENT = 'internal:0:0-0: Error: Could not process rule: No such file or directory';

describe('the fault shim', () => {
  test('passes through: the same answers as the real library for the same commands, accepted or refused', async () => {
    const commands: [string, boolean][] = [
      ['list chains', false],
      [fullTable({ 'fd00::1': 'fdaa::1' }), true], // the start-up check
      ['list table inet addrmap', false], // nothing there: refused
      [addElement('fd00::2', 'fdaa::2'), false], // a map that is not there: nft's own refusal
      ['list nosuch', false], // a syntax error
    ];
    for (const [cmd, dry] of commands) expect(await viaShim(cmd, dry)).toEqual(await viaReal(cmd, dry));

    // Changes made through the shim are the kernel's, seen alike through both.
    expect(await viaShim(fullTable({ 'fd00::1': 'fdaa::1' }))).toMatchObject({ ok: true });
    const table = await viaReal('list table inet addrmap');
    expect(table.ok).toBe(true);
    expect(await viaShim('list table inet addrmap')).toEqual(table);
    const conflict = batch([
      { verb: 'create', object: { element: { family: 'inet', table: 'addrmap', name: 'dnat6', key: 'fd00::1', value: 'fdaa::9' } } },
    ]);
    const refused = await viaShim(conflict);
    expect(refused).toMatchObject({ ok: false, kind: 'exists' });
    expect(await viaReal(conflict)).toEqual(refused);
  });

  test('no-nat: the table with NAT chains is refused as a kernel without nf_tables NAT refuses it; a table without them passes', async () => {
    await shim.setFault('no-nat');
    const check = await viaShim(fullTable({}), true);
    expect(check).toMatchObject({ ok: false, output: '', kind: 'not-found' });
    // The kernel refuses each NAT chain, then each rule in one; libnftables words the first
    // refusals with what its cache holds (the chains of the batch it sent).
    expect(check.error).toMatch(
      /^internal:0:0-0: Error: No such file or directory; did you mean chain ‘dnat_output’ in table inet ‘addrmap’\?\n/,
    );
    expect(check.error).toContain(`\n${KERNEL_ENOENT}\n`);
    expect(await viaShim(fullTable({}))).toMatchObject({ ok: false, kind: 'not-found' });
    expect((await viaReal('list ruleset')).output).not.toContain('"table"');
    const filterOnly = batch([
      { verb: 'add', object: { table: { family: 'inet', name: 'addrmap' } } },
      {
        verb: 'add',
        object: { chain: { family: 'inet', table: 'addrmap', name: 'c', type: 'filter', hook: 'output', prio: 0, policy: 'accept' } },
      },
    ]);
    expect(await viaShim(filterOnly)).toMatchObject({ ok: true, error: '' });
    // The fault is read at every command: lifted, the same check passes.
    await shim.setFault('none');
    expect(await viaShim(fullTable({}), true)).toMatchObject({ ok: true, error: '' });
  });

  test('fail-batch N: the Nth transaction alone is refused by the kernel after the others in it, and none of it commits', async () => {
    expect(await viaShim(fullTable({ 'fd00::1': 'fdaa::1' }))).toMatchObject({ ok: true });
    await shim.setFault('fail-batch 2');
    expect(await viaShim(addElement('fd00::2', 'fdaa::2'))).toMatchObject({ ok: true }); // 1st
    // Neither a listing nor a dry run is a transaction.
    expect(await viaShim(listMap)).toMatchObject({ ok: true });
    expect(await viaShim(addElement('fd00::3', 'fdaa::3'), true)).toMatchObject({ ok: true });
    const failed = await viaShim(addElement('fd00::3', 'fdaa::3')); // 2nd
    expect(failed).toMatchObject({ ok: false, output: '', kind: 'not-found' });
    expect(failed.error).toBe(`${KERNEL_ENOENT}\n\n`); // one refusal: the operation the shim added
    expect(await dnat6()).toEqual([
      ['fd00::1', 'fdaa::1'],
      ['fd00::2', 'fdaa::2'],
    ]);
    expect(await viaShim(addElement('fd00::3', 'fdaa::3'))).toMatchObject({ ok: true }); // 3rd
    // Without N, every transaction, until the fault is lifted.
    await shim.setFault('fail-batch');
    expect(await viaShim(addElement('fd00::4', 'fdaa::4'))).toMatchObject({ ok: false, kind: 'not-found' });
    expect(await viaShim(addElement('fd00::4', 'fdaa::4'))).toMatchObject({ ok: false, kind: 'not-found' });
    await shim.setFault('none');
    expect(await viaShim(addElement('fd00::4', 'fdaa::4'))).toMatchObject({ ok: true });
    expect(await dnat6()).toHaveLength(4);
  });
});
