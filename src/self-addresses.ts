// The guest's own previous IPv6 addresses, made bindable: each is added to
// the loopback device as a /128 that is deprecated from the start
// (preferred_lft 0), so applications can bind to it but the kernel never
// picks it as the source of a new connection, and nodad, so it is usable at
// once. Which addresses are addrmap's is known from its table (self_out6),
// so nothing else on the loopback device is ever touched.
import { execFile } from './exec.js';

export interface SelfAddresses {
  /** IPv6 addresses present on the loopback device. */
  present(): Promise<Set<string>>;
  add(addresses: string[]): Promise<string[]>;
  remove(addresses: string[]): Promise<string[]>;
}

export class IpSelfAddresses implements SelfAddresses {
  constructor(private readonly binary = 'ip') {}

  async present(): Promise<Set<string>> {
    const res = await execFile(this.binary, ['-j', '-6', 'addr', 'show', 'dev', 'lo']);
    if (res.code !== 0) throw new Error(`ip addr show failed: ${res.stderr.trim()}`);
    const links = JSON.parse(res.stdout || '[]') as { addr_info?: { local?: string }[] }[];
    return new Set(links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? '')).filter(Boolean));
  }

  add(addresses: string[]): Promise<string[]> {
    return this.batch(addresses.map((a) => `addr replace ${a}/128 dev lo nodad preferred_lft 0`));
  }

  remove(addresses: string[]): Promise<string[]> {
    return this.batch(addresses.map((a) => `addr del ${a}/128 dev lo`));
  }

  private async batch(lines: string[]): Promise<string[]> {
    if (!lines.length) return [];
    const res = await execFile(this.binary, ['-6', '-force', '-batch', '-'], { input: lines.join('\n') + '\n' });
    return res.code === 0 ? [] : res.stderr.trim().split('\n').filter(Boolean);
  }
}
