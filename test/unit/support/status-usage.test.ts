import { describe, expect, test } from 'vitest';
import type { HistoryState } from '../../../src/agent/usage-history.js';
import type { Flow } from '../../../src/support/flows.js';
import { insidePrefixes, usedByOf } from '../../../src/support/status-usage.js';

const history: HistoryState = {
  schema: 1,
  updatedAt: '2026-01-01T00:10:00.000Z',
  addresses: {
    'fdaa:0:30::7': [{ command: 'app', unit: 'app.service', firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:10:00.000Z' }],
    'fdaa:0:18::2': [{ command: 'psql', firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:05:00.000Z' }],
  },
};
const resolved = [
  { from: 'fdaa:0:18::2', to: 'fdaa:0:19::2' },
  { from: 'fdaa:0:30::/64', to: 'fdaa:0:31::/64' },
];
const flowTo = (dst: string): Flow => ({ proto: 'udp', src: 'fd00:1::1', dst, answeredBy: dst, translated: true });

describe('status usage', () => {
  test('a mapping is used by what the history says, most recent first, without first-seen', () => {
    expect(usedByOf(history, 'fdaa:0:18::2')).toEqual([{ command: 'psql', lastSeen: '2026-01-01T00:05:00.000Z' }]);
    expect(usedByOf(null, 'fdaa:0:18::2')).toEqual([]);
  });

  test('a prefix mapping gets a row per address used inside it: history or flows now, its own target', () => {
    const inside = insidePrefixes(resolved, history, [flowTo('fdaa:0:30::8'), flowTo('fdaa:0:30::8'), flowTo('fdaa:0:18::2')]);
    expect(inside.get('fdaa:0:30::/64')).toEqual([
      {
        address: 'fdaa:0:30::7',
        to: 'fdaa:0:31::7',
        hits: null,
        flows: 0,
        lastSeen: '2026-01-01T00:10:00.000Z',
        usedBy: [{ command: 'app', unit: 'app.service', lastSeen: '2026-01-01T00:10:00.000Z' }],
      },
      { address: 'fdaa:0:30::8', to: 'fdaa:0:31::8', hits: null, flows: 2, lastSeen: null, usedBy: [] },
    ]);
    expect(insidePrefixes(resolved, history, null).get('fdaa:0:30::/64')![0]!.flows).toBeNull();
  });

  test("each address inside gets the hits the agent counted for it; its last seen is the later of its hits' and its programs'", () => {
    const withHits: HistoryState = {
      ...history,
      hits: {
        'fdaa:0:30::7': { flows: 3, firstSeen: '2026-01-01T00:00:00.000Z', lastSeen: '2026-01-01T00:20:00.000Z' },
        'fdaa:0:30::9': { flows: 1, firstSeen: '2026-01-01T00:01:00.000Z', lastSeen: '2026-01-01T00:01:00.000Z' },
      },
    };
    const rows = insidePrefixes(resolved, withHits, null).get('fdaa:0:30::/64')!;
    expect(rows.map((r) => [r.address, r.hits, r.lastSeen])).toEqual([
      ['fdaa:0:30::7', 3, '2026-01-01T00:20:00.000Z'],
      // Seen by its flows only (no program named): a row all the same.
      ['fdaa:0:30::9', 1, '2026-01-01T00:01:00.000Z'],
    ]);
    // With hits kept, an address used now but not yet sampled has none yet, not "unknown".
    expect(
      insidePrefixes(resolved, withHits, [flowTo('fdaa:0:30::8')])
        .get('fdaa:0:30::/64')!
        .find((r) => r.address === 'fdaa:0:30::8')!.hits,
    ).toBe(0);
  });
});
