// The agent's own config file. It is optional: a guest image without one runs
// with the defaults, which keep the feature off.
import { parsePrefix, AddressError, type IpPrefix } from './address.js';
import { DEFAULT_ALLOWED_TARGETS } from './mapping-file.js';
import { strictJsonProblem } from './strict-json.js';
import { readTrustedFile, UntrustedFileError } from './trusted-file.js';

export interface Config {
  /** Feature flag as set in the file; null when the file does not say. */
  enabled: boolean | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** Ranges a mapping's target must lie in. */
  allowedTargets: readonly IpPrefix[];
}

export const DEFAULT_CONFIG: Config = { enabled: null, logLevel: 'info', allowedTargets: DEFAULT_ALLOWED_TARGETS };

const MAX_CONFIG_BYTES = 64 * 1024;

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

export class ConfigError extends Error {}

export async function loadConfig(path: string): Promise<Config> {
  let text: string | null;
  try {
    text = await readTrustedFile(path, { maxBytes: MAX_CONFIG_BYTES, extraOwners: ownUid() });
  } catch (e) {
    if (e instanceof UntrustedFileError) throw new ConfigError(`config refused: ${e.message}`);
    throw new ConfigError(`cannot read config ${path}: ${(e as Error).message}`);
  }
  if (text === null) return { ...DEFAULT_CONFIG };
  return parseConfig(text, path);
}

/** Besides root, the user addrmap runs as may own its files (development, tests). */
export function ownUid(): number[] {
  const uid = process.geteuid?.();
  return uid === undefined || uid === 0 ? [] : [uid];
}

export function parseConfig(text: string, path = 'config'): Config {
  const problem = strictJsonProblem(text);
  if (problem) throw new ConfigError(`${path}: invalid JSON: ${problem}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: invalid JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new ConfigError(`${path}: must be a JSON object`);
  const cfg = { ...DEFAULT_CONFIG };
  for (const [k, v] of Object.entries(doc)) {
    switch (k) {
      case 'enabled':
        if (typeof v !== 'boolean') throw new ConfigError(`${path}: "enabled" must be true or false`);
        cfg.enabled = v;
        break;
      case 'logLevel':
        if (typeof v !== 'string' || !LEVELS.has(v)) throw new ConfigError(`${path}: "logLevel" must be one of ${[...LEVELS].join(', ')}`);
        cfg.logLevel = v as Config['logLevel'];
        break;
      case 'allowedTargets':
        if (!Array.isArray(v) || v.some((p) => typeof p !== 'string')) {
          throw new ConfigError(`${path}: "allowedTargets" must be a list of prefixes such as "fc00::/7"`);
        }
        try {
          cfg.allowedTargets = v.map((p: string) => parsePrefix(p));
        } catch (e) {
          if (e instanceof AddressError) throw new ConfigError(`${path}: allowedTargets: ${e.message}`);
          throw e;
        }
        break;
      default:
        // A typo such as "enable" must not silently leave the feature off.
        throw new ConfigError(`${path}: unknown setting ${JSON.stringify(k)}`);
    }
  }
  return cfg;
}
