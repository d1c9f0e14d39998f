// The netlink Routes inside a lab namespace (run by test/support/netns-worker.ts),
// observed as routes-observe.ts says, for the contract test.
import { NetlinkRoutes } from '../../../src/kernel/routes.js';
import { observe } from './routes-observe.js';

const o = observe(new NetlinkRoutes());
export const { list, lookup, snapshot, apply } = o;
