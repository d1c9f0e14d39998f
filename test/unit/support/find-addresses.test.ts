import { describe, expect, test } from 'vitest';
import { findAddresses } from '../../../src/support/find-addresses.js';

const V6 = 'fdaa:0:18::2';
const V6_TO = 'fdaa:0:19::2';
const V4 = '198.51.100.10';
const V4_TO = '198.51.100.20';
const stale: ReadonlyMap<string, string> = new Map([
  [V6, V6_TO],
  [V4, V4_TO],
]);

/** [line, text as written, canonical address, 0-based start]. */
const positives: [string, string, string, number][] = [
  ['fdaa:0:18::2', 'fdaa:0:18::2', V6, 0],
  ['host fdaa:0000:0018:0000:0000:0000:0000:0002 end', 'fdaa:0000:0018:0000:0000:0000:0000:0002', V6, 5],
  ['x FDAA:0:18:0:0:0:0:2', 'FDAA:0:18:0:0:0:0:2', V6, 2],
  ['mixed FdAa:0:018::0002', 'FdAa:0:018::0002', V6, 6],
  ['host = "[FDAA:0:18::2]:5432"', '[FDAA:0:18::2]:5432', V6, 8],
  ['[fdaa:0:18::2]', '[fdaa:0:18::2]', V6, 0],
  ['url: postgres://[fdaa:0:18::2]:5432/db', '[fdaa:0:18::2]:5432', V6, 16],
  ['url: http://user@[fdaa:0:18::2]/path', '[fdaa:0:18::2]', V6, 17],
  ['ping fdaa:0:18::2%eth0', 'fdaa:0:18::2%eth0', V6, 5],
  ['http://[fdaa:0:18::2%25eth0]:80/', '[fdaa:0:18::2%25eth0]:80', V6, 7],
  ["peer='fdaa:0:18::2'", 'fdaa:0:18::2', V6, 6],
  ['a,fdaa:0:18::2,b', 'fdaa:0:18::2', V6, 2],
  ['ADDR=fdaa:0:18::2;', 'fdaa:0:18::2', V6, 5],
  ['listen fdaa:0:18::2/64', 'fdaa:0:18::2', V6, 7],
  ['key:fdaa:0:18::2', 'fdaa:0:18::2', V6, 4],
  ['see fdaa:0:18::2.', 'fdaa:0:18::2', V6, 4],
  ['embedded fdaa:0:18::0.0.0.2', 'fdaa:0:18::0.0.0.2', V6, 9],
  ['expanded with port fdaa:0:18:0:0:0:0:2:5432', 'fdaa:0:18:0:0:0:0:2:5432', V6, 19],
  ['198.51.100.10', '198.51.100.10', V4, 0],
  ['db = 198.51.100.10:5432', '198.51.100.10:5432', V4, 5],
  ['"198.51.100.10",', '198.51.100.10', V4, 1],
  ['server=198.51.100.10', '198.51.100.10', V4, 7],
  ['jdbc:postgresql://198.51.100.10:5432/db', '198.51.100.10:5432', V4, 18],
  ['udp:198.51.100.10:53', '198.51.100.10:53', V4, 4],
  ['reach it at 198.51.100.10.', '198.51.100.10', V4, 12],
  ['range 198.51.100.9-198.51.100.10', '198.51.100.10', V4, 19],
  ['cidr 198.51.100.10/32', '198.51.100.10', V4, 5],
  ['yaml: 198.51.100.10:', '198.51.100.10', V4, 6],
];

