// One prefix type for every module that asks "is this address inside that
// network, and where does a prefix mapping send it": resolution, conntrack
// cleanup, explain, self-capture, the reconciler. The kernel's prefix rules
// keep an address's host bits and replace its network bits; this is that
// translation, written once.
import { addressToBig, bigToAddress, hostMask, normalizeIp, type IpFamily } from './address.js';

/** "network/length": the one spelling of a prefix as a key or in a message. */
export const prefixKey = (network: string, length: number): string => `${network}/${length}`;

export class Prefix {
  readonly network: bigint;

  constructor(
    readonly family: IpFamily,
    /** The network address, canonical. */
    readonly address: string,
    readonly length: number,
  ) {
    this.network = addressToBig(family, address) & ~hostMask(family, length);
  }

  /** The prefix of this length holding an address given as its value. */
  static of(family: IpFamily, value: bigint, length: number): Prefix {
    return new Prefix(family, bigToAddress(family, value & ~hostMask(family, length)), length);
  }

  get key(): string {
    return prefixKey(this.address, this.length);
  }

  /** Whether an address (canonical text, or its value) of this prefix's family lies inside it. */
  contains(address: string | bigint): boolean {
    const v = typeof address === 'bigint' ? address : addressToBig(this.family, address);
    return (v & ~hostMask(this.family, this.length)) === this.network;
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

/**
 * The prefix mappings among "from -> to" pairs as applied.json and the
 * status keep them ("network/length" both sides); single addresses and text
 * that is not a prefix are left out.
 */
export function prefixMovesOf(pairs: Iterable<readonly [string, string]>): PrefixMoves {
  const moves: PrefixMove[] = [];
  for (const [from, to] of pairs) {
    const [net, len] = from.split('/');
    const [toNet] = to.split('/');
    if (len === undefined || !net || !toNet) continue;
    try {
      moves.push({ family: net.includes(':') ? 6 : 4, from: normalizeIp(net), to: normalizeIp(toNet), length: Number(len) });
    } catch {
      // not an address: matches nothing
    }
  }
  return new PrefixMoves(moves);
}
