// Addresses: the fake's own reading, as nft's (getaddrinfo, inet_ntop).
// Its own, not the code under test's (src/net/address.ts), so a bug there
// cannot hide in the fake. Names nft would resolve (host names; zone ids,
// which nft takes only for an interface that exists, then drops) are refused:
// the fake has no resolver and no interfaces.
import type { KeyType } from '../../src/kernel/nft/types.js';

/** An address as nft lists it, or null where nft would not take the text as one of this type. */
export function canonical(type: KeyType, text: unknown): string | null {
  const bytes = toBytes(type, text);
  return bytes && fromBytes(bytes);
}

/** The 4 or 16 bytes of an address: IPv4 in any form inet_aton takes ("10.1", "010.0.0.1", "0x0a.0.0.1"), IPv6 as inet_pton does. */
export function toBytes(type: KeyType, text: unknown): number[] | null {
  if (typeof text !== 'string') return null;
  return type === 'ipv4_addr' ? bytes4(text) : bytes6(text);
}

function bytes4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length > 4) return null;
  const nums: number[] = [];
  for (const p of parts) {
    const m = /^(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))$/.exec(p);
    if (!m) return null;
    nums.push(m[1] !== undefined ? parseInt(m[1], 16) : m[2] !== undefined ? parseInt(m[2], 8) : parseInt(m[3]!, 10));
  }
  // The last part fills the bytes the others leave.
  const last = nums.pop()!;
  const room = 4 - nums.length;
  if (nums.some((n) => n > 255) || last >= 2 ** (8 * room)) return null;
  for (let i = room - 1; i >= 0; i--) nums.push(Math.floor(last / 2 ** (8 * i)) % 256);
  return nums;
}

const DOTTED_QUAD =
  /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function bytes6(s: string): number[] | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  const gap = s.indexOf('::');
  if (gap !== -1 && s.indexOf('::', gap + 1) !== -1) return null;
  // Groups of one side of "::"; a dotted quad may end the address.
  const side = (x: string, last: boolean): number[] | null => {
    if (x === '') return [];
    const pieces = x.split(':');
    const out: number[] = [];
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i]!;
      const quad = last && i === pieces.length - 1 ? DOTTED_QUAD.exec(p) : null;
      if (/^[0-9a-fA-F]{1,4}$/.test(p)) out.push(parseInt(p, 16));
      else if (quad) out.push(Number(quad[1]) * 256 + Number(quad[2]), Number(quad[3]) * 256 + Number(quad[4]));
      else return null;
    }
    return out;
  };
  let groups: number[] | null;
  if (gap === -1) {
    groups = side(s, true);
    if (groups?.length !== 8) return null;
  } else {
    const head = side(s.slice(0, gap), false);
    const tail = side(s.slice(gap + 2), true);
    if (!head || !tail || head.length + tail.length > 7) return null;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

/** inet_ntop's text: dotted quad; for IPv6 the first longest run of two or more zero groups as "::", IPv4-mapped and -compatible forms dotted. */
export function fromBytes(b: number[]): string {
  if (b.length === 4) return b.join('.');
  const g = Array.from({ length: 8 }, (_, i) => b[2 * i]! * 256 + b[2 * i + 1]!);
  let best = { base: -1, len: 0 };
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len) best = { base: i, len: j - i };
    i = j;
  }
  if (best.len < 2) best = { base: -1, len: 0 };
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (best.base !== -1 && i >= best.base && i < best.base + best.len) {
      if (i === best.base) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && best.base === 0 && (best.len === 6 || (best.len === 5 && g[5] === 0xffff))) {
      out += b.slice(12).join('.');
      return out;
    }
    out += g[i]!.toString(16);
  }
  if (best.base !== -1 && best.base + best.len === 8) out += ':';
  return out;
}
