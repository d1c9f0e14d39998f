// Which shape of addrmap's table the running kernel accepts, asked of the
// kernel itself with check-only batches (nft --check: validated, never
// committed). Guests run many kernels: Debian 11's 5.10 and 12's 6.1 reject a
// lookup that uses a map as a set, which 6.12 accepts. The essentials (DNAT
// through a map, prefix rules) must pass; the rest falls back to a shape that
// costs a little more, or is left out and reported.
import { buildRuleset, FULL_CAPS, type KernelCaps, type Ruleset } from './ruleset.js';
import { EMPTY_VIEW, planSync } from './plan.js';
import { NftError, type Transaction } from './nft/index.js';

export type Validate = (tx: Transaction) => Promise<void>;

export interface Probe {
  ruleset: Ruleset;
  /** The kernel's answer to each shape it rejected, for the debug log. */
  rejected: { shape: string; reason: string }[];
}

/** The whole table in one shape, empty: what a check-only batch asks the kernel about. */
const emptyTable = (caps: KernelCaps) => planSync(EMPTY_VIEW, { v4: new Map(), v6: new Map() }, true, buildRuleset(caps)).tx;

/**
 * The richest ruleset the kernel accepts. One check when the kernel takes
 * everything (the common case on new kernels); a few more otherwise. Throws
 * the kernel's own answer when even the essentials are rejected.
 */
export async function probeKernel(validate: Validate): Promise<Probe> {
  const rejected: Probe['rejected'] = [];
  const accepts = async (caps: KernelCaps, shape: string) => {
    try {
      await validate(emptyTable(caps));
      return true;
    } catch (e) {
      if (!(e instanceof NftError)) throw e;
      rejected.push({ shape, reason: e.message });
      return false;
    }
  };
  if (await accepts(FULL_CAPS, 'full')) return { ruleset: buildRuleset(FULL_CAPS), rejected };

  const base: KernelCaps = { count: 'none', selfGuard: 'none' };
  // The essentials alone: when they fail, the kernel's answer is the error.
  await validate(emptyTable(base));
  let count: KernelCaps['count'] = 'none';
  for (const c of ['map', 'set'] as const) {
    if (await accepts({ ...base, count: c }, `count via ${c}`)) {
      count = c;
      break;
    }
  }
  let selfGuard: KernelCaps['selfGuard'] = 'none';
  for (const g of ['map', 'set'] as const) {
    if (await accepts({ ...base, selfGuard: g }, `self guard via ${g}`)) {
      selfGuard = g;
      break;
    }
  }
  const caps: KernelCaps = { count, selfGuard };
  // Each part passed alone; the whole must pass too before it is relied on.
  await validate(emptyTable(caps));
  return { ruleset: buildRuleset(caps), rejected };
}
