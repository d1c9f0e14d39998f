// `addrmap status`: is the bridge on, what is mapped, is the kernel really in
// that state, which stale addresses are still used (and by whom), and what
// went wrong. Read-only: it reads the agent's state files and, when
// privileged, the kernel; it never writes, locks or changes anything.
import { stat } from 'node:fs/promises';
import type { ConntrackTable } from '../kernel/conntrack.js';
import { listFlows, type Flow } from './flows.js';
import { driftOf, kernelTarget } from './status-drift.js';
import { insidePrefixes, usedByOf, type InsideUse, type UsedBy } from './status-usage.js';
import { HISTORY_FILE, type HistoryState } from '../agent/usage-history.js';
import type { NftInterface } from '../kernel/nft/index.js';
import { viewFromListing } from '../kernel/plan.js';
import { countersOf } from '../agent/usage.js';
import { buildRuleset, FULL_RULESET } from '../kernel/ruleset.js';
import type { Flag } from '../input/flag.js';
import {
  APPLIED_FILE,
  SNAPSHOT_FILE,
  readSnapshot,
  readState,
  USAGE_FILE,
  type AppliedState,
  type Snapshot,
  type MappingUsage,
  type UsageState,
} from '../state/state-file.js';

/**
 * The verdict. "waiting": on and running, no push applied yet, nothing wrong
 * (a freshly enabled VM must not page anyone). "no-state": no agent has ever
 * written to this state directory, so nothing here says whether the bridge
 * is on: the flag's sources are reported as they read now.
 */
export type Health = 'healthy' | 'waiting' | 'degraded' | 'agent-not-running' | 'disabled' | 'no-state';

/** Exit codes of `addrmap status`, for monitoring. */
export const STATUS_EXIT: Record<Health, number> = {
  healthy: 0,
  waiting: 0,
  degraded: 1,
  'agent-not-running': 3,
  disabled: 4,
  'no-state': 5,
};

interface MappingReport {
  from: string;
  to: string;
  packets: number | null;
  bytes: number | null;
  lastSeen: string | null;
  /** Current flows to this stale address; null when flows could not be read. */
  flows: number | null;
  /** Whether the kernel holds exactly this mapping; null when the kernel was not read. */
  inKernel: boolean | null;
  /** When the mapping retires (RFC 3339), or null. */
  expires: string | null;
  /** Who used it over the retirement period (programs, their unit or container, or forwarding sources), most recent first. */
  usedBy: UsedBy[];
  /** For a prefix mapping: each address used inside it. */
  inside?: InsideUse[];
}

/** The `--json` document. Stable: fields are only ever added. */
export interface StatusReport {
  schema: 1;
  health: Health;
  /** Why the health is not "healthy". */
  problems: string[];
  enabled: boolean;
  flagSource: string;
  /** resident: false in the mode without a resident agent (one-shot applies), where none running is normal. */
  agent: { running: boolean; resident: boolean; pid: number | null; since: string | null; uptimeSeconds: number | null };
  mappingFile: string | null;
  generation: number | null;
  appliedAt: string | null;
  lastPush: Snapshot['lastPush'];
  /** "kernel": counters, drift and flows read live; "snapshot": from the agent's files only. */
  source: 'kernel' | 'snapshot';
  usageSampledAt: string | null;
  mappings: MappingReport[];
  /** Differences between the kernel and the applied mappings; null when the kernel was not read. */
  drift: string[] | null;
  driftRepairs: number;
  flows: Flow[] | null;
  warnings: string[];
  /** Mappings with an expiry still to come, soonest first. */
  expiring: { from: string; to: string; expires: string }[];
  /** Mappings without use for `afterSeconds` (or never used in that long): candidates to retire. */
  safeToRetire: { afterSeconds: number; mappings: string[] };
  /** This guest's own previous addresses; inKernel null when the kernel was not read. */
  self: { from: string; to: string; inKernel: boolean | null }[];
  /** The table's shape on this kernel and what the missing parts cost; null before the agent first started. */
  kernelCapabilities: Snapshot['kernel'] | null;
  /** The last failed start, while no start has succeeded since. */
  startFailure: Snapshot['startFailure'] | null;
}

export interface StatusSources {
  stateDir: string;
  /** Config setting; the default week when not given. */
  retireAfterSeconds?: number;
  /** null when not privileged. */
  nft: NftInterface | null;
  conntrack: ConntrackTable | null;
  /** The flag as its sources say now: used when the agent has never written a snapshot. */
  flag?: Flag;
  now?: Date;
}

