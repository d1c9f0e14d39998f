// A start that fails (nft unusable, a kernel that rejects addrmap's table) is
// recorded in the status snapshot, so `addrmap status` says the agent cannot
// start and why instead of guessing from a missing file.
import { loadConfig } from '../input/config.js';
import { currentFlag } from '../input/flag.js';
import type { Paths } from '../input/settings.js';
import { readSnapshot, writeSnapshot, type Snapshot } from '../state/state-file.js';

export async function recordStartFailure(paths: Paths, command: 'apply' | 'watch', reason: string, env: NodeJS.ProcessEnv): Promise<void> {
  const prev = await readSnapshot(paths.stateDir).catch(() => null);
  const config = await loadConfig(paths.config).catch(() => null);
  const flag = await currentFlag(env, config?.enabled ?? null).catch(() => prev?.flag ?? { enabled: false, source: 'default' as const });
  const at = new Date().toISOString();
  const snap: Snapshot = {
    schema: 1,
    pid: null,
    startedAt: null,
    applied: null,
    lastPush: null,
    warnings: [],
    ...prev,
    updatedAt: at,
    flag,
    mappingsFile: paths.mappings,
    startFailure: { at, command, reason, attempts: (prev?.startFailure?.attempts ?? 0) + 1 },
  };
  // The agent that wrote pid is gone; status must not think it runs.
  snap.pid = null;
  await writeSnapshot(paths.stateDir, snap);
}
