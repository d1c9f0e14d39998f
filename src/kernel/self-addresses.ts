// The guest's own previous IPv6 addresses, made bindable: each is added to
// the loopback device as a /128 that is deprecated from the start
// (preferred_lft 0), so applications can bind to it but the kernel never
// picks it as the source of a new connection, and nodad, so it is usable at
// once. Which addresses are addrmap's is written down (own-addresses.json in
// the state directory) before they are added: an address that was there
// before addrmap stays when its entry goes, and one added just before a
// crash is still known, and removed, after it.
import { execFile } from './exec.js';
import { APPLIED_FILE, readState, writeState, type AppliedState } from '../state/state-file.js';

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

export class IpSelfAddresses implements SelfAddresses {
  /** Adoption reads applied.json (megabytes at 100k mappings): once per process. */
  private adoptionTried = false;

  constructor(
    private readonly stateDir: string,
    private readonly binary = 'ip',
  ) {}

  async add(addresses: string[]): Promise<string[]> {
    if (!addresses.length) return [];
    const present = await this.present();
    const missing = addresses.filter((a) => !present.has(a));
    if (!missing.length) return [];
    const own = await this.own();
    // Recorded first: a crash between the two still leaves them known.
    await this.save(new Set([...own, ...missing]));
    return this.batch(missing.map((a) => `addr add ${a}/128 dev lo nodad preferred_lft 0`));
  }

  async release(keep: string[]): Promise<string[]> {
    const own = await this.own();
    const keepSet = new Set(keep);
    const drop = [...own].filter((a) => !keepSet.has(a));
    if (!drop.length) return [];
    const present = await this.present();
    const errors = await this.batch(drop.filter((a) => present.has(a)).map((a) => `addr del ${a}/128 dev lo`));
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
    const res = await execFile(this.binary, ['-j', '-6', 'addr', 'show', 'dev', 'lo']);
    if (res.code !== 0) throw new Error(`ip addr show failed: ${res.stderr.trim()}`);
    const links = JSON.parse(res.stdout || '[]') as {
      addr_info?: { local?: string; prefixlen?: number; preferred_life_time?: number }[];
    }[];
    return links.flatMap((l) => l.addr_info ?? []).filter((a): a is { local: string } => typeof a.local === 'string');
  }

  private save(own: Set<string>): Promise<void> {
    return writeState(this.stateDir, OWN_ADDRESSES_FILE, { schema: 1, addresses: [...own].sort() } satisfies OwnAddresses);
  }

  private async batch(lines: string[]): Promise<string[]> {
    if (!lines.length) return [];
    const res = await execFile(this.binary, ['-6', '-force', '-batch', '-'], { input: lines.join('\n') + '\n' });
    return res.code === 0 ? [] : res.stderr.trim().split('\n').filter(Boolean);
  }
}
