// JSON lines on stdout, written synchronously by the main thread: no transport
// workers, so the standalone executable and tiny guests need nothing extra,
// and nothing is lost when the process is killed right after logging.
import { pino } from 'pino';
import type { LogEvent } from './events.js';

/** A line's fields: its `event` one of LOG_EVENTS, so a name not in the list does not compile. */
type LogFields = { event: LogEvent } & Record<string, unknown>;
type LogFn = (fields: LogFields, msg?: string) => void;

/** pino's logger as addrmap uses it: every line names its event. */
export interface Logger {
  level: string;
  fatal: LogFn;
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
}

export const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** ADDRMAP_LOG_LEVEL when it names a level; the config's logLevel takes over at the first pass otherwise. */
export function createLogger(asked: string | undefined = process.env.ADDRMAP_LOG_LEVEL): Logger {
  const level = asked && LOG_LEVELS.has(asked) ? asked : 'info';
  return pino(
    { name: 'addrmap', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}
