// The ctnetlink ConntrackTable inside a lab namespace (run by
// test/support/netns-worker.ts), observed as conntrack-observe.ts says, for
// the contract test.
import { conntrackTable } from '../../../src/kernel/netlink/ctnetlink.js';
import { observe } from './conntrack-observe.js';

export const { list, sweep, clean } = observe(conntrackTable());
