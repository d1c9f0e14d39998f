import { describe, expect, test } from 'vitest';
import { RouteTable, sameVia } from '../../src/route-table.js';

describe('RouteTable: the kernel answer for a main table under the default rules', () => {
  const t = new RouteTable([
    { family: 6, dst: 'default', dev: 'eth0', gateway: 'fe80::1' },
    { family: 6, dst: 'fdaa::/16', dev: 'eth1', gateway: 'fe80::2' },
    { family: 6, dst: 'fdaa:0:18::/48', dev: 'eth1', gateway: 'fe80::3', metric: 200 },
    { family: 6, dst: 'fdaa:0:18::/48', dev: 'eth1', gateway: 'fe80::4', metric: 100 },
    { family: 6, dst: 'fdaa:0:18:a7b::1', dev: 'eth2' },
    { family: 6, dst: 'fdbb::/16', type: 'unreachable' },
    { family: 4, dst: '198.51.100.0/24', dev: 'eth0' },
    { family: 4, dst: '198.51.100.128/25', dev: 'eth1', gateway: '192.0.2.1' },
  ]);

  test('longest prefix wins; among equal prefixes the lowest metric', () => {
    expect(t.lookup(6, 'fdaa:0:18:a7b::1')).toEqual({ dev: 'eth2' });
    expect(t.lookup(6, 'fdaa:0:18:a7b::2')).toEqual({ dev: 'eth1', gateway: 'fe80::4' });
    expect(t.lookup(6, 'fdaa:1::1')).toEqual({ dev: 'eth1', gateway: 'fe80::2' });
    expect(t.lookup(6, 'fdcc::1')).toEqual({ dev: 'eth0', gateway: 'fe80::1' });
    expect(t.lookup(4, '198.51.100.200')).toEqual({ dev: 'eth1', gateway: '192.0.2.1' });
    expect(t.lookup(4, '198.51.100.20')).toEqual({ dev: 'eth0' });
  });

  test('no route, or an unreachable one, is null', () => {
    expect(t.lookup(6, 'fdbb::1')).toBeNull();
    expect(t.lookup(4, '203.0.113.1')).toBeNull();
    expect(new RouteTable([]).lookup(6, 'fdaa::1')).toBeNull();
  });

  test('sameVia compares device and gateway; null is never the same', () => {
    expect(sameVia({ dev: 'eth0' }, { dev: 'eth0' })).toBe(true);
    expect(sameVia({ dev: 'eth0', gateway: 'fe80::1' }, { dev: 'eth0' })).toBe(false);
    expect(sameVia(null, { dev: 'eth0' })).toBe(false);
  });
});
