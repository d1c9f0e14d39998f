// How the fake refuses: the error text nft prints for a JSON batch (with the
// errno texts the kernel's refusals carry), and who refused, nft or the kernel.
import { NftError, type NftErrorKind } from '../../src/kernel/nft/types.js';

/**
 * Who refuses: nft, evaluating the batch against its cache before sending
 * it (its complaint wins wherever it stands in the batch), or the kernel,
 * applying it in order (the first refusal is reported).
 */
type Stage = 'nft' | 'kernel';
const stages = new WeakMap<NftError, Stage>();

export const FAILED = 'nft transaction failed, nothing was changed';

/** Whether the kernel refused (nft's evaluation skips what only the kernel would refuse). */
export function refusedByKernel(e: unknown): boolean {
  return e instanceof NftError && stages.get(e) === 'kernel';
}

/** Throws what nft prints for a JSON batch (which nftErrorKind reads as `kind`), naming the operation. */
export function fail(what: string, kind: NftErrorKind, reason: string, stage: Stage): never {
  const prefix = stage === 'kernel' ? 'Could not process rule: ' : '';
  const e = new NftError(FAILED, `internal:0:0-0: Error: ${prefix}${reason}: ${what}`, kind);
  stages.set(e, stage);
  throw e;
}

export const ENOENT = 'No such file or directory';
export const EEXIST = 'File exists';
export const EBUSY = 'Device or resource busy';
export const EOPNOTSUPP = 'Operation not supported';
export const EINVAL = 'Invalid argument';
