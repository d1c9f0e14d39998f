// `addrmap explain ADDRESS`: whether and why traffic to an address is
// translated, in terms support can check: which entries of the mapping file,
// which generation, how the chain resolved, and what the kernel holds.
import { normalizeIp, unmapIpv4, type IpFamily } from '../net/address.js';
import { Prefix } from '../net/prefix.js';
import type { NftInterface } from '../kernel/nft/index.js';
import { viewFromListing } from '../kernel/plan.js';
import { APPLIED_FILE, readState, type AppliedState } from '../state/state-file.js';
import { shared } from '../agent/query-socket.js';

export interface Explanation {
  /** The address as understood, canonical. */
  address: string;
  translated: boolean;
  /** The final target, when translated. */
  to: string | null;
  generation: number | null;
  /** The file's entries walked from the address to its final target; via: the prefix mapping used. */
  chain: { from: string; to: string; via?: string }[];
  /** Stale addresses that now lead to this address, when it is a target. */
  targetOf: string[];
  /** What the kernel's map holds for the address; undefined: not read. */
  kernel?: string | null;
  lines: string[];
}

export class ExplainInputError extends Error {}

/** Accepts any textual form: "FDAA::1", "[fdaa::1]:5432", "fdaa::1%eth0", "10.0.0.1:80". */
export function parseAddressInput(input: string): string {
  let t = input.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(t);
  if (bracketed) t = bracketed[1]!;
  else if (/^[\d.]+:\d+$/.test(t)) t = t.replace(/:\d+$/, '');
  t = t.replace(/%.*$/, '');
  try {
    return unmapIpv4(normalizeIp(t));
  } catch {
    throw new ExplainInputError(`${JSON.stringify(input)} is not an IP address`);
  }
}

/** explain() with what the state directory holds and, when a client is given, what the kernel holds now. */
export async function explainAt(input: string, stateDir: string, nft: NftInterface | null): Promise<Explanation> {
  parseAddressInput(input); // a usage error before any reading
  const applied = await readState<AppliedState>(stateDir, APPLIED_FILE);
  const kernel = nft ? await kernelMapOf(nft)() : null;
  return explain(input, applied, kernel ?? undefined);
}

/**
 * The kernel's map as one client reads it, shared by every explain through
 * that client (the agent's, for the query socket) as shared() shares status:
 * each explain needs the whole listing whatever address it asks about, so
 * askers looping over addresses would otherwise keep the agent listing.
 */
const kernelMaps = new WeakMap<NftInterface, () => Promise<ReadonlyMap<string, string> | null>>();
function kernelMapOf(nft: NftInterface): () => Promise<ReadonlyMap<string, string> | null> {
  let read = kernelMaps.get(nft);
  if (!read) {
    read = shared(() =>
      nft.list().then(
        (listing) => {
          const view = viewFromListing(listing);
          return new Map([...view.v4, ...view.v6]);
        },
        () => null, // not privileged after all: explained without the kernel
      ),
    );
    kernelMaps.set(nft, read);
  }
  return read;
}

