// ctnetlink messages, byte by byte: what addrmap reads from a dumped flow and
// what it sends to delete one. The kernel side is in test/kernel/conntrack.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { addressFromBytes, normalizeIp } from '../../../../src/net/address.js';
import { decodeFlow, encodeDelete } from '../../../../src/kernel/netlink/ctnetlink.js';
import { messages } from '../../../../src/kernel/netlink/socket.js';

const attr = (type: number, value: Buffer, nested = false) => {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type | (nested ? 0x8000 : 0), 2);
  value.copy(b, 4);
  return b;
};
const nest = (type: number, ...children: Buffer[]) => attr(type, Buffer.concat(children), true);
const ip6 = (a: string) =>
  Buffer.from(
    a
      .split(':')
      .map((g) => g.padStart(4, '0'))
      .join(''),
    'hex',
  );
const be16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const be32 = (n: number) => Buffer.from([n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);

/** A dumped UDP flow, as the kernel sends it (nfgenmsg, then attributes). */
function dumped(orig: [string, string], reply: [string, string], ports: [number, number], id: number): Buffer {
  const tuple = (type: number, [src, dst]: [string, string], [sp, dp]: [number, number]) =>
    nest(type, nest(1, attr(3, ip6(src)), attr(4, ip6(dst))), nest(2, attr(1, Buffer.from([17])), attr(2, be16(sp)), attr(3, be16(dp))));
  return Buffer.concat([
    Buffer.from([10, 0, 0, 0]),
    tuple(1, orig, ports),
    tuple(2, reply, [ports[1], ports[0]]),
    attr(3, be32(0x188)),
    attr(12, be32(id)),
  ]);
}

// Written out in full (8 groups): ip6() packs them as they stand.
const STALE = 'fdaa:0000:0018:0a7b:007d:f066:b83b:0002';
const GUEST = 'fd00:0001:0000:0000:0000:0000:0000:0001';
const TARGET = 'fdaa:0000:0018:0a7b:00c2:f066:b83b:0002';

describe('decodeFlow', () => {
  test('a translated UDP flow: tuple, ports, who answers', () => {
    const f = decodeFlow(dumped([GUEST, STALE], [TARGET, GUEST], [40000, 7000], 77), 6);
    expect(f).toEqual({
      family: 6,
      proto: 'udp',
      origSrc: 'fd00:1::1',
      origDst: 'fdaa:0:18:a7b:7d:f066:b83b:2',
      sport: 40000,
      dport: 7000,
      replySrc: 'fdaa:0:18:a7b:c2:f066:b83b:2',
    });
  });

  test('a flow the filter does not want is not decoded further', () => {
    expect(decodeFlow(dumped([GUEST, STALE], [STALE, GUEST], [1, 2], 1), 6, () => false)).toBeNull();
  });

  test('truncated attributes give no flow rather than a wrong one', () => {
    const whole = dumped([GUEST, STALE], [STALE, GUEST], [1, 2], 1);
    expect(decodeFlow(whole.subarray(0, 40), 6)).toBeNull();
  });
});

describe('encodeDelete', () => {
  test('names the flow by its original tuple and id exactly as dumped', () => {
    const payload = dumped([GUEST, STALE], [STALE, GUEST], [40000, 7000], 0x01020304);
    const f = decodeFlow(payload, 6)!;
    const [m] = [...messages(encodeDelete(f, 9))];
    expect(m).toMatchObject({ type: (1 << 8) | 2, flags: 0x1 | 0x4, seq: 9 });
    const origTuple = payload.subarray(4, 4 + payload.readUInt16LE(4));
    expect(m!.payload.subarray(4).includes(origTuple)).toBe(true);
    expect(m!.payload.subarray(4).includes(attr(12, be32(0x01020304)))).toBe(true);
    // Neither the reply tuple nor the status travel: the kernel looks the flow up by the original.
    expect(m!.payload.length).toBe(4 + origTuple.length + 8);
  });

  test('refuses a flow that was not listed over ctnetlink: a delete without a tuple flushes the whole table', () => {
    expect(() => encodeDelete({ family: 6, proto: 'udp', origSrc: 'fd00:1::1', origDst: 'fdaa::1', replySrc: 'fdaa::1' }, 1)).toThrow(
      /not listed over ctnetlink/,
    );
  });
});

test('addressFromBytes writes what normalizeIp writes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      const text = [...Array(8).keys()].map((i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16)).join(':');
      expect(addressFromBytes(b)).toBe(normalizeIp(text));
    }),
  );
  expect(addressFromBytes(Uint8Array.from([192, 0, 2, 1]))).toBe('192.0.2.1');
});