export async function collectStatus(src: StatusSources): Promise<StatusReport> {
  const now = src.now ?? new Date();
  // A state file that is not trustworthy (a symlink, someone else's, a FIFO)
  // is not read, and says so, rather than stopping status.
  const unreadable: string[] = [];
  const safely = <T>(p: Promise<T | null>) =>
    p.catch((e: Error) => {
      unreadable.push(`state not read: ${e.message}`);
      return null;
    });
  const [snap, appliedFile, usage, history] = await Promise.all([
    safely(readSnapshot(src.stateDir)),
    safely(readState<AppliedState>(src.stateDir, APPLIED_FILE)),
    safely(readState<UsageState>(src.stateDir, USAGE_FILE)),
    safely(readState<HistoryState>(src.stateDir, HISTORY_FILE)),
  ]);
  // Two files, written one after the other: joined only when they speak of
  // the same generation, or status would show one push's mappings under
  // another's generation.
  let applied = appliedFile;
  let disagree = false;
  if (appliedFile && snap?.applied && appliedFile.generation !== snap.applied.generation) {
    unreadable.push(
      `state files disagree: ${SNAPSHOT_FILE} says generation ${snap.applied.generation} is applied, ${APPLIED_FILE} holds generation ${appliedFile.generation}; its mappings are not shown`,
    );
    applied = null;
    disagree = true;
  }
  const enabled = snap?.flag.enabled ?? src.flag?.enabled ?? false;
  const running = snap?.pid ? alive(snap.pid) : false;
  // In the mode without a resident agent, one-shot applies do the work: none running is the normal state.
  const agentExpected = snap?.resident !== false;
  const resolved = enabled && snap?.applied ? (applied?.resolved ?? []) : [];

  let kernel: ReturnType<typeof viewFromListing> | null = null;
  let tablePresent = false;
  const live = new Map<string, { packets: number; bytes: number }>();
  if (src.nft) {
    try {
      const listing = await src.nft.list();
      tablePresent = listing !== null;
      // The shape the agent chose for this kernel, or it would all look altered.
      kernel = viewFromListing(listing, snap?.kernel ? buildRuleset(snap.kernel) : FULL_RULESET);
      for (const [k, c] of countersOf(listing)) live.set(k, c);
    } catch {
      kernel = null; // not privileged after all
    }
  }

  let flows: Flow[] | null = null;
  if (kernel && src.conntrack && resolved.length) {
    flows = await listFlows(new Map(resolved.map((m) => [m.from, m.to])), src.conntrack).catch(() => null);
  }

  const drift = kernel && !disagree ? driftOf(resolved, kernel, tablePresent, enabled) : null;
  const inside = insidePrefixes(resolved, history, flows);
  const expiresOf = new Map((applied?.entries ?? []).filter((e) => e.expires).map((e) => [e.from, e.expires!]));
  const mappings: MappingReport[] = resolved.map((m) => {
    const counters = kernel ? live.get(m.from) : usage?.mappings[m.from];
    const have = kernel ? kernelTarget(kernel, m) : undefined;
    return {
      from: m.from,
      to: m.to,
      packets: counters?.packets ?? null,
      bytes: counters?.bytes ?? null,
      lastSeen: latest(lastSeen(usage?.mappings[m.from], counters, now), usedByOf(history, m.from)[0]?.lastSeen),
      flows: flows ? flows.filter((f) => f.dst === m.from).length : null,
      inKernel: kernel ? have === m.to : null,
      expires: expiresOf.get(m.from) ?? null,
      usedBy: usedByOf(history, m.from),
      ...(m.from.includes('/') ? { inside: inside.get(m.from) ?? [] } : {}),
    };
  });
  const retireAfter = src.retireAfterSeconds ?? 7 * 24 * 3600;
  const idleSince = (from: string) => {
    const u = usage?.mappings[from];
    return u?.lastSeen ?? u?.since ?? null;
  };
  const safeToRetire = resolved
    .filter((m) => {
      const t = idleSince(m.from);
      return t !== null && now.getTime() - Date.parse(t) >= retireAfter * 1000;
    })
    .map((m) => m.from);
  const expiring = mappings
    .filter((m) => m.expires && Date.parse(m.expires) > now.getTime())
    .map((m) => ({ from: m.from, to: m.to, expires: m.expires! }))
    .sort((a, b) => Date.parse(a.expires) - Date.parse(b.expires));

  const problems: string[] = [];
  if (drift?.length) problems.push(...drift.map((d) => `drift: ${d}`));
  const push = snap?.lastPush;
  if (push && (push.outcome === 'refused' || push.outcome === 'failed')) {
    problems.push(`last push ${push.outcome}: ${push.entry ? `${push.entry}: ` : ''}${push.reason}`);
  }
  for (const w of snap?.warnings ?? []) problems.push(w);
  problems.push(...unreadable);
  const unanswered = enabled && snap && (running || !agentExpected) ? await unansweredPush(snap, now) : null;
  if (unanswered) problems.push(unanswered);
  const health: Health = !snap
    ? 'no-state'
    : !enabled
      ? 'disabled'
      : !running && agentExpected
        ? 'agent-not-running'
        : problems.length
          ? 'degraded'
          : snap.applied
            ? 'healthy'
            : 'waiting';
  const since = snap?.startedAt ?? null;
  const failure = !running && snap?.startFailure ? snap.startFailure : null;
  const notRunning = failure
    ? `the addrmap agent cannot start (${failure.attempts} attempt(s), last ${failure.at}): ${failure.reason}`
    : 'the addrmap watch agent is not running: pushes are not applied';
  const flagNow = src.flag
    ? `the flag reads ${src.flag.enabled ? 'on' : 'off'} (from the ${src.flag.source})`
    : 'the flag could not be read';
  const noState = `no addrmap agent has run with state directory ${src.stateDir} (${flagNow}); is the agent installed and started, and is this its state directory?`;

  return {
    schema: 1,
    health,
    problems: health === 'no-state' ? [noState, ...problems] : health === 'agent-not-running' ? [notRunning, ...problems] : problems,
    enabled,
    flagSource: snap?.flag.source ?? src.flag?.source ?? 'unknown (the agent has never run)',
    agent: {
      running,
      resident: agentExpected,
      pid: running ? (snap?.pid ?? null) : null,
      since: running ? since : null,
      uptimeSeconds: running && since ? Math.round((now.getTime() - Date.parse(since)) / 1000) : null,
    },
    mappingFile: snap?.mappingsFile ?? null,
    generation: enabled ? (snap?.applied?.generation ?? null) : null,
    appliedAt: enabled ? (snap?.applied?.at ?? null) : null,
    lastPush: snap?.lastPush ?? null,
    source: kernel ? 'kernel' : 'snapshot',
    usageSampledAt: usage?.sampledAt ?? null,
    mappings,
    drift,
    driftRepairs: snap?.driftRepairs ?? 0,
    flows,
    warnings: snap?.warnings ?? [],
    expiring,
    safeToRetire: { afterSeconds: retireAfter, mappings: safeToRetire },
    self: (enabled ? (applied?.self ?? []) : []).map((m) => ({ ...m, inKernel: kernel ? kernel.self?.get(m.from) === m.to : null })),
    kernelCapabilities: snap?.kernel ?? null,
    startFailure: failure,
  };
}

