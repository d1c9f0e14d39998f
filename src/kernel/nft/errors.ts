// The one place an nftables complaint becomes an NftErrorKind. libnftables
// writes the same text to its error buffer as nft prints on stderr (nft is a
// thin front end to it), so the fake's messages, nft's and the in-process
// client's are read alike. The text is English: Node leaves the C locale in
// place, so strerror() does not translate the errno names matched here.
import type { NftErrorKind } from './types.js';

/**
 * nftables reports an "Error:" line per failed command, in batch order; the
 * first decides. The kernel's refusals carry an errno ("Could not process
 * rule: File exists"); nft's own, made before the kernel sees the batch, name
 * the input's location and what is wrong with it (an address, a datatype, the
 * syntax), or an errno of its cache ("No such file or directory; did you mean
 * map ...").
 */
export function nftErrorKind(message: string): NftErrorKind {
  const first = message.split('\n').find((l) => l.includes('Error:')) ?? message;
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