describe('findAddresses: every textual form', () => {
  test.each(positives)('%s', (line, text, address, start) => {
    const found = findAddresses(line).filter((f) => f.address === address);
    expect(found).toEqual([{ start, text, address }]);
    expect(line.slice(start, start + text.length)).toBe(text);
  });

  test('several on one line, both families, in order', () => {
    const line = `a=198.51.100.10 b=[fdaa:0:18::2]:1 c=FDAA:0:18::2,198.51.100.10:80`;
    expect(findAddresses(line)).toEqual([
      { start: 2, text: '198.51.100.10', address: V4 },
      { start: 18, text: '[fdaa:0:18::2]:1', address: V6 },
      { start: 37, text: 'FDAA:0:18::2', address: V6 },
      { start: 50, text: '198.51.100.10:80', address: V4 },
    ]);
  });

  test('unbracketed "addr:port" is ambiguous and read as one address', () => {
    // fdaa:0:18::2:5432 is itself a valid address; it is not fdaa:0:18::2 port 5432.
    expect(findAddresses('fdaa:0:18::2:5432')).toEqual([{ start: 0, text: 'fdaa:0:18::2:5432', address: 'fdaa:0:18::2:5432' }]);
  });

  test('IPv4-mapped IPv6 is read as the IPv4 address it puts on the wire; the embedded quad is not reported a second time', () => {
    expect(findAddresses('::ffff:198.51.100.10')).toEqual([{ start: 0, text: '::ffff:198.51.100.10', address: '198.51.100.10' }]);
    expect(findAddresses('[::FFFF:c633:640A]:5432')).toEqual([{ start: 0, text: '[::FFFF:c633:640A]:5432', address: '198.51.100.10' }]);
    // Not mapped: the IPv4-compatible form and other ::ffff: lookalikes stay IPv6.
    expect(findAddresses('::c633:640a')[0]!.address).toBe('::c633:640a');
    expect(findAddresses('::ffff:0:c633:640a')[0]!.address).toBe('::ffff:0:c633:640a');
  });
});

describe('findAddresses: what is not an address', () => {
  test.each([
    ['MAC address', 'ether aa:bb:cc:dd:ee:ff brd ff:ff:ff:ff:ff:ff'],
    ['MAC address, upper case', 'hwaddr=FD:AA:00:18:00:02'],
    ['MAC address, dashes', 'aa-bb-cc-dd-ee-ff'],
    ['Cisco MAC', 'fdaa.0018.0002'],
    ['hex words', 'dead:beef cafe:babe'],
    ['version string', 'version 1.2.3.4.5 and 198.51.100.10.1'],
    ['version with v', 'v198.51.100.10'],
    ['quad in hex literal', '0x198.51.100.10'],
    ['quad as part of a word', 'ab_198.51.100.10 198.51.100.10_x 198.51.100.10é'],
    ['reverse DNS name', '10.100.51.198.in-addr.arpa'],
    ['octet out of range', '198.51.100.256 198.51.256.10'],
    ['leading zeros in IPv4', '198.051.100.010'],
    ['three octets', '198.51.100'],
    ['time of day', '12:30:45.123'],
    ['C++ and Haskell', 'std::vector<int> x; f :: Int -> Int'],
    ['too many groups', 'fdaa:0:18:0:0:0:0:0:2:1'],
    ['group too long', 'fdaa0:0:18::2'],
    ['IPv6 inside a longer word', 'xfdaa:0:18::2g'],
    ['triple colon', 'fdaa:::2'],
  ])('%s', (_name, line) => {
    const found = findAddresses(line);
    expect(found.filter((f) => stale.has(f.address))).toEqual([]);
  });

  test('MAC addresses yield no candidate at all, so no key can be hit by them', () => {
    for (const mac of ['aa:bb:cc:dd:ee:ff', '00:1A:2b:3C:4d:5E', 'fd:aa:00:18:00:02', 'ff:ff:ff:ff:ff:ff']) {
      expect(findAddresses(`link/ether ${mac} brd ff:ff:ff:ff:ff:ff`)).toEqual([]);
      expect(findAddresses(mac)).toEqual([]);
    }
  });

  test('longer numbers are different addresses, never substrings', () => {
    expect(findAddresses('198.51.100.101 1198.51.100.10 98.51.100.10').map((f) => f.address)).toEqual(['198.51.100.101', '98.51.100.10']);
    expect(findAddresses('fdaa:0:18::22 1fdaa:0:18::2').map((f) => f.address)).toEqual(['fdaa:0:18::22']);
    expect(findAddresses('0:fdaa:0:18::2').map((f) => f.address)).toEqual(['0:fdaa:0:18::2']);
  });

  test('lines without candidates', () => {
    expect(findAddresses('')).toEqual([]);
    expect(findAddresses('no addresses here: just words. And :: and ...')).toEqual([]);
    expect(findAddresses('a'.repeat(100_000))).toEqual([]);
  });
});
