import { describe, expect, test } from 'vitest';
import { AddressError, parseAddress } from '../../../src/net/address.js';
import { Prefix, movePair, prefixMovesOf } from '../../../src/net/prefix.js';

describe('Prefix.parse / Prefix#contains', () => {
  test('IPv6 and IPv4 prefixes', () => {
    expect(Prefix.parse('fc00::/7')).toMatchObject({ family: 6, text: 'fc00::/7', length: 7 });
    expect(Prefix.parse('198.51.100.0/24')).toMatchObject({ family: 4, text: '198.51.100.0/24', length: 24 });
  });

  test('containment at the edges of the range', () => {
    const ula = Prefix.parse('fc00::/7');
    expect(ula.contains(parseAddress('fc00::1'))).toBe(true);
    expect(ula.contains(parseAddress('fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))).toBe(true);
    expect(ula.contains(parseAddress('fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'))).toBe(false);
    expect(ula.contains(parseAddress('fe00::1'))).toBe(false);
    const net = Prefix.parse('198.51.100.0/24');
    expect(net.contains(parseAddress('198.51.100.255'))).toBe(true);
    expect(net.contains(parseAddress('198.51.101.0'))).toBe(false);
  });

  test('a prefix never contains an address of the other family', () => {
    expect(Prefix.parse('0.0.0.0/0').contains(parseAddress('fd00::1'))).toBe(false);
    expect(Prefix.parse('::/0').contains(parseAddress('10.0.0.1'))).toBe(false);
  });

  test('/0 contains everything of its family, a host prefix only its address', () => {
    expect(Prefix.parse('::/0').contains(parseAddress('2001:db8::1'))).toBe(true);
    expect(Prefix.parse('0.0.0.0/0').contains(parseAddress('203.0.113.9'))).toBe(true);
    expect(Prefix.parse('fd00::1/128').contains(parseAddress('fd00::1'))).toBe(true);
    expect(Prefix.parse('fd00::1/128').contains(parseAddress('fd00::2'))).toBe(false);
    expect(Prefix.parse('10.0.0.1/32').contains(parseAddress('10.0.0.1'))).toBe(true);
  });

  test.each([
    ['fc00::', /^not a prefix \(address\/length\)$/],
    ['fc00::/', /^not a prefix \(address\/length\)$/],
    ['fc00:: /7', /^not a prefix \(address\/length\)$/],
    ['fc00::/7/8', /^not a prefix \(address\/length\)$/],
    ['10.0.0.0/8 ', /^not a prefix \(address\/length\)$/],
    ['fc00::1/7', /host bits are set/],
    ['10.0.0.1/8', /host bits are set/],
    ['fc00::/200', /^prefix length 200 is over 128$/],
    ['10.0.0.0/33', /^prefix length 33 is over 32$/],
    ['fe80::%eth0/64', /not a valid IPv6 prefix/],
  ])('%j is refused', (input, message) => {
    expect(() => Prefix.parse(input)).toThrow(AddressError);
    expect(() => Prefix.parse(input)).toThrow(message);
  });

  // Refusals never quote the text they refuse (a mapping or config file may be
  // a hard-linked secret, and refusals are shown in world-readable status).
  test.each([
    'fc00::',
    'fc00::/',
    'fc00:: /7',
    'fc00::/7/8',
    '10.0.0.0/8 ',
    'fc00::1/7',
    '10.0.0.1/8',
    'fc00::/200',
    '10.0.0.0/33',
    'fe80::%eth0/64',
    'zqsecret::/7',
    '10.1.2.zq/8',
  ])('the refusal of %j does not quote it', (input) => {
    let message: string | undefined;
    try {
      Prefix.parse(input);
    } catch (e) {
      expect(e).toBeInstanceOf(AddressError);
      message = (e as Error).message;
    }
    expect(message).toBeDefined();
    expect(message).not.toContain(input);
    expect(message).not.toContain(input.trim());
    if (input.includes('zq')) expect(message).not.toMatch(/zq/);
  });

  test.each([' fc00::1', 'zqsecret', 'zqsec::1', 'fe80::1%zqzone', '10.0.0.zq', '010.0.0.1', '::1', 'zq'.repeat(40)])(
    'parseAddress: the refusal of %j does not quote it',
    (input) => {
      let message: string | undefined;
      try {
        parseAddress(input);
      } catch (e) {
        expect(e).toBeInstanceOf(AddressError);
        message = (e as Error).message;
      }
      expect(message).toBeDefined();
      expect(message).not.toContain(input.trim());
      expect(message).not.toMatch(/zq/);
    },
  );
});

describe('prefixMovesOf', () => {
  test('reads the "net/len" pairs and leaves single addresses and non-prefixes out', () => {
    const moves = prefixMovesOf([
      ['fdaa::/64', 'fdbb::/64'],
      ['fdaa::1', 'fdcc::1'],
      ['not/a prefix', 'fdbb::/64'],
      ['fdaa:1::/64', '10.0.0.0/8'],
    ]);
    expect(moves.size).toBe(1);
    expect(moves.lookup(6, 'fdaa::7')).toMatchObject({ to: 'fdbb::7' });
  });

  test('movePair spells both ends as keys', () => {
    expect(movePair({ from: 'fdaa::', to: 'fdbb::', length: 64 })).toEqual(['fdaa::/64', 'fdbb::/64']);
  });
});