export function explain(input: string, applied: AppliedState | null, kernel?: ReadonlyMap<string, string>): Explanation {
  const address = parseAddressInput(input);
  const e: Explanation = {
    address,
    translated: false,
    to: null,
    generation: applied?.generation ?? null,
    chain: [],
    targetOf: [],
    lines: [],
  };
  if (kernel) e.kernel = kernel.get(address) ?? null;
  if (!applied) {
    e.lines.push(`${address}: no mappings have been applied (the agent has not applied a file, or the feature is off).`);
    return e;
  }
  const resolved = new Map(applied.resolved.filter((m) => !m.from.includes('/')).map((m) => [m.from, m.to]));
  const resolvedNets = applied.resolved
    .filter((m) => m.from.includes('/'))
    .map(toNet)
    .sort((a, b) => b.length - a.length);
  const entryNets = applied.entries
    .filter((m) => m.from.includes('/'))
    .map(toNet)
    .sort((a, b) => b.length - a.length);
  const next = new Map(applied.entries.filter((m) => !m.from.includes('/')).map((m) => [m.from, m.to]));
  // One step of the file as written: the address's own entry, else the longest prefix entry holding it.
  const step = (a: string): { to: string; via?: string } | null => {
    const own = next.get(a);
    if (own !== undefined) return { to: own };
    const n = longest(entryNets, a);
    return n ? { to: n.translate(a), via: n.text } : null;
  };
  const byPrefix = resolved.has(address) ? null : longest(resolvedNets, address);
  const to = resolved.get(address) ?? byPrefix?.translate(address);
  if (to !== undefined) {
    e.translated = true;
    e.to = to;
    for (let cur = address, s = step(cur); s && e.chain.length <= applied.entries.length; cur = s.to, s = step(cur)) {
      e.chain.push({ from: cur, to: s.to, ...(s.via ? { via: s.via } : {}) });
    }
    e.lines.push(`${address} is translated to ${to} (generation ${applied.generation}, applied ${applied.at}).`);
    if (e.chain.length > 1) {
      e.lines.push(
        `The mapping file chains ${[address, ...e.chain.map((c) => c.to)].join(' -> ')}; DNAT applies once, so ${address} goes straight to ${to}.`,
      );
    } else {
      e.lines.push(
        `The mapping file maps ${address} -> ${to} directly${e.chain[0]?.via ? ` (by the prefix mapping ${e.chain[0].via})` : ''}.`,
      );
    }
    const vias = e.chain.filter((c) => c.via).map((c) => `${c.from} by ${c.via}`);
    if (vias.length && e.chain.length > 1) e.lines.push(`Prefix mappings on the way: ${vias.join('; ')}.`);
  } else {
    e.lines.push(`${address} is not translated: no mapping in generation ${applied.generation} has it as "from".`);
  }
  const own = applied.self?.find((m) => m.from === address);
  if (own)
    e.lines.push(
      `${address} is this guest's own previous address (now ${own.to}): bindable here, and traffic arriving at ${own.to} reaches sockets bound on ${address}.`,
    );
  e.targetOf = applied.resolved.filter((m) => m.to === address).map((m) => m.from);
  if (e.targetOf.length) e.lines.push(`${address} is the current address behind: ${e.targetOf.join(', ')}.`);
  if (kernel && byPrefix) {
    e.lines.push(`It is translated by the prefix rule for ${byPrefix.text} (see "nft list chain inet addrmap prefix_dnat").`);
  } else if (kernel) {
    if (e.translated && e.kernel === to)
      e.lines.push(`The kernel agrees: map ${address.includes(':') ? 'dnat6' : 'dnat4'} sends ${address} to ${to}.`);
    else if (e.translated)
      e.lines.push(
        `DRIFT: the kernel ${e.kernel ? `sends ${address} to ${e.kernel}` : `has no entry for ${address}`}; the agent repairs this if it runs.`,
      );
    else if (e.kernel) e.lines.push(`DRIFT: the kernel still sends ${address} to ${e.kernel}, which no applied mapping asks for.`);
  } else {
    e.lines.push('(The kernel was not read; run as root to compare.)');
  }
  return e;
}

interface Net {
  text: string;
  length: number;
  contains(a: string): boolean;
  translate(a: string): string;
}

function toNet(m: { from: string; to: string }): Net {
  const from = Prefix.parse(m.from);
  const family = from.family;
  const to = new Prefix(family, Prefix.parse(m.to).address, from.length);
  const fam = (a: string): IpFamily => (a.includes(':') ? 6 : 4);
  return {
    text: `${m.from} -> ${m.to}`,
    length: from.length,
    contains: (a) => fam(a) === family && from.contains(a),
    translate: (a) => from.translate(a, to),
  };
}

function longest(nets: Net[], a: string): Net | undefined {
  return nets.find((n) => n.contains(a));
}
