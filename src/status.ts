// `addrmap status`: read-only. It reads the agent's snapshot and, when it may,
// the kernel table, and never writes, locks or changes anything.
import { readSnapshot, type Snapshot } from './state-file.js';
import { TABLE, MAP_NAMES } from './ruleset.js';
import type { NftInterface } from './nft/index.js';
import { viewFromListing } from './plan.js';

export interface StatusReport {
  enabled: boolean;
  flagSource: string;
  agent: { running: boolean; pid: number | null; since: string | null };
  mappingsFile: string | null;
  generation: number | null;
  appliedAt: string | null;
  mappings: number;
  lastPush: Snapshot['lastPush'];
  warnings: string[];
  driftRepairs: number;
  /** From the kernel, when readable (root); null otherwise. */
  kernel: { table: boolean; layoutOk: boolean; mappings: number } | null;
}

export async function collectStatus(stateDir: string, nft: NftInterface | null): Promise<StatusReport> {
  const snap = await readSnapshot(stateDir);
  let kernel: StatusReport['kernel'] = null;
  if (nft) {
    try {
      const listing = await nft.listTable(TABLE.family, TABLE.name);
      const view = viewFromListing(listing);
      kernel = { table: listing !== null, layoutOk: view.layoutOk, mappings: view.v4.size + view.v6.size };
    } catch {
      kernel = null; // not privileged: the snapshot is all we have
    }
  }
  return {
    enabled: snap?.flag.enabled ?? false,
    flagSource: snap?.flag.source ?? 'unknown (agent never ran)',
    agent: { running: snap?.pid ? alive(snap.pid) : false, pid: snap?.pid ?? null, since: snap?.startedAt ?? null },
    mappingsFile: snap?.mappingsFile ?? null,
    generation: snap?.applied?.generation ?? null,
    appliedAt: snap?.applied?.at ?? null,
    mappings: snap?.applied?.mappings ?? 0,
    lastPush: snap?.lastPush ?? null,
    warnings: snap?.warnings ?? [],
    driftRepairs: snap?.driftRepairs ?? 0,
    kernel,
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function formatStatus(s: StatusReport): string {
  const lines: string[] = [];
  lines.push(`enabled:     ${s.enabled ? 'yes' : 'no'} (from ${s.flagSource})`);
  lines.push(`agent:       ${s.agent.running ? `running, pid ${s.agent.pid}, since ${s.agent.since}` : 'not running'}`);
  lines.push(`mapping file: ${s.mappingsFile ?? '-'}`);
  lines.push(`generation:  ${s.generation ?? 'none applied'}${s.appliedAt ? ` (applied ${s.appliedAt})` : ''}`);
  lines.push(`mappings:    ${s.mappings}`);
  if (s.lastPush) {
    const p = s.lastPush;
    const what = p.outcome === 'refused' || p.outcome === 'failed' ? `${p.outcome}: ${p.entry ? `${p.entry}: ` : ''}${p.reason}` : p.outcome;
    lines.push(`last push:   ${what} (generation ${p.generation ?? '?'}, ${p.at})`);
  }
  if (s.kernel) {
    const k = s.kernel;
    const state = !k.table ? (s.enabled ? 'table MISSING' : 'no table') : !k.layoutOk ? 'table present but MODIFIED' : `table ${TABLE.family} ${TABLE.name}, ${k.mappings} mappings in ${MAP_NAMES[4]}/${MAP_NAMES[6]}`;
    lines.push(`kernel:      ${state}`);
  } else {
    lines.push('kernel:      not read (run as root for live kernel data)');
  }
  if (s.driftRepairs) lines.push(`repairs:     ${s.driftRepairs} (another tool changed addrmap's table)`);
  for (const w of s.warnings) lines.push(`warning:     ${w}`);
  return lines.join('\n');
}