/** Longer than a pass takes, even a full one at 100k on a slow guest. */
const ANSWER_WITHIN_MS = 15_000;

/**
 * A push the agent has not answered: the mapping file changed after the
 * agent last wrote its state, and longer ago than a pass takes. Every pass
 * writes that state, so this is an agent that cannot read or write files
 * (out of descriptors, a full disk) or is stuck, whose last word would
 * otherwise still read healthy.
 */
async function unansweredPush(snap: Snapshot, now: Date): Promise<string | null> {
  if (!snap.mappingsFile) return null;
  const changed = await stat(snap.mappingsFile).then(
    (s) => s.mtimeMs,
    () => null, // absent or not ours to see: nothing to compare
  );
  if (changed === null || changed <= Date.parse(snap.updatedAt) || now.getTime() - changed < ANSWER_WITHIN_MS) return null;
  const ago = Math.round((now.getTime() - changed) / 1000);
  return `push not answered: the mapping file changed ${ago}s ago (${new Date(changed).toISOString()}) and the agent has not written its state since; it is not known to be applied (the agent's log says why: out of descriptors, state not writable, or stuck)`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When the mapping was last used: the agent's sample says, unless the live
 * counters have moved past that sample, in which case it was used since
 * (a mapping with packets is never "never").
 */
function lastSeen(sampled: MappingUsage | undefined, counters: { packets: number } | undefined, now: Date): string | null {
  if (counters && counters.packets > (sampled?.packets ?? 0)) return now.toISOString();
  // Packets counted before sampling began: used by then at the latest.
  if (!sampled?.lastSeen && (counters?.packets ?? 0) > 0) return sampled?.since ?? now.toISOString();
  return sampled?.lastSeen ?? null;
}

/** The later of two times (RFC 3339 in UTC compare as text); null when neither is known. */
const latest = (a: string | null, b: string | undefined): string | null => (b && (!a || b > a) ? b : a);
