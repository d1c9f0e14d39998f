// rtnetlink messages, byte by byte: what addrmap sends to add and delete a
// route or an address, and what it reads from dumped routes, rules and
// addresses. The kernel's side is in test/kernel/routes-contract.test.ts.
import { describe, expect, test } from 'vitest';
import {
  addressAddPayload,
  decodeAddress,
  decodeRoute,
  decodeRule,
  routeAddPayload,
  routeDelPayload,
  u32,
} from '../../../../src/kernel/netlink/rtnetlink-codec.js';
import { attr } from '../../../../src/kernel/netlink/attributes.js';

const hex = (b: Buffer) => b.toString('hex');
const ip6 = (s: string) => Buffer.from(s, 'hex');

describe('route requests', () => {
  test('an add: main table, protocol 173, universe scope, unicast; destination, device, gateway', () => {
    const p = routeAddPayload({ family: 6, dst: 'fdbb::1', dstLen: 128, oif: 3, gateway: 'fd00:1::2' }, 173);
    // rtmsg: AF_INET6, /128, src 0, tos 0, table 254, proto 173, scope 0, type 1; flags 0
    expect(hex(p.subarray(0, 12))).toBe('0a800000fead0001' + '00000000');
    expect(hex(p.subarray(12))).toBe(
      '08000f00fe000000' + // RTA_TABLE 254
        '14000100' +
        'fdbb0000000000000000000000000001' + // RTA_DST
        '0800040003000000' + // RTA_OIF 3
        '14000500' +
        'fd000001000000000000000000000002', // RTA_GATEWAY
    );
  });

  test('a delete names prefix and protocol only (scope nowhere, any type), never device or gateway', () => {
    const p = routeDelPayload(4, '203.0.113.5', 32, 173);
    expect(hex(p)).toBe('02200000' + 'fe' + 'ad' + 'ff' + '00' + '00000000' + '08000f00fe000000' + '08000100cb007105');
  });
});

describe('dumped routes', () => {
  const rtm = (family: number, dstLen: number, table: number, proto: number, type: number, flags = 0) => {
    const b = Buffer.alloc(12);
    b.set([family, dstLen, 0, 0, table, proto, 0, type]);
    b.writeUInt32LE(flags, 8);
    return b;
  };

  test('a host route of addrmap: destination, table from RTA_TABLE, device, gateway, metric', () => {
    const p = Buffer.concat([
      rtm(10, 128, 254, 173, 1),
      attr(15, u32(254)),
      attr(1, ip6('fdbb0000000000000000000000000001')),
      attr(6, u32(1024)),
      attr(4, u32(3)),
      attr(5, ip6('fd000001000000000000000000000002')),
    ]);
    expect(decodeRoute(p)).toEqual({
      family: 6,
      dst: 'fdbb::1',
      dstLen: 128,
      srcLen: 0,
      tos: 0,
      table: 254,
      protocol: 173,
      type: 1,
      cloned: false,
      complex: false,
      oif: 3,
      gateway: 'fd00:1::2',
      priority: 1024,
    });
  });

  test('a default route has no RTA_DST; multipath is complex; a cached exception is cloned', () => {
    expect(decodeRoute(Buffer.concat([rtm(2, 0, 254, 3, 1), attr(4, u32(2))]))).toMatchObject({ dst: '0.0.0.0', dstLen: 0 });
    expect(decodeRoute(Buffer.concat([rtm(2, 0, 254, 3, 1), attr(9, Buffer.alloc(8))]))).toMatchObject({ complex: true });
    expect(decodeRoute(rtm(10, 128, 254, 2, 1, 0x200))).toMatchObject({ cloned: true });
  });
});

describe('dumped rules', () => {
  const frh = (family: number, srcLen: number, table: number, action: number) =>
    Buffer.from([family, 0, srcLen, 0, table, 0, 0, action, 0, 0, 0, 0]);
  const defaults = [attr(15, u32(254)), attr(14, u32(0xffffffff)), attr(21, Buffer.from([2])), attr(6, u32(32766))];

  test('a default rule selects nothing', () => {
    expect(decodeRule(Buffer.concat([frh(2, 0, 254, 1), ...defaults]))).toEqual({
      family: 4,
      priority: 32766,
      table: 254,
      selective: false,
    });
  });

  test('a source prefix, a mark, a suppress_prefixlen or another action is policy routing', () => {
    expect(decodeRule(Buffer.concat([frh(2, 8, 254, 1), ...defaults]))?.selective).toBe(true);
    expect(decodeRule(Buffer.concat([frh(2, 0, 254, 1), ...defaults, attr(10, u32(1))]))?.selective).toBe(true);
    expect(decodeRule(Buffer.concat([frh(2, 0, 254, 1), attr(15, u32(254)), attr(14, u32(0))]))?.selective).toBe(true);
    expect(decodeRule(Buffer.concat([frh(2, 0, 0, 7), ...defaults]))?.selective).toBe(true);
  });
});

describe('addresses', () => {
  test('an add is nodad (header and IFA_FLAGS) with preferred lifetime 0 and valid forever', () => {
    const p = addressAddPayload(6, 'fdaa::77', 128, 1);
    expect(hex(p.subarray(0, 8))).toBe('0a80020001000000');
    expect(hex(p.subarray(8))).toContain('14000600' + '00000000' + 'ffffffff' + '00000000' + '00000000');
    expect(hex(p.subarray(8))).toContain('0800080002000000');
  });

  test('a dumped address: IFA_LOCAL over IFA_ADDRESS, and its preferred lifetime', () => {
    const cache = Buffer.alloc(16);
    cache.writeUInt32LE(0, 0);
    cache.writeUInt32LE(0xffffffff, 4);
    const p = Buffer.concat([
      Buffer.from([10, 128, 0x22, 0, 1, 0, 0, 0]),
      attr(1, ip6('fdaa0000000000000000000000000077')),
      attr(6, cache),
    ]);
    expect(decodeAddress(p)).toEqual({ family: 6, index: 1, prefixlen: 128, address: 'fdaa::77', preferred: 0 });
  });
});
