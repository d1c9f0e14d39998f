// Finding addresses in a line of text, for `addrmap scan`: every IPv4 and
// IPv6 address in whatever spelling it was written, canonicalised, with its
// position.
import { normalizeIp, unmapIpv4 } from '../net/address.js';

// A candidate is a maximal run of the characters addresses are made of
// ([0-9A-Fa-f.:]). Taking maximal runs, never substrings, is what keeps
// "11.2.3.4" from matching 1.2.3.4 and "1:fdaa::2" from matching fdaa::2.
//
// A run touching a letter, digit or "_" on either side is part of a longer word
// ("v1.2.3.4", "0x1.2.3.4", "fdaa::2g") and does not count as a whole, except
// that a single ":" at either end is a separator ("host:1.2.3.4",
// "fdaa::2: up") and dots at either end next to non-word characters are
// punctuation ("reach 1.2.3.4.").
//
// A run is then read as, in order:
//   1. an IPv4 dotted quad, "1.2.3.4" (no leading zeros: "010.0.0.1" means
//      8.0.0.1 to inet_aton and 10.0.0.1 elsewhere, so it is not guessed at);
//   2. a dotted quad with a port, "1.2.3.4:5432";
//   3. an IPv6 address in any valid spelling (compressed, expanded, leading
//      zeros, any case, IPv4-embedded "fd00::10.0.0.1" or "::ffff:1.2.3.4"),
//      then widened to include a zone ("%eth0", or "%25eth0" in URLs) and
//      surrounding brackets with an optional port ("[fdaa::2]:5432"). An
//      unbracketed "fdaa::2:5432" is ambiguous and is taken as the address
//      fdaa::2:5432, as every IPv6 parser would; only when the run is not an
//      address but its part before the last ":" is a full eight-group address
//      ("fdaa:0:0:0:0:0:0:2:5432") is the tail read as a port;
//   4. failing those, the run's ":"-separated parts are looked at one by one
//      for dotted quads ("udp:1.2.3.4:53", "abc:1.2.3.4"); a part at an edge
//      touching a word counts as part of that word.
//
// Each candidate is canonicalised with normalizeIp, and an IPv4-mapped IPv6
// address ("::ffff:1.2.3.4", "::ffff:102:304") is read as the IPv4 address it
// puts on the wire (unmapIpv4): it matches the IPv4 key 1.2.3.4, as the kernel
// translates it, and its embedded quad is not reported a second time. A MAC address ("aa:bb:cc:dd:ee:ff", six groups) or
// a lone "dead:beef" is not a valid IPv6 address, so it yields nothing.
export interface FoundAddress {
  /** 0-based index in the line of the first character of `text`. */
  start: number;
  /** As written, including brackets, zone and port when present. */
  text: string;
  /** normalizeIp of the address part. */
  address: string;
}

const RUN = /[0-9A-Fa-f.:]+/g;
const WORD_CHAR = /[\p{L}\p{N}\p{M}_]/u;
const QUAD_SHAPE = /^\d{1,3}(?:\.\d{1,3}){3}$/;
const QUAD_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/;
const ZONE = /%[0-9A-Za-z_.~-]+/y;
const BRACKET_PORT = /:(\d{1,5})(?!\d)/y;
/** Longest IPv6 text: eight groups with an embedded quad, "0000:…:255.255.255.255". */
const MAX_V6_TEXT = 45;

/** Finds candidate addresses in one line; exported for tests. Sorted by start. */
export function findAddresses(line: string): FoundAddress[] {
  const out: FoundAddress[] = [];
  RUN.lastIndex = 0;
  for (let m = RUN.exec(line); m !== null; m = RUN.exec(line)) {
    const run = m[0];
    if (!run.includes(':') && !run.includes('.')) continue;
    let a = m.index;
    let b = a + run.length;
    const end = b;
    let leftWord = a > 0 && isWordChar(line, a - 1);
    let rightWord = b < line.length && isWordChar(line, b);

    if (line[a] === ':' && line[a + 1] !== ':') {
      a++;
      leftWord = false;
    } else if (line[a] === '.' && !leftWord) {
      while (a < b && line[a] === '.') a++;
    }
    if (b > a && line[b - 1] === ':' && line[b - 2] !== ':') {
      b--;
      rightWord = false;
    } else if (b > a && line[b - 1] === '.' && !rightWord) {
      while (b > a && line[b - 1] === '.') b--;
    }
    if (a >= b) continue;

    const whole = leftWord || rightWord ? null : readWhole(line, a, b, b === end);
    if (whole) out.push(whole);
    else out.push(...readParts(line, a, b, leftWord, rightWord));
  }
  return out;
}

