// JSON lines on stdout, written synchronously by the main thread: no transport
// workers, so the standalone executable and tiny guests need nothing extra,
// and nothing is lost when the process is killed right after logging.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string = process.env.ADDRMAP_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    { name: 'addrmap', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}
