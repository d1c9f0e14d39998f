// The real nftables client: runs the nft binary with an argument vector and
// sends each transaction as one JSON batch, which libnftables commits as one
// kernel transaction (all or nothing). Not on stdin: nft opens "-" as
// /dev/stdin, which fails on the socket Node gives a child as stdin.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from '../exec.js';
import { decodeChains, decodeListing, encodeBatch } from './json.js';
import {
  assertOwnTable,
  NftError,
  type Chain,
  type NftErrorKind,
  type NftInfo,
  type NftInterface,
  type Table,
  type TableListing,
  type Transaction,
} from './types.js';

/** Linux caps one argument at 128 KiB (MAX_ARG_STRLEN); stay well under. */
const MAX_ARG_BATCH = 100 * 1024;

/** Oldest nft whose JSON input accepts everything addrmap sends (rule comments, map counters). */
const MIN_VERSION = [0, 9, 7];

export class ExecNft implements NftInterface {
  constructor(
    readonly table: Table,
    private readonly binary = 'nft',
    /** Where batch files are written; private to this process. */
    private readonly scratchParent = tmpdir(),
  ) {}

  async ready(): Promise<NftInfo> {
    // Both questions at once: every process on the start path delays the first rules.
    const [versionRun, jsonRun] = await Promise.allSettled([
      execFile(this.binary, ['--version']),
      // Not `list tables`: that loads every set element (seconds at 100k mappings).
      execFile(this.binary, ['-j', 'list', 'chains']),
    ]);
    if (versionRun.status === 'rejected') {
      throw new NftError('nftables is not usable', `${(versionRun.reason as Error).message}; install the nftables package`);
    }
    const res = versionRun.value;
    const m = /v(\d+)\.(\d+)\.(\d+)/.exec(res.stdout);
    if (res.code !== 0 || !m) throw new NftError('cannot read the nft version', (res.stderr || res.stdout).trim());
    const version = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (compare(version, MIN_VERSION) < 0) {
      throw new NftError(`nft ${version.join('.')} is too old`, `addrmap needs ${MIN_VERSION.join('.')} or newer`);
    }
    if (jsonRun.status === 'rejected') throw new NftError('nft cannot list chains in JSON', (jsonRun.reason as Error).message);
    const json = jsonRun.value;
    if (json.code !== 0) throw new NftError('nft cannot list chains in JSON', json.stderr.trim());
    try {
      JSON.parse(json.stdout);
    } catch {
      throw new NftError('nft was built without JSON support', json.stdout.slice(0, 200));
    }
    return { version: version.join('.') };
  }

  async run(tx: Transaction): Promise<void> {
    assertOwnTable(this.table, tx);
    if (tx.size === 0) return;
    const res = await this.send(JSON.stringify(encodeBatch(tx)), []);
    if (res.code !== 0) throw new NftError('nft transaction failed, nothing was changed', res.stderr.trim(), nftErrorKind(res.stderr));
  }

  /** At start, proves that the kernel accepts addrmap's table, NAT included. */
  async check(tx: Transaction): Promise<void> {
    assertOwnTable(this.table, tx);
    const res = await this.send(JSON.stringify(encodeBatch(tx)), ['-c']);
    if (res.code !== 0) {
      throw new NftError(
        "the kernel rejects addrmap's table; it needs nf_tables with NAT (CONFIG_NF_TABLES, CONFIG_NF_NAT, nft_chain_nat)",
        res.stderr.trim(),
        nftErrorKind(res.stderr),
      );
    }
  }

  private async send(json: string, flags: string[]) {
    // Small batches (every ordinary push) travel as an argument and touch no
    // disk, so a full /tmp cannot stop them; large ones go through a file.
    if (Buffer.byteLength(json) <= MAX_ARG_BATCH) return execFile(this.binary, [...flags, '-j', json]);
    const dir = await mkdtemp(join(this.scratchParent, 'addrmap-nft-'));
    try {
      const file = join(dir, 'batch.json');
      await writeFile(file, json, { mode: 0o600 });
      return await execFile(this.binary, [...flags, '-j', '-f', file]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async listChains(): Promise<Chain[]> {
    // nft lists every table's chains (a family at most): the filter is ours.
    const res = await execFile(this.binary, ['-j', 'list', 'chains', this.table.family]);
    if (res.code !== 0) throw new NftError('cannot list chains', res.stderr.trim(), nftErrorKind(res.stderr));
    return decodeChains(JSON.parse(res.stdout)).filter((c) => c.table === this.table.name);
  }

  async list(): Promise<TableListing | null> {
    const { family, name } = this.table;
    const res = await execFile(this.binary, ['-j', 'list', 'table', family, name]);
    if (res.code !== 0) {
      // Listing one table fails "not found" for that table alone.
      const kind = nftErrorKind(res.stderr);
      if (kind === 'not-found') return null;
      throw new NftError(`cannot list table ${family} ${name}`, res.stderr.trim(), kind);
    }
    return decodeListing(JSON.parse(res.stdout));
  }
}

/**
 * The one place nft's answer becomes an NftErrorKind. nft prints an "Error:"
 * line per failed command, in batch order; the first decides. The kernel's
 * refusals carry an errno ("Could not process rule: File exists"); nft's own,
 * made before the kernel sees the batch, name the input's location and what
 * is wrong with it (an address, a datatype, the syntax), or an errno of its
 * cache ("No such file or directory; did you mean map ...").
 */
export function nftErrorKind(stderr: string): NftErrorKind {
  const first = stderr.split('\n').find((l) => l.includes('Error:')) ?? stderr;
  const fromKernel = /Could not process rule: (.*)/.exec(first);
  const reason = fromKernel?.[1] ?? first;
  if (/No such file or directory/.test(reason)) return 'not-found';
  if (/File exists/.test(reason)) return 'exists';
  if (/Device or resource busy/.test(reason)) return 'busy';
  if (/Invalid argument|Operation not supported|Too many links|Numerical result out of range/.test(reason)) return 'invalid';
  if (fromKernel) return 'other'; // EPERM, ENOMEM, ENOBUFS: not about the request
  // nft's evaluation (a location such as "internal:0:0-0:" leads the line), or its netlink layer's checks of the input.
  if (/^\S+:\d+:\d+-\d+: Error: |syntax error|datatype mismatch|Could not resolve hostname|is not a (map|set)/.test(first))
    return 'invalid';
  return 'other';
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
