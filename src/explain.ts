// `addrmap explain ADDRESS`: whether and why traffic to an address is
// translated, in terms support can check: which entries of the mapping file,
// which generation, how the chain resolved, and what the kernel holds.
import { normalizeIp } from './address.js';
import type { AppliedState } from './state-file.js';

export interface Explanation {
  /** The address as understood, canonical. */
  address: string;
  translated: boolean;
  /** The final target, when translated. */
  to: string | null;
  generation: number | null;
  /** The file's entries walked from the address to its final target. */
  chain: { from: string; to: string }[];
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
    return normalizeIp(t);
  } catch {
    throw new ExplainInputError(`${JSON.stringify(input)} is not an IP address`);
  }
}

export function explain(input: string, applied: AppliedState | null, kernel?: ReadonlyMap<string, string>): Explanation {
  const address = parseAddressInput(input);
  const e: Explanation = { address, translated: false, to: null, generation: applied?.generation ?? null, chain: [], targetOf: [], lines: [] };
  if (kernel) e.kernel = kernel.get(address) ?? null;
  if (!applied) {
    e.lines.push(`${address}: no mappings have been applied (the agent has not applied a file, or the feature is off).`);
    return e;
  }
  const resolved = new Map(applied.resolved.map((m) => [m.from, m.to]));
  const next = new Map(applied.entries.map((m) => [m.from, m.to]));
  const to = resolved.get(address);
  if (to !== undefined) {
    e.translated = true;
    e.to = to;
    for (let cur = address; next.has(cur) && e.chain.length <= next.size; cur = next.get(cur)!) e.chain.push({ from: cur, to: next.get(cur)! });
    e.lines.push(`${address} is translated to ${to} (generation ${applied.generation}, applied ${applied.at}).`);
    if (e.chain.length > 1) {
      e.lines.push(`The mapping file chains ${[address, ...e.chain.map((c) => c.to)].join(' -> ')}; DNAT applies once, so ${address} goes straight to ${to}.`);
    } else {
      e.lines.push(`The mapping file maps ${address} -> ${to} directly.`);
    }
  } else {
    e.lines.push(`${address} is not translated: no mapping in generation ${applied.generation} has it as "from".`);
  }
  e.targetOf = applied.resolved.filter((m) => m.to === address).map((m) => m.from);
  if (e.targetOf.length) e.lines.push(`${address} is the current address behind: ${e.targetOf.join(', ')}.`);
  if (kernel) {
    if (e.translated && e.kernel === to) e.lines.push(`The kernel agrees: map ${address.includes(':') ? 'dnat6' : 'dnat4'} sends ${address} to ${to}.`);
    else if (e.translated) e.lines.push(`DRIFT: the kernel ${e.kernel ? `sends ${address} to ${e.kernel}` : `has no entry for ${address}`}; the agent repairs this if it runs.`);
    else if (e.kernel) e.lines.push(`DRIFT: the kernel still sends ${address} to ${e.kernel}, which no applied mapping asks for.`);
  } else {
    e.lines.push('(The kernel was not read; run as root to compare.)');
  }
  return e;
}
