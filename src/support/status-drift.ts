// Drift as status reports it: the applied mappings (applied.json) against
// what the kernel's table holds, in words support can act on.
import { movePair, targetIn } from '../net/prefix.js';
import type { viewFromListing } from '../kernel/plan.js';
import { TABLE } from '../kernel/ruleset.js';
import type { AppliedState } from '../state/state-file.js';

export function driftOf(
  resolved: AppliedState['resolved'],
  kernel: ReturnType<typeof viewFromListing>,
  present: boolean,
  enabled: boolean,
): string[] {
  if (!enabled) return present ? [`table ${TABLE.family} ${TABLE.name} exists although the feature is off`] : [];
  if (!present) return resolved.length ? [`table ${TABLE.family} ${TABLE.name} is missing`] : [];
  const out: string[] = [];
  if (!kernel.layoutOk) out.push(`table ${TABLE.family} ${TABLE.name} has been altered (chains, rules or maps differ)`);
  if (kernel.prefixes === null) out.push(`the prefix chains of table ${TABLE.family} ${TABLE.name} hold rules addrmap did not write`);
  const want = new Map(resolved.map((m) => [m.from, m.to]));
  for (const m of resolved) {
    const have = kernelTarget(kernel, m);
    if (have === undefined) out.push(`${m.from} -> ${m.to} is missing from the kernel`);
    else if (have !== m.to) out.push(`${m.from} goes to ${have} in the kernel, not ${m.to}`);
  }
  const inKernel: [string, string][] = [...kernel.v4, ...kernel.v6, ...(kernel.prefixes ?? []).map(movePair)];
  for (const [from, to] of inKernel) if (!want.has(from)) out.push(`${from} -> ${to} is in the kernel but not in the applied mappings`);
  return out;
}

/** Where the kernel sends a resolved mapping's from ("net/len" for prefixes, as in applied.json). */
export const kernelTarget = (kernel: ReturnType<typeof viewFromListing>, m: { from: string }): string | undefined =>
  targetIn(kernel, m.from);
