// The agent's own config file. It is optional: a guest image without one runs
// with the defaults, which keep the feature off.
import { isIPv4, isIPv6 } from 'node:net';
import { AddressError, normalizeIp } from '../net/address.js';
import { Prefix } from '../net/prefix.js';
import { DEFAULT_ALLOWED_TARGETS } from './mapping-file.js';
import { strictJsonProblem } from './strict-json.js';
import { describeJsonError } from './json-syntax.js';
import { readTrustedFile, ResourceError, UntrustedFileError } from './trusted-file.js';

export interface Config {
  /** Feature flag as set in the file; null when the file does not say. */
  enabled: boolean | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** Ranges a mapping's target must lie in. */
  allowedTargets: readonly Prefix[];
  /** Prometheus textfile; written only when its directory exists. null: off. */
  metricsFile: string | null;
  /** host:port to serve /metrics on; null (the default): off. A loopback host unless metricsListenAnyAddress. */
  metricsListen: string | null;
  /** Allows metricsListen on an address other hosts can reach (the mapping table to anyone who connects). */
  metricsListenAnyAddress: boolean;
  /** How often the daemon samples the kernel's per-mapping counters. */
  usageIntervalSeconds: number;
  /** A mapping unused for this long is listed by status as safe to retire. */
  retireAfterSeconds: number;
}

export const DEFAULT_CONFIG: Config = {
  enabled: null,
  logLevel: 'info',
  allowedTargets: DEFAULT_ALLOWED_TARGETS,
  // Debian's prometheus-node-exporter reads its textfile collector from here.
  metricsFile: '/var/lib/prometheus/node-exporter/addrmap.prom',
  metricsListen: null,
  metricsListenAnyAddress: false,
  usageIntervalSeconds: 30,
  retireAfterSeconds: 7 * 24 * 3600,
};

const MAX_CONFIG_BYTES = 64 * 1024;

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

export class ConfigError extends Error {}

export async function loadConfig(path: string): Promise<Config> {
  let text: string | null;
  try {
    text = await readTrustedFile(path, { maxBytes: MAX_CONFIG_BYTES, extraOwners: ownUid() });
  } catch (e) {
    if (e instanceof UntrustedFileError) throw new ConfigError(`config refused: ${e.message}`);
    if (e instanceof ResourceError) throw e;
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

const KNOWN_SETTINGS = [
  'enabled',
  'logLevel',
  'allowedTargets',
  'metricsFile',
  'metricsListen',
  'metricsListenAnyAddress',
  'usageIntervalSeconds',
  'retireAfterSeconds',
];

export function parseConfig(text: string, path = 'config'): Config {
  const problem = strictJsonProblem(text);
  if (problem) throw new ConfigError(`${path}: invalid JSON: ${problem}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ConfigError(`${path}: ${describeJsonError(text)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new ConfigError(`${path}: must be a JSON object`);
  const cfg = { ...DEFAULT_CONFIG };
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
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
          cfg.allowedTargets = v.map((p: string) => Prefix.parse(p));
        } catch (e) {
          if (e instanceof AddressError) throw new ConfigError(`${path}: allowedTargets: ${e.message}`);
          throw e;
        }
        break;
      case 'metricsFile':
        if (v !== null && (typeof v !== 'string' || !v.startsWith('/')))
          throw new ConfigError(`${path}: "metricsFile" must be an absolute path or null`);
        cfg.metricsFile = v;
        break;
      case 'metricsListen':
        if (v !== null && (typeof v !== 'string' || !parseListen(v))) {
          throw new ConfigError(
            `${path}: "metricsListen" must be host:port with an IP address or localhost and a port from 1 to 65535 (e.g. "127.0.0.1:9851"), or null`,
          );
        }
        cfg.metricsListen = v;
        break;
      case 'metricsListenAnyAddress':
        if (typeof v !== 'boolean') throw new ConfigError(`${path}: "metricsListenAnyAddress" must be true or false`);
        cfg.metricsListenAnyAddress = v;
        break;
      case 'usageIntervalSeconds':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 86400)
          throw new ConfigError(`${path}: "usageIntervalSeconds" must be a whole number from 1 to 86400`);
        cfg.usageIntervalSeconds = v;
        break;
      case 'retireAfterSeconds':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
          throw new ConfigError(`${path}: "retireAfterSeconds" must be a positive whole number`);
        cfg.retireAfterSeconds = v;
        break;
      default:
        // A typo such as "enable" must not silently leave the feature off.
        throw new ConfigError(`${path}: an unknown setting (known: ${KNOWN_SETTINGS.join(', ')})`);
    }
  }
  const listen = cfg.metricsListen ? parseListen(cfg.metricsListen) : null;
  if (listen && !listen.loopback && !cfg.metricsListenAnyAddress) {
    throw new ConfigError(
      `${path}: "metricsListen" ${listen.host} is reachable from other hosts and /metrics lists every mapping; use a loopback address, or set "metricsListenAnyAddress": true`,
    );
  }
  return cfg;
}

/** host:port as metricsListen takes it: an IP address (IPv6 in brackets) or localhost, and a port from 1 to 65535. */
function parseListen(text: string): { host: string; port: number; loopback: boolean } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})|(localhost)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[4]);
  if (port < 1 || port > 65535) return null;
  const host = m[1] ?? m[2] ?? 'localhost';
  if (m[1] !== undefined && !isIPv6(host)) return null;
  if (m[2] !== undefined && !isIPv4(host)) return null;
  const loopback = host === 'localhost' || (isIPv4(host) && host.startsWith('127.')) || (isIPv6(host) && normalizeIp(host) === '::1');
  return { host, port, loopback };
}
