// addrmap's one table, and what the rules built for it share: the fixed
// rules (ruleset.ts) and the prefix rules (prefix-rules.ts) both build on
// this without depending on each other.
import type { Table } from './nft/index.js';

export const TABLE: Table = { family: 'inet', name: 'addrmap' };

/** The table a chain or rule belongs to, as nft's JSON names it. */
export const ref = { family: TABLE.family, table: TABLE.name };

/** A later packet of a flow the NAT chains translated: what the count rules count. */
export const TRANSLATED_FLOW = [
  // Cheapest test first: most packets are not DNATed and stop here.
  { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } },
  { match: { op: '==', left: { ct: { key: 'direction' } }, right: 'original' } },
  { match: { op: 'in', left: { ct: { key: 'state' } }, right: 'established' } },
];