function readWhole(line: string, a: number, b: number, atRunEnd: boolean): FoundAddress | null {
  const core = line.slice(a, b);
  if (!core.includes(':')) {
    if (!QUAD_SHAPE.test(core)) return null;
    const address = tryNormalize(core);
    return address === null ? null : { start: a, text: core, address };
  }
  const withPort = QUAD_PORT.exec(core);
  if (withPort) {
    const address = tryNormalize(withPort[1]!);
    return address !== null && Number(withPort[2]) <= 65535 ? { start: a, text: core, address } : null;
  }
  if (core.length > MAX_V6_TEXT + 6 || !/[0-9A-Fa-f]/.test(core)) return null;
  const address = core.length <= MAX_V6_TEXT ? tryNormalize(core) : null;
  if (address !== null) {
    let start = a;
    let stop = b;
    if (atRunEnd && line[stop] === '%') {
      ZONE.lastIndex = stop;
      if (ZONE.exec(line)) stop = ZONE.lastIndex;
    }
    if (line[start - 1] === '[' && line[stop] === ']') {
      start--;
      stop++;
      BRACKET_PORT.lastIndex = stop;
      const port = BRACKET_PORT.exec(line);
      if (port && Number(port[1]) <= 65535) stop = BRACKET_PORT.lastIndex;
    }
    return { start, text: line.slice(start, stop), address };
  }
  // Not an address as a whole; a full eight-group address followed by ":port"
  // is the one unambiguous unbracketed form with a port.
  const colon = core.lastIndexOf(':');
  const head = core.slice(0, colon);
  const tail = core.slice(colon + 1);
  if (/^\d{1,5}$/.test(tail) && Number(tail) <= 65535 && !head.includes('::') && head.split(':').length === 8) {
    const headAddress = tryNormalize(head);
    if (headAddress !== null) return { start: a, text: core, address: headAddress };
  }
  return null;
}

function readParts(line: string, a: number, b: number, leftWord: boolean, rightWord: boolean): FoundAddress[] {
  const core = line.slice(a, b);
  if (!core.includes('.')) return [];
  const out: FoundAddress[] = [];
  const parts = core.split(':');
  let offset = a;
  parts.forEach((part, i) => {
    const partStart = offset;
    offset += part.length + 1;
    if ((i === 0 && leftWord) || (i === parts.length - 1 && rightWord)) return;
    if (!QUAD_SHAPE.test(part)) return;
    const address = tryNormalize(part);
    if (address === null) return;
    let text = part;
    const next = parts[i + 1];
    // A port only as the last part, so "1.2.3.4:80:x" is not read as a port.
    if (next !== undefined && i + 1 === parts.length - 1 && !rightWord && /^\d{1,5}$/.test(next) && Number(next) <= 65535) {
      text = `${part}:${next}`;
    }
    out.push({ start: partStart, text, address });
  });
  return out;
}

function tryNormalize(text: string): string | null {
  try {
    return unmapIpv4(normalizeIp(text));
  } catch {
    return null;
  }
}

function isWordChar(line: string, i: number): boolean {
  // Whole code point, so a letter outside the BMP is seen as a letter.
  const cp = line.codePointAt(i);
  if (cp === undefined) return false;
  if (cp >= 0xdc00 && cp <= 0xdfff && i > 0) return WORD_CHAR.test(String.fromCodePoint(line.codePointAt(i - 1)!));
  return WORD_CHAR.test(String.fromCodePoint(cp));
}
