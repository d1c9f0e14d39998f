// Rule statements: checked, and turned into what nft lists back, for the
// vocabulary addrmap uses; and the checks the kernel makes of a table at commit.
import type { Chain, KeyType, Rule } from '../../src/kernel/nft/types.js';
import { canonical, fromBytes, toBytes } from './nft-addresses.js';
import { EOPNOTSUPP, ENOENT, fail } from './nft-errors.js';
import type { FakeTable } from './nft-tables.js';

/** What a match's left-hand side yields, which decides what its right-hand side may be. */
type ExprType = KeyType | 'ct_status' | 'ct_state' | 'ct_dir' | 'proto' | 'ifname' | 'integer';

const SYMBOLS: Partial<Record<ExprType, string[]>> = {
  ct_status: ['expected', 'seen-reply', 'assured', 'confirmed', 'snat', 'dnat', 'dying'],
  ct_state: ['invalid', 'established', 'related', 'new', 'untracked'],
  ct_dir: ['original', 'reply'],
  proto: ['tcp', 'udp', 'icmp', 'ipv6-icmp', 'icmpv6', 'sctp', 'udplite'],
};

/** Hooks where a statement works, reached from a base chain; nat statements need a nat chain. */
const HOOKS: Record<string, { hooks: string[]; nat: boolean }> = {
  dnat: { hooks: ['prerouting', 'output'], nat: true },
  snat: { hooks: ['postrouting', 'input'], nat: true },
  socket: { hooks: ['prerouting', 'input', 'output'], nat: false },
};

/** The kernel's jump stack (NFT_JUMP_STACK_SIZE). */
const MAX_DEPTH = 16;

/** The only key of a one-key object, with its value. */
function only(v: unknown): [string, unknown] | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const entries = Object.entries(v);
  return entries.length === 1 ? entries[0]! : null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A rule's statements as nft lists them back; throws what nft, then the kernel, would refuse in them. */
