// How `addrmap status` reads to a person: the verdict first, then the facts
// behind it, then one line per mapping; the same report as --json, in words.
import type { Health, StatusReport } from './status.js';
import type { UsedBy } from './status-usage.js';

const HEALTH_TEXT: Record<Health, string> = {
  healthy: 'HEALTHY: the bridge is on and the kernel matches the applied mappings',
  waiting: 'WAITING FOR THE FIRST PUSH: the bridge is on; no mapping file has been applied yet',
  degraded: 'DEGRADED: see problems below',
  'agent-not-running': 'AGENT NOT RUNNING: mappings in the kernel stay, but pushes are not applied',
  disabled: 'DISABLED: the feature flag is off; no addresses are translated',
  'no-state': 'NO STATE HERE: no addrmap agent has written to this state directory; see problems below',
};

export function formatStatus(s: StatusReport, opts: { all?: boolean; now?: Date } = {}): string {
  const now = opts.now ?? new Date();
  const L: string[] = [];
  L.push(`addrmap ${verdict(s)}`, '');
  L.push(`enabled:      ${s.enabled ? 'yes' : 'no'} (from ${s.flagSource})`);
  const agent = s.agent.running
    ? `running, pid ${s.agent.pid}, up ${duration(s.agent.uptimeSeconds ?? 0)}`
    : s.agent.resident
      ? 'not running'
      : 'none resident by design (one-shot applies: addrmap-apply.path, addrmap-check.timer)';
  L.push(`agent:        ${agent}`);
  L.push(`mapping file: ${s.mappingFile ?? '-'}`);
  L.push(`generation:   ${s.generation ?? 'none applied'}${s.appliedAt ? `, applied ${s.appliedAt} (${ago(s.appliedAt, now)})` : ''}`);
  if (s.lastPush) {
    const p = s.lastPush;
    const gen = p.generation === undefined ? '' : ` generation ${p.generation}`;
    const why = p.outcome === 'refused' || p.outcome === 'failed' ? `: ${p.entry ? `${p.entry}: ` : ''}${p.reason}` : '';
    L.push(`last push:    ${p.outcome}${gen} at ${p.at} (${ago(p.at, now)})${why}`);
  }
  if (s.drift === null) L.push('kernel:       not read; run as root for live counters, drift and flows');
  else
    L.push(
      `kernel:       ${s.drift.length ? `${s.drift.length} difference(s) from the applied mappings` : 'matches the applied mappings'}`,
    );
  if (s.driftRepairs) L.push(`repairs:      ${s.driftRepairs} since the agent started (another tool changed addrmap's table)`);
  for (const m of s.kernelCapabilities?.missing ?? []) L.push(`limited:      ${m}`);
  if (s.problems.length) {
    L.push('', 'PROBLEMS');
    for (const p of s.problems) L.push(`  ${p}`);
  }

  if (s.mappings.length) {
    // Used mappings first (most recent first): those are the configs to rewrite.
    const rows = [...s.mappings].sort((a, b) => (b.lastSeen ?? '').localeCompare(a.lastSeen ?? '') || (b.packets ?? 0) - (a.packets ?? 0));
    const shown = opts.all ? rows : rows.slice(0, 50);
    const src = s.source === 'kernel' ? 'live' : `sampled ${s.usageSampledAt ? ago(s.usageSampledAt, now) : 'never'}`;
    L.push('', `MAPPINGS (${s.mappings.length}; hits ${src})`);
    const table = [['FROM (stale)', 'TO (now)', 'PACKETS', 'BYTES', 'LAST SEEN', 'FLOWS', 'KERNEL']];
    for (const m of shown) {
      table.push([
        m.from,
        m.to,
        m.packets === null ? '-' : String(m.packets),
        m.bytes === null ? '-' : bytes(m.bytes),
        m.lastSeen ? ago(m.lastSeen, now) : 'never',
        m.flows === null ? '-' : String(m.flows),
        m.inKernel === null ? '-' : m.inKernel ? 'ok' : 'MISSING',
      ]);
    }
    L.push(...columns(table));
    if (shown.length < rows.length) L.push(`  ... and ${rows.length - shown.length} more (--all, or --json)`);
  }
  const inside = s.mappings.flatMap((m) => (m.inside ?? []).map((i) => ({ ...i, prefix: m.from })));
  if (inside.length) {
    // The kernel counts a prefix mapping as a whole: these hits are flows, as the agent's samples saw them.
    const rows = inside.sort((a, b) => (b.lastSeen ?? '').localeCompare(a.lastSeen ?? '') || (b.hits ?? 0) - (a.hits ?? 0));
    const shown = opts.all ? rows : rows.slice(0, 50);
    L.push('', `INSIDE PREFIX MAPPINGS (${inside.length} address(es) used; hits: flows seen by the agent's samples)`);
    const table = [['ADDRESS (stale)', 'TO (now)', 'PREFIX', 'HITS', 'LAST SEEN', 'FLOWS']];
    for (const i of shown)
      table.push([
        i.address,
        i.to,
        i.prefix,
        i.hits === null ? '-' : String(i.hits),
        i.lastSeen ? ago(i.lastSeen, now) : 'never',
        i.flows === null ? '-' : String(i.flows),
      ]);
    L.push(...columns(table));
    if (shown.length < rows.length) L.push(`  ... and ${rows.length - shown.length} more (--all, or --json)`);
  }
  const users = stillUsedBy(s, now);
  if (users.length) L.push('', 'STILL USED BY (programs seen over the retirement period: the configs to rewrite)', ...users);
  if (s.expiring.length) {
    L.push('', `EXPIRING (${s.expiring.length})`);
    for (const e of s.expiring.slice(0, opts.all ? undefined : 20))
      L.push(`  ${e.from} -> ${e.to} at ${e.expires} (in ${duration(Math.round((Date.parse(e.expires) - now.getTime()) / 1000))})`);
    if (!opts.all && s.expiring.length > 20) L.push(`  ... and ${s.expiring.length - 20} more`);
  }
  if (s.safeToRetire.mappings.length) {
    L.push('', `SAFE TO RETIRE (${s.safeToRetire.mappings.length}; no traffic for ${duration(s.safeToRetire.afterSeconds)} or longer)`);
    for (const m of s.safeToRetire.mappings.slice(0, opts.all ? undefined : 20)) L.push(`  ${m}`);
    if (!opts.all && s.safeToRetire.mappings.length > 20) L.push(`  ... and ${s.safeToRetire.mappings.length - 20} more`);
  }
  if (s.self.length) {
    L.push('', `OWN PREVIOUS ADDRESSES (${s.self.length}; bindable here, traffic to the address now reaches sockets bound on them)`);
    for (const m of s.self) L.push(`  ${m.from} (now ${m.to})${m.inKernel === false ? '  MISSING from the kernel' : ''}`);
  }
  if (s.flows?.length) {
    L.push('', `FLOWS TO STALE ADDRESSES (${s.flows.length})`);
    for (const f of s.flows) {
      const ep = (a: string, p?: number) => (p === undefined ? a : a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
      const who = f.pid ? `  pid ${f.pid} (${f.command})` : f.uid !== undefined ? `  ${owner(f)}, process not visible` : '';
      L.push(
        `  ${f.proto} ${ep(f.src, f.sport)} -> ${ep(f.dst, f.dport)} ${f.translated ? `answered by ${f.answeredBy}` : 'NOT TRANSLATED'}${f.state ? ` ${f.state}` : ''}${who}`,
      );
    }
  }
  return L.join('\n');
}

/** One line per program (or forwarding source) per stale address, addresses inside prefix mappings included. */
function stillUsedBy(s: StatusReport, now: Date): string[] {
  const lines: string[] = [];
  const who = (u: UsedBy) => {
    const where = u.unit ?? (u.container ? `container ${u.container}` : undefined);
    if (u.command === undefined && u.uid !== undefined)
      return `a program of ${owner(u)} (its process is not visible to the agent: another user's, under the service's sandbox)`;
    if (u.command === undefined) return `forwarded from ${u.src}`;
    const about = [u.pid === undefined ? undefined : `pid ${u.pid}`, u.user === undefined ? undefined : `user ${u.user}`, where].filter(
      (x) => x !== undefined,
    );
    return about.length ? `${u.command} (${about.join(', ')})` : u.command;
  };
  const add = (address: string, to: string, usedBy: UsedBy[]) => {
    for (const u of usedBy) lines.push(`  ${address} (now ${to}): ${who(u)}, last ${ago(u.lastSeen, now)}`);
  };
  for (const m of s.mappings) {
    add(m.from, m.to, m.usedBy);
    for (const i of m.inside ?? []) add(i.address, i.to, i.usedBy);
  }
  return lines;
}

/** A socket's owner as status names it: the user, with the uid when it has no name. */
const owner = (o: { user?: string; uid?: number }) => (o.user !== undefined ? `user ${o.user}` : `uid ${o.uid}`);

function columns(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map(
    (r) =>
      '  ' +
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
  );
}

function ago(iso: string, now: Date): string {
  return `${duration(Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 1000)))} ago`;
}

function duration(sec: number): string {
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m${String(sec % 60).padStart(2, '0')}s`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h${String(Math.floor((sec % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(sec / 86400)}d${String(Math.floor((sec % 86400) / 3600)).padStart(2, '0')}h`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

function verdict(s: StatusReport): string {
  if (s.startFailure) return 'AGENT NOT RUNNING: it cannot start here; see problems below';
  // Unprivileged, nothing was compared with the kernel: the verdict must not claim it was.
  if (s.health === 'healthy' && s.source === 'snapshot')
    return "HEALTHY (SNAPSHOT ONLY): the agent's files say the bridge is on and applied; the kernel was not read (run as root to check it)";
  if (s.health === 'waiting' && s.source === 'snapshot') return `${HEALTH_TEXT.waiting} (snapshot only; the kernel was not read)`;
  // The problems read from files may be stale, and the kernel may hold what the files deny.
  if (s.health === 'degraded' && s.source === 'snapshot')
    return "DEGRADED (SNAPSHOT ONLY): the agent's files report the problems below; the kernel was not read (run as root to check it)";
  if (s.health === 'disabled' && s.source === 'snapshot')
    return "DISABLED (SNAPSHOT ONLY): the agent's files say the feature flag is off; the kernel was not read (run as root to check that nothing is translated)";
  return HEALTH_TEXT[s.health];
}
