// libnftables' context as the agent drives it (libnftables.ts), inside a lab
// namespace (run by test/support/netns-worker.ts): one command in, the
// library's own answer out, for any library file, so the fault shim's answers
// can be held against the real library's.
import { nftErrorKind } from '../../../src/kernel/nft/errors.js';
import { NftContext } from '../../../src/kernel/nft/libnftables.js';

/** One command through `library`'s context, and how errors.ts reads its error buffer. */
export async function command(library: string, cmd: string, dryRun = false) {
  const ctx = NftContext.shared(library);
  if (ctx instanceof Error) throw ctx;
  const r = await ctx.run(cmd, { dryRun });
  return { ...r, kind: r.ok ? null : nftErrorKind(r.error) };
}