export function checkRule(t: FakeTable, statements: unknown, what: string): unknown[] {
  const invalid = (why: string): never => fail(what, 'invalid', why, 'nft');
  const expr: unknown[] = Array.isArray(statements) ? statements : invalid('a rule is an array of statements');

  const typeOf = (e: unknown): ExprType => {
    const [k, v] = only(e) ?? invalid(`unknown expression ${JSON.stringify(e)}`);
    if (!isObject(v)) return invalid(`unknown expression ${JSON.stringify(e)}`);
    if (k === 'payload') {
      if ((v.protocol === 'ip' || v.protocol === 'ip6') && (v.field === 'saddr' || v.field === 'daddr'))
        return v.protocol === 'ip' ? 'ipv4_addr' : 'ipv6_addr';
      if ((v.protocol === 'tcp' || v.protocol === 'udp') && (v.field === 'sport' || v.field === 'dport')) return 'integer';
    } else if (k === 'ct') {
      if (v.key === 'status') return 'ct_status';
      if (v.key === 'state') return 'ct_state';
      if (v.key === 'direction') return 'ct_dir';
      const addr = /^(ip6?) (saddr|daddr)$/.exec(String(v.key));
      if (addr && (v.dir === 'original' || v.dir === 'reply')) return addr[1] === 'ip' ? 'ipv4_addr' : 'ipv6_addr';
    } else if (k === 'meta') {
      if (v.key === 'l4proto') return 'proto';
      if (v.key === 'iifname' || v.key === 'oifname') return 'ifname';
    } else if (k === 'socket' && v.key === 'transparent') return 'integer';
    return invalid(`unknown expression ${JSON.stringify(e)}`);
  };

  const lookup = (name: string, type: ExprType, asMap: boolean): string => {
    const m = t.maps.get(name.slice(1)) ?? fail(what, 'not-found', ENOENT, 'nft');
    if (asMap && m.map === undefined) invalid(`${name} is not a map`);
    if (m.type !== type) invalid(`datatype mismatch, expected ${type}, expression has type ${m.type}`);
    return name;
  };

  const address = (type: KeyType, v: unknown): string =>
    canonical(type, v) ?? invalid(`Could not resolve hostname: ${JSON.stringify(v)} is not ${type}`);

  const right = (type: ExprType, v: unknown, inSet = false): unknown => {
    if (typeof v === 'string' && v.startsWith('@') && !inSet) {
      // A named set, or a map used as one (kernels from 6.12 take that).
      return lookup(v, type, false);
    }
    if (isObject(v) && 'set' in v && !inSet) {
      if (!Array.isArray(v.set) || v.set.length === 0) invalid('an anonymous set lists its elements');
      return { set: (v.set as unknown[]).map((x) => right(type, x, true)) };
    }
    if (type === 'ipv4_addr' || type === 'ipv6_addr') {
      if (isObject(v) && 'prefix' in v) {
        const p = v.prefix as { addr?: unknown; len?: unknown };
        const bits = type === 'ipv4_addr' ? 32 : 128;
        const len = typeof p.len === 'number' && Number.isInteger(p.len) && p.len >= 0 && p.len <= bits ? p.len : -1;
        if (len < 0) invalid(`Prefix length ${String(p.len)} is invalid for type of ${bits} bits width`);
        const bytes = toBytes(type, p.addr) ?? invalid(`Could not resolve hostname: ${JSON.stringify(p.addr)} is not ${type}`);
        // nft sends the network (host bits cleared) and lists a full-length prefix as the address.
        const net = bytes.map((b, i) => (i * 8 >= len ? 0 : i * 8 + 8 <= len ? b : b & (0xff << (8 - (len - i * 8)))));
        return len === bits ? fromBytes(net) : { prefix: { addr: fromBytes(net), len } };
      }
      return address(type, v);
    }
    const symbols = SYMBOLS[type];
    if (typeof v === 'string' && symbols?.includes(v)) return v;
    if (type === 'ifname' && typeof v === 'string' && v.length > 0 && v.length < 16) return v;
    if (
      (type === 'proto' || type === 'integer') &&
      typeof v === 'number' &&
      Number.isInteger(v) &&
      v >= 0 &&
      (type === 'integer' || v < 256)
    )
      return v;
    return invalid(`${JSON.stringify(v)} is not a valid ${type}`);
  };

  /** A nat statement's address: literal, looked up in a map, or the bitwise expression prefix rules use. */
  const natAddr = (type: KeyType, v: unknown): unknown => {
    if (typeof v === 'string') return address(type, v);
    const [k, inner] = only(v) ?? invalid(`unknown nat address ${JSON.stringify(v)}`);
    if (k === 'map' && isObject(inner) && typeof inner.data === 'string' && inner.data.startsWith('@')) {
      const m = t.maps.get(inner.data.slice(1)) ?? fail(what, 'not-found', ENOENT, 'nft');
      if (m.map === undefined) invalid(`${inner.data} is not a map`);
      const keyType = typeOf(inner.key);
      if (keyType !== m.type) invalid(`datatype mismatch, map expects ${m.type}, mapping expression has type ${keyType}`);
      if (m.map !== type) invalid(`datatype mismatch, expected ${type}, map has type ${m.map}`);
      return { map: { key: structuredClone(inner.key), data: inner.data } };
    }
    if ((k === '|' || k === '&') && Array.isArray(inner) && inner.length === 2) {
      const operand = (x: unknown): unknown => {
        if (typeof x === 'string') return address(type, x);
        const [ok] = only(x) ?? invalid(`unknown operand ${JSON.stringify(x)}`);
        if (ok === '|' || ok === '&') return natAddr(type, x);
        if (typeOf(x) !== type) invalid(`datatype mismatch, expected ${type}`);
        return structuredClone(x);
      };
      return { [k]: inner.map(operand) };
    }
    return invalid(`unknown nat address ${JSON.stringify(v)}`);
  };

  // The kernel's checks come after all of nft's, which see the whole rule first.
  const targets: string[] = [];
  const out = expr.map((stmt: unknown): unknown => {
    const [k, v] = only(stmt) ?? invalid(`unknown statement ${JSON.stringify(stmt)}`);
    switch (k) {
      case 'counter':
        // nft lists a new counter with its values.
        if (v === null) return { counter: { packets: 0, bytes: 0 } };
        if (isObject(v) && typeof v.packets === 'number' && typeof v.bytes === 'number')
          return { counter: { packets: v.packets, bytes: v.bytes } };
        return invalid('a counter is null or has packets and bytes');
      case 'accept':
      case 'drop':
      case 'return':
      case 'continue':
        if (v !== null) invalid(`${k} takes no argument`);
        return { [k]: null };
      case 'jump':
      case 'goto': {
        const target = isObject(v) && typeof v.target === 'string' ? v.target : invalid(`${k} needs a target`);
        targets.push(target);
        return { [k]: { target } };
      }
      case 'match': {
        if (!isObject(v) || !['==', '!=', 'in'].includes(String(v.op))) return invalid('a match has op, left and right');
        return { match: { op: v.op, left: structuredClone(v.left), right: right(typeOf(v.left), v.right) } };
      }
      case 'dnat':
      case 'snat': {
        if (!isObject(v) || Object.keys(v).some((x) => x !== 'family' && x !== 'addr')) return invalid(`unknown ${k} arguments`);
        const family = v.family ?? (t.family === 'inet' ? undefined : t.family);
        if (family !== 'ip' && family !== 'ip6') return invalid('ip or ip6 must be specified with address for inet tables.');
        return { [k]: { family, addr: natAddr(family === 'ip' ? 'ipv4_addr' : 'ipv6_addr', v.addr) } };
      }
      default:
        return invalid(`Unknown statement object '${k}'.`);
    }
  });
  for (const target of targets) {
    const chain = t.chains.get(target) ?? fail(what, 'not-found', ENOENT, 'kernel');
    if (chain.hook !== undefined) fail(what, 'invalid', EOPNOTSUPP, 'kernel');
  }
  return out;
}

