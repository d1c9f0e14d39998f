// One prefix type for every module that asks "is this address inside that
// network, and where does a prefix mapping send it": resolution, conntrack
// cleanup, explain, self-capture, the reconciler. The kernel's prefix rules
// keep an address's host bits and replace its network bits; this is that
// translation, written once.
import { Address4, Address6 } from 'ip-address';
import { AddressError, addressGroups, addressToBig, bigToAddress, hostMask, type IpAddress, type IpFamily } from './address.js';

/** "network/length": the one spelling of a prefix as a key or in a message. */
export const prefixKey = (network: string, length: number): string => `${network}/${length}`;

export class Prefix {
  readonly network: bigint;
  private groupsCache: readonly number[] | undefined;

  constructor(
    readonly family: IpFamily,
    /** The network address, canonical. */
    readonly address: string,
    readonly length: number,
  ) {
    this.network = addressToBig(family, address) & ~hostMask(family, length);
  }

  /**
   * Parses "fc00::/7" or "198.51.100.0/24" as a person or a state file wrote
   * it; host bits must be zero, since a prefix with them set more likely
   * means a typo than the network it would silently round down to.
   */
  static parse(input: string): Prefix {
    if (typeof input !== 'string' || !/^[^/\s]+\/\d{1,3}$/.test(input)) throw new AddressError('not a prefix (address/length)');
    const [addrText, lenText] = input.split('/') as [string, string];
    const family: IpFamily = addrText.includes(':') ? 6 : 4;
    const bits = family === 6 ? 128 : 32;
    const length = Number(lenText);
    if (length > bits) throw new AddressError(`prefix length ${length} is over ${bits}`);
    let value: bigint;
    let text: string;
    try {
      if (family === 6) {
        const a = new Address6(addrText);
        if (a.zone || a.subnetMask !== 128) throw new Error('unexpected zone or prefix');
        value = a.bigInt();
        text = a.correctForm();
      } else {
        const a = new Address4(addrText);
        value = a.bigInt();
        text = a.correctForm();
      }
    } catch {
      // The library's message quotes the input: not passed on.
      throw new AddressError(`not a valid IPv${family} prefix`);
    }
    const mask = hostMask(family, length);
    if (value & mask)
      throw new AddressError(`host bits are set: the network of that prefix is ${prefixKey(bigToAddress(family, value & ~mask), length)}`);
    return new Prefix(family, text, length);
  }

  /** The prefix of this length holding an address given as its value. */
  static of(family: IpFamily, value: bigint, length: number): Prefix {
    return new Prefix(family, bigToAddress(family, value & ~hostMask(family, length)), length);
  }

  get key(): string {
    return prefixKey(this.address, this.length);
  }

  /**
   * The same "network/length" as key, named as IpAddress names its canonical
   * spelling: messages print addresses and prefixes alike.
   */
  get text(): string {
    return this.key;
  }

  /**
   * Whether an address lies inside this prefix: canonical text or its value
   * (of this prefix's family), or a parsed address of either family.
   */
  contains(address: string | bigint | IpAddress): boolean {
    if (typeof address === 'object') {
      // Checked on 16-bit groups: this runs for every target of a whole file
      // (allowed targets), where BigInts cost microseconds per address.
      return (
        address.family === this.family &&
        sameLeadingBits(this.groups, address.groups ?? addressGroups(address.family, address.text), this.length)
      );
    }
    const v = typeof address === 'bigint' ? address : addressToBig(this.family, address);
    return (v & ~hostMask(this.family, this.length)) === this.network;
  }

  private get groups(): readonly number[] {
    return (this.groupsCache ??= addressGroups(this.family, this.address));
  }

  /** An address inside this prefix moved into `to`: its host bits kept, the network bits `to`'s. */
  translate(address: string | bigint, to: Prefix): string {
    return bigToAddress(this.family, this.move(typeof address === 'bigint' ? address : addressToBig(this.family, address), to));
  }

  /** translate, on values. */
  move(value: bigint, to: Prefix): bigint {
    const mask = hostMask(this.family, this.length);
    return (to.network & ~mask) | (value & mask);
  }
}

/** Whether two addresses (as groups) agree in their first `length` bits. */
function sameLeadingBits(a: readonly number[], b: readonly number[], length: number): boolean {
  let i = 0;
  for (; length >= 16; length -= 16, i++) if (a[i] !== b[i]) return false;
  if (length === 0) return true;
  const mask = (0xffff << (16 - length)) & 0xffff;
  return (a[i]! & mask) === (b[i]! & mask);
}

/** A prefix mapping: every address in `from` goes to the same host bits in `to`. */
export interface PrefixMove {
  family: IpFamily;
  from: string;
  to: string;
  length: number;
}

/** Longest-prefix lookup over prefix mappings, as the kernel's rules (longest first) decide. */
export class PrefixMoves<T extends PrefixMove = PrefixMove> {
  private readonly moves: { move: T; from: Prefix; to: Prefix }[];

  constructor(moves: Iterable<T>) {
    this.moves = [...moves]
      .map((move) => ({ move, from: new Prefix(move.family, move.from, move.length), to: new Prefix(move.family, move.to, move.length) }))
      .sort((a, b) => b.move.length - a.move.length);
  }

  get size(): number {
    return this.moves.length;
  }

  /** The longest mapping holding the address, and where it sends it; undefined if none does. */
  lookup(family: IpFamily, address: string | bigint): { move: T; to: string } | undefined {
    if (!this.moves.length) return undefined;
    const v = typeof address === 'bigint' ? address : addressToBig(family, address);
    const m = this.moves.find((x) => x.move.family === family && x.from.contains(v));
    return m && { move: m.move, to: m.from.translate(v, m.to) };
  }
}

/** A prefix mapping's two ends as keys ("net/len"), the way applied.json, status and flows pair them. */
export const movePair = (p: { from: string; to: string; length: number }): [string, string] => [
  prefixKey(p.from, p.length),
  prefixKey(p.to, p.length),
];

/**
 * Where a set of mappings (the applied state, or the kernel's view of it)
 * sends a mapping's from: an address, or for a prefix mapping ("net/len")
 * the target prefix, as applied.json spells it.
 */
export function targetIn(
  mappings: { v4: ReadonlyMap<string, string>; v6: ReadonlyMap<string, string>; prefixes?: readonly PrefixMove[] | null },
  from: string,
): string | undefined {
  if (!from.includes('/')) return mappings.v6.get(from) ?? mappings.v4.get(from);
  const p = mappings.prefixes?.find((x) => prefixKey(x.from, x.length) === from);
  return p && movePair(p)[1];
}

/**
 * The prefix mappings among "from -> to" pairs as applied.json and the
 * status keep them ("network/length" both sides); single addresses and text
 * that is not a prefix are left out.
 */
export function prefixMovesOf(pairs: Iterable<readonly [string, string]>): PrefixMoves {
  const moves: PrefixMove[] = [];
  for (const [from, to] of pairs) {
    if (!from.includes('/')) continue;
    try {
      const f = Prefix.parse(from);
      const t = Prefix.parse(to);
      if (t.family === f.family) moves.push({ family: f.family, from: f.address, to: t.address, length: f.length });
    } catch {
      // not a prefix: matches nothing
    }
  }
  return new PrefixMoves(moves);
}
