// Prometheus text exposition of the agent's state, for the node_exporter
// textfile collector (written to a file) and, optionally, a local HTTP port.
import type { Server } from 'node:http';
import { access, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export class AgentStats {
  enabled = false;
  generation: number | null = null;
  mappings = 0;
  syncs = 0;
  syncFailures = 0;
  refusedPushes = 0;
  driftRepairs = 0;
  lastSyncSeconds = 0;
  syncSecondsSum = 0;
  perMapping: { from: string; to: string; packets: number; bytes: number }[] = [];

  recordSync(seconds: number): void {
    this.syncs++;
    this.lastSyncSeconds = seconds;
    this.syncSecondsSum += seconds;
  }
}

export function renderMetrics(s: AgentStats): string {
  const out: string[] = [];
  const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) out.push(`${name}${labels} ${v}`);
  };
  metric('addrmap_enabled', 'gauge', 'Whether the feature flag is on.', [['', s.enabled ? 1 : 0]]);
  metric('addrmap_mappings', 'gauge', 'Mappings installed (after chain resolution).', [['', s.mappings]]);
  metric('addrmap_applied_generation', 'gauge', 'Generation of the applied mapping file (-1: none).', [['', s.generation ?? -1]]);
  metric(
    'addrmap_sync_duration_seconds',
    'summary',
    'Time to apply a mapping file, from reading it to the kernel, routes and conntrack done.',
    [
      ['_sum', s.syncSecondsSum],
      ['_count', s.syncs],
    ],
  );
  metric('addrmap_last_sync_duration_seconds', 'gauge', 'Duration of the last sync.', [['', s.lastSyncSeconds]]);
  metric('addrmap_sync_failures_total', 'counter', 'Syncs that failed (nft or kernel error); the kernel kept its state.', [
    ['', s.syncFailures],
  ]);
  metric('addrmap_refused_pushes_total', 'counter', 'Mapping or config files refused as invalid or untrusted.', [['', s.refusedPushes]]);
  metric('addrmap_drift_repairs_total', 'counter', "Repairs after another tool changed addrmap's table.", [['', s.driftRepairs]]);
  const lbl = (m: { from: string; to: string }) => `{from="${m.from}",to="${m.to}"}`;
  metric(
    'addrmap_mapping_packets_total',
    'counter',
    'Packets sent to a stale address and translated.',
    s.perMapping.map((m) => [lbl(m), m.packets]),
  );
  metric(
    'addrmap_mapping_bytes_total',
    'counter',
    'Bytes sent to a stale address and translated.',
    s.perMapping.map((m) => [lbl(m), m.bytes]),
  );
  return out.join('\n') + '\n';
}

/** Writes the metrics file atomically; skipped when its directory does not exist (no collector installed). */
export async function writeMetricsFile(path: string, s: AgentStats): Promise<boolean> {
  try {
    await access(dirname(path));
  } catch {
    return false;
  }
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, renderMetrics(s), { mode: 0o644 });
  await rename(tmp, path);
  return true;
}

/**
 * Serves GET /metrics on host:port; off unless configured. node:http is
 * loaded only then: it adds about 16 MiB to a process that otherwise never
 * needs it.
 */
export async function serveMetrics(listen: string, s: AgentStats): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new Error(`metricsListen ${JSON.stringify(listen)} is not host:port`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const { createServer } = process.getBuiltinModule('node:http');
  const server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url === '/')) {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(renderMetrics(s));
    } else {
      res.writeHead(404).end();
    }
  });
  // A scraper needs one connection; many idle ones must not use up the
  // agent's file descriptors.
  server.maxConnections = 16;
  server.requestTimeout = 5000;
  server.headersTimeout = 5000;
  server.keepAliveTimeout = 5000;
  server.setTimeout(10_000, (sock) => sock.destroy());
  server.on('clientError', (_e, sock) => sock.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[2]), host, () => {
      server.off('error', reject);
      // Later errors (EMFILE on accept) are logged by the caller's process, never fatal.
      server.on('error', () => {});
      resolve(server);
    });
  });
}
