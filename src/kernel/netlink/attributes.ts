// Netlink attributes (struct nlattr): a 16-bit length and type, the value,
// padding to four bytes. One reader and one writer for every family addrmap
// speaks (rtnetlink, ctnetlink, nf_tables notifications).

/** The type bits; the two top bits are the nested and byte-order flags. */
const NLA_TYPE_MASK = 0x3fff;

/** One attribute, padded. */
export function attr(type: number, value: Buffer): Buffer {
  const b = Buffer.alloc((4 + value.length + 3) & ~3);
  b.writeUInt16LE(4 + value.length, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}

/** Each attribute in a buffer, in order: its type (without flags), its value, and its whole bytes as sent. */
export function* attributeList(buf: Buffer): Generator<[number, Buffer, Buffer]> {
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) return;
    yield [buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, buf.subarray(off + 4, off + len), buf.subarray(off, (off + len + 3) & ~3)];
    off += (len + 3) & ~3;
  }
}

/** The attributes in a buffer by type; of a repeated type, the first (a list's first element). */
export function attributes(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const [type, value] of attributeList(buf)) if (!out.has(type)) out.set(type, value);
  return out;
}
