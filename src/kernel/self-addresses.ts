// The guest's own previous IPv6 addresses, made bindable: each is added to
// the loopback device as a /128 that is deprecated from the start
// (preferred_lft 0), so applications can bind to it but the kernel never
// picks it as the source of a new connection, and nodad, so it is usable at
// once. Which addresses are addrmap's is written down (own-addresses.json in
// the state directory) before they are added: an address that was there
// before addrmap stays when its entry goes, and one added just before a
// crash is still known, and removed, after it.
import { APPLIED_FILE, readState, writeState, type AppliedState } from '../state/state-file.js';
import * as rtnl from './netlink/rtnetlink.js';
import { RTM, addressAddPayload, addressDelPayload } from './netlink/rtnetlink-codec.js';

const OWN_ADDRESSES_FILE = 'own-addresses.json';

export interface SelfAddresses {
  /** Makes each address present, recording those addrmap adds; returns one message per failure. */
  add(addresses: string[]): Promise<string[]>;
  /** Removes every address addrmap added that is not in keep; returns one message per failure. */
  release(keep: string[]): Promise<string[]>;
}

interface OwnAddresses {
  schema: 1;
  /** Addresses addrmap added to lo (possibly not there any more). */
  addresses: string[];
}

/** Over rtnetlink, in-process; where the FFI cannot load, every call fails saying so. */
export class NetlinkSelfAddresses implements SelfAddresses {
  /** Adoption reads applied.json (megabytes at 100k mappings): once per process. */
  private adoptionTried = false;

  constructor(private readonly stateDir: string) {}

  async add(addresses: string[]): Promise<string[]> {
    if (!addresses.length) return [];
    const present = await this.present();
    const missing = addresses.filter((a) => !present.has(a));
    if (!missing.length) return [];
    const own = await this.own();
    // Recorded first: a crash between the two still leaves them known.
    await this.save(new Set([...own, ...missing]));
    return this.batch('add', missing);
  }

  async release(keep: string[]): Promise<string[]> {
    const own = await this.own();
    const keepSet = new Set(keep);
    const drop = [...own].filter((a) => !keepSet.has(a));
    if (!drop.length) return [];
    const present = await this.present();
    const errors = await this.batch(
      'del',
      drop.filter((a) => present.has(a)),
    );
    if (!errors.length) await this.save(new Set([...own].filter((a) => keepSet.has(a))));
    return errors;
  }

  private async present(): Promise<Set<string>> {
    return new Set((await this.details()).map((a) => a.local));
  }

  private async own(): Promise<Set<string>> {
    const doc = await readState<OwnAddresses>(this.stateDir, OWN_ADDRESSES_FILE);
    if (doc) return new Set(Array.isArray(doc.addresses) ? doc.addresses.filter((a) => typeof a === 'string') : []);
    if (this.adoptionTried) return new Set();
    this.adoptionTried = true;
    return this.adoptUnrecorded();
  }

  /**
   * No record yet: the first start of a release that keeps one, maybe over
   * addresses an earlier release added without recording them (an upgrade
   * without a reboot). Those are recognised as addrmap's by both marks it
   * left: listed in the applied file's `self` entries, and on lo exactly as
   * addrmap adds them (a /128, deprecated from the start). Anything else on
   * lo is someone else's.
   */
  private async adoptUnrecorded(): Promise<Set<string>> {
    const applied = await readState<AppliedState>(this.stateDir, APPLIED_FILE).catch(() => null);
    const listed = new Set(
      (Array.isArray(applied?.self) ? applied.self : []).map((e) => e?.from).filter((a): a is string => typeof a === 'string'),
    );
    const adopted = new Set<string>();
    if (listed.size) {
      for (const a of await this.details())
        if (listed.has(a.local) && a.prefixlen === 128 && a.preferred_life_time === 0) adopted.add(a.local);
    }
    // From now on the record decides.
    if (adopted.size) await this.save(adopted).catch(() => {}); // unsaved, the next start adopts them again the same way
    return adopted;
  }

  private async details(): Promise<{ local: string; prefixlen?: number; preferred_life_time?: number }[]> {
    const [lo, all] = await Promise.all([loIndex(), rtnl.addresses(6)]);
    return all.filter((a) => a.index === lo).map((a) => ({ local: a.address, prefixlen: a.prefixlen, preferred_life_time: a.preferred }));
  }

  private save(own: Set<string>): Promise<void> {
    return writeState(this.stateDir, OWN_ADDRESSES_FILE, { schema: 1, addresses: [...own].sort() } satisfies OwnAddresses);
  }

  private async batch(verb: 'add' | 'del', addresses: string[]): Promise<string[]> {
    if (!addresses.length) return [];
    const lo = await loIndex();
    const errnos = await rtnl.change(
      addresses.map((a) =>
        verb === 'add'
          ? { type: RTM.NEWADDR, flags: rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL, payload: addressAddPayload(6, a, 128, lo) }
          : { type: RTM.DELADDR, flags: 0, payload: addressDelPayload(6, a, 128, lo) },
      ),
    );
    return addresses.flatMap((a, i) =>
      errnos[i] ? [`RTNETLINK answers: ${rtnl.errnoText(errnos[i])} (addr ${verb} ${a}/128 dev lo)`] : [],
    );
  }
}

async function loIndex(): Promise<number> {
  const index = (await rtnl.links()).index('lo');
  if (index === undefined) throw new Error('no loopback device (lo) in this network namespace');
  return index;
}
