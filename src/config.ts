// The agent's own config file. It is optional: a guest image without one runs
// with the defaults, which keep the feature off.
import { readFile } from 'node:fs/promises';

export interface Config {
  /** Feature flag as set in the file; null when the file does not say. */
  enabled: boolean | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
}

export const DEFAULT_CONFIG: Config = { enabled: null, logLevel: 'info' };

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

export class ConfigError extends Error {}

export async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ...DEFAULT_CONFIG };
    throw new ConfigError(`cannot read config ${path}: ${(e as Error).message}`);
  }
  return parseConfig(text, path);
}

export function parseConfig(text: string, path = 'config'): Config {
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
      default:
        // A typo such as "enable" must not silently leave the feature off.
        throw new ConfigError(`${path}: unknown setting ${JSON.stringify(k)}`);
    }
  }
  return cfg;
}
