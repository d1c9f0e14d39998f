// The feature flag. The platform can set it per VM on the kernel command line,
// an image builder in the config file, an operator in the environment; the
// most specific of these wins.
import { readFile } from 'node:fs/promises';

type FlagSource = 'environment' | 'kernel command line' | 'config file' | 'default';

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
  const value = kernelParams(cmdline)
    .filter(([name]) => name === 'addrmap.enabled')
    .at(-1);
  if (value) return { enabled: kernelBool(value[1], 'addrmap.enabled on the kernel command line'), source: 'kernel command line' };
  if (configEnabled !== null) return { enabled: configEnabled, source: 'config file' };
  return { enabled: false, source: 'default' };
}

function parseBool(v: string, where: string): boolean {
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new FlagError(`${where} must be 1 or 0 (or true/false), not ${JSON.stringify(v)}`);
}

/**
 * The kernel's parameters as the kernel splits them (lib/cmdline.c
 * next_arg): whitespace separates them except inside double quotes, quotes
 * around a whole parameter or around its value are dropped, and `--` ends
 * the kernel's part (what follows is for init). A parameter without `=`
 * has the value null.
 */
function kernelParams(cmdline: string): [string, string | null][] {
  const out: [string, string | null][] = [];
  let i = 0;
  const n = cmdline.length;
  while (i < n) {
    while (i < n && /\s/.test(cmdline[i]!)) i++;
    if (i >= n) break;
    let quoted = false;
    const start = i;
    let eq = -1;
    for (; i < n; i++) {
      const c = cmdline[i]!;
      if (c === '"') quoted = !quoted;
      else if (!quoted && /\s/.test(c)) break;
      else if (c === '=' && eq < 0) eq = i;
    }
    let arg = cmdline.slice(start, i);
    if (arg === '--') break;
    // "name=value" in quotes as a whole: the quotes go.
    if (arg.startsWith('"')) {
      arg = arg.slice(1);
      if (arg.endsWith('"')) arg = arg.slice(0, -1);
      eq -= start + 1;
    } else eq -= start;
    if (eq < 0 || eq >= arg.length) {
      out.push([arg, null]);
      continue;
    }
    let value = arg.slice(eq + 1);
    if (value.startsWith('"')) {
      value = value.slice(1);
      if (value.endsWith('"')) value = value.slice(0, -1);
    }
    out.push([arg.slice(0, eq), value]);
  }
  return out;
}

/** A boolean as the kernel reads its own (kstrtobool): y/Y/t/T/1/on, n/N/f/F/0/off; a bare name is on. */
function kernelBool(v: string | null, where: string): boolean {
  if (v === null) return true;
  if (/^[yYtT1]/.test(v) || /^[oO][nN]/.test(v)) return true;
  if (/^[nNfF0]/.test(v) || /^[oO][fF]/.test(v)) return false;
  throw new FlagError(`${where} must be 1 or 0 (or y/n, on/off, true/false), not ${JSON.stringify(v.slice(0, 32))}`);
}
