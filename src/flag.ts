// The feature flag. The platform can set it per VM on the kernel command line,
// an image builder in the config file, an operator in the environment; the
// most specific of these wins.
import { readFile } from 'node:fs/promises';

export type FlagSource = 'environment' | 'kernel command line' | 'config file' | 'default';

export interface Flag {
  enabled: boolean;
  source: FlagSource;
}

export class FlagError extends Error {}

/** /proc/cmdline, or a stand-in for tests (ADDRMAP_CMDLINE_FILE). */
export async function readKernelCmdline(env: NodeJS.ProcessEnv): Promise<string> {
  try {
    return await readFile(env.ADDRMAP_CMDLINE_FILE ?? '/proc/cmdline', 'utf8');
  } catch {
    return '';
  }
}

/** The flag as its sources say now (throws FlagError on a malformed value). */
export async function currentFlag(env: NodeJS.ProcessEnv, configEnabled: boolean | null): Promise<Flag> {
  return resolveFlag(env, await readKernelCmdline(env), configEnabled);
}

export function resolveFlag(env: NodeJS.ProcessEnv, cmdline: string, configEnabled: boolean | null): Flag {
  const fromEnv = env.ADDRMAP_ENABLED;
  if (fromEnv !== undefined && fromEnv !== '') return { enabled: parseBool(fromEnv, 'ADDRMAP_ENABLED'), source: 'environment' };
  // The kernel takes the last occurrence of a repeated parameter; so do we.
  const matches = [...cmdline.matchAll(/(?:^|\s)addrmap\.enabled=(\S*)/g)];
  const last = matches.at(-1);
  if (last) return { enabled: parseBool(last[1]!, 'addrmap.enabled on the kernel command line'), source: 'kernel command line' };
  if (configEnabled !== null) return { enabled: configEnabled, source: 'config file' };
  return { enabled: false, source: 'default' };
}

function parseBool(v: string, where: string): boolean {
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new FlagError(`${where} must be 1 or 0 (or true/false), not ${JSON.stringify(v)}`);
}