/**
 * The checks the kernel makes of a table at commit: no chain reaches itself
 * or nests deeper than the jump stack, and every hook-bound statement is only
 * reached from base chains whose hook (and type) it works in.
 */
export function validateTable(t: FakeTable): void {
  const what = `table ${t.family} ${t.name}`;
  const rulesOf = (chain: string) => t.rules.filter((r) => r.chain === chain);
  const walk = (chain: string, base: Chain | null, path: string[]): void => {
    if (path.length > MAX_DEPTH) fail(what, 'invalid', 'Too many links', 'kernel');
    for (const r of rulesOf(chain)) {
      for (const stmt of r.expr) {
        const [k, v] = only(stmt) ?? ['', null];
        const bound = Object.hasOwn(HOOKS, k)
          ? HOOKS[k]
          : k === 'match' && isObject(v) && isObject(v.left) && 'socket' in v.left
            ? HOOKS.socket
            : undefined;
        if (base && bound && (!bound.hooks.includes(base.hook!) || (bound.nat && base.type !== 'nat')))
          fail(`rule in chain ${t.family} ${t.name} ${chain}`, 'invalid', EOPNOTSUPP, 'kernel');
      }
      for (const target of jumpTargets(r)) {
        if (path.includes(target)) fail(what, 'invalid', 'Too many links', 'kernel');
        walk(target, base, [...path, target]);
      }
    }
  };
  for (const c of t.chains.values()) walk(c.name, c.hook === undefined ? null : c, [c.name]);
}

/** Chains a rule jumps or goes to. */
export function jumpTargets(r: Rule): string[] {
  const out: string[] = [];
  for (const stmt of r.expr) {
    const [k, v] = only(stmt) ?? ['', null];
    if ((k === 'jump' || k === 'goto') && isObject(v) && typeof v.target === 'string') out.push(v.target);
  }
  return out;
}

/** Names of maps and sets a rule's statements refer to ("@name"). */
export function mapRefs(expr: unknown): string[] {
  const out: string[] = [];
  JSON.stringify(expr, (_k, v: unknown) => {
    if (typeof v === 'string' && v.startsWith('@')) out.push(v.slice(1));
    return v;
  });
  return out;
}
