// The real nftables client: libnftables in-process (libnftables.ts), each
// transaction one JSON batch, which libnftables commits as one kernel
// transaction (all or nothing). No nft program is run. The context lives as
// long as the process and re-reads the kernel's ruleset generation before
// every command, so a change another tool made in between is seen (the
// kernel tests prove it).
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { nftErrorKind } from './errors.js';
import { decodeChains, decodeListing, encodeBatch } from './json.js';
import { LIBNFTABLES, NftContext, type CommandResult } from './libnftables.js';
import {
  assertOwnTable,
  NftError,
  type Chain,
  type NftInfo,
  type NftInterface,
  type Table,
  type TableListing,
  type Transaction,
} from './types.js';

export interface LibNftOptions {
  /** The library to load: a soname or a path (tests point it at one that is missing); ADDRMAP_LIBNFTABLES otherwise. */
  library?: string;
  /**
   * A context of its own, shared by the clients that name the same one. A
   * context runs one command at a time: listings of a large table (seconds
   * at 100k mappings) in their own context never hold a push's commit.
   */
  context?: string;
}

/**
 * ADDRMAP_LIBNFTABLES: the libnftables file to load instead of whatever the
 * dynamic loader finds for the soname, for a package that brings its own
 * (and for the tests' fault-injecting stand-in). An absolute path only: a
 * relative one would depend on the directory the agent was started from.
 */
const LIBRARY_ENV = 'ADDRMAP_LIBNFTABLES';

/**
 * The libnftables of the installed tree (/usr/bin/addrmap ->
 * /usr/lib/addrmap/lib), by its path: the dynamic loader's search by soname
 * would consult the image's own library cache, and a library built for
 * another glibc than the tree's must never be mixed in.
 */
function bundledLibrary(): string | undefined {
  const path = join(dirname(process.execPath), '../lib/addrmap/lib', LIBNFTABLES);
  return existsSync(path) ? path : undefined;
}

export class LibNft implements NftInterface {
  private readonly library: string;
  private readonly remedy: string | undefined;
  private readonly contextName: string | undefined;
  /** Why the library named cannot even be tried, reported when nftables is first used. */
  private readonly misnamed: string | undefined;

  constructor(
    readonly table: Table,
    options: LibNftOptions = {},
  ) {
    this.contextName = options.context;
    const named = options.library === undefined ? process.env[LIBRARY_ENV] : undefined;
    // An empty variable counts as unset, as for the other ADDRMAP_ variables.
    if (named) {
      this.library = named;
      this.remedy = `${LIBRARY_ENV} names it: point it at libnftables, or unset it`;
      if (!isAbsolute(named)) this.misnamed = `${LIBRARY_ENV} must be an absolute path, not ${JSON.stringify(named)}`;
    } else {
      this.library = options.library ?? bundledLibrary() ?? LIBNFTABLES;
    }
  }

  /**
   * Loads libnftables and asks the kernel something cheap: `list chains`, not
   * `list tables`, which loads every set element (seconds at 100k mappings).
   * Whether the kernel takes addrmap's table is check()'s question. No
   * version check: libnftables 1.0.6 cannot tell its version, and one too old
   * for addrmap's batches fails that check.
   */
  async ready(): Promise<NftInfo> {
    const ctx = this.context();
    const r = await ctx.run('list chains');
    if (!r.ok) throw new NftError('the kernel does not answer nftables requests', r.error.trim(), nftErrorKind(r.error));
    try {
      JSON.parse(r.output);
    } catch {
      throw new NftError(`${ctx.library} was built without JSON support`, r.output.slice(0, 200));
    }
    return { version: ctx.library };
  }

  async run(tx: Transaction): Promise<void> {
    assertOwnTable(this.table, tx);
    if (tx.size === 0) return;
    const r = await this.batch(tx, false);
    if (!r.ok) throw new NftError('nft transaction failed, nothing was changed', r.error.trim(), nftErrorKind(r.error));
  }

  /** At start, proves that the kernel accepts addrmap's table, NAT included. */
  async check(tx: Transaction): Promise<void> {
    assertOwnTable(this.table, tx);
    const r = await this.batch(tx, true);
    if (!r.ok) {
      throw new NftError(
        "the kernel rejects addrmap's table; it needs nf_tables with NAT (CONFIG_NF_TABLES, CONFIG_NF_NAT, nft_chain_nat)",
        r.error.trim(),
        nftErrorKind(r.error),
      );
    }
  }

  async listChains(): Promise<Chain[]> {
    // libnftables lists every table's chains (a family at most): the filter is ours.
    const r = await this.context().run(`list chains ${this.table.family}`);
    if (!r.ok) throw new NftError('cannot list chains', r.error.trim(), nftErrorKind(r.error));
    return decodeChains(JSON.parse(r.output)).filter((c) => c.table === this.table.name);
  }

  async list(): Promise<TableListing | null> {
    const { family, name } = this.table;
    const r = await this.context().run(`list table ${family} ${name}`);
    if (!r.ok) {
      // Listing one table fails "not found" for that table alone.
      const kind = nftErrorKind(r.error);
      if (kind === 'not-found') return null;
      throw new NftError(`cannot list table ${family} ${name}`, r.error.trim(), kind);
    }
    return decodeListing(JSON.parse(r.output));
  }

  private batch(tx: Transaction, dryRun: boolean): Promise<CommandResult> {
    return this.context().run(JSON.stringify(encodeBatch(tx)), { dryRun });
  }

  private context(): NftContext {
    if (this.misnamed) throw new NftError('nftables is not usable', this.misnamed);
    const ctx = NftContext.shared(this.library, this.remedy, this.contextName);
    if (ctx instanceof Error) throw new NftError('nftables is not usable', ctx.message);
    return ctx;
  }
}
