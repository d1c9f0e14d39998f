// Every `event` the log can carry, with what it means: one list, so the code,
// its readers and docs/operations.md name the same events (a test holds all
// three to it).
export const LOG_EVENTS = {
  // A pass and its outcome.
  applied: 'a generation was applied (counts of added, removed, retargeted, routes, conntrackQueued)',
  unchanged: 'the file was read again and the kernel already held it',
  refused: 'the mapping file was refused (entry, reason); the kernel is unchanged; once per bad file',
  config_refused: 'the config file was refused; the kernel is unchanged',
  apply_failed: 'the kernel or the machine failed the pass (nothing changed); retried',
  disabled: 'the flag is off: table, routes and own addresses removed',
  no_mapping_file: 'the mapping file is absent; the current mappings are kept',
  degraded: 'applied, but a mapping does not fully work (no route, someone else’s route, the guest’s own address)',
  expired: 'mappings passed their expiry and were removed',
  generation_lowered: 'apply --accept-lower-generation took a file below the applied generation',
  rebuilt: 'after a failed transaction the table was rebuilt whole, and the kernel already held it: not drift',
  pass_error: 'an unexpected error in a pass; retried',
  after_pass_failed: 'the metrics or usage step after a pass failed',
  trigger: 'debug: a change that will cause a pass',
  // Conntrack cleanup, behind the pass.
  conntrack_cleaned: 'a cleanup round ended (targets, removed, durationMs, via ctnetlink)',
  conntrack_cleanup_incomplete: 'a cleanup round could not finish (reason)',
  // Drift.
  drift_detected: 'another tool changed the table: what changed, and who (byPid, byName); once per incident',
  drift_repaired: 'the table was put back (kind, durationMs)',
  drift_repair_failed: 'the table could not be put back; retried',
  drift_checked: 'debug: a check found the kernel as it should be',
  drift_subscribed: 'debug: listening to the kernel’s nf_tables notifications (receiveBuffer)',
  events_lost:
    'kernel change notifications were lost (reason; ownCommit: during a large commit of addrmap’s own); the table is checked once',
  // Start and stop.
  watching: 'the agent follows the mapping and config files',
  stopping: 'the agent stops; the kernel state stays for the next start',
  nft: 'the nft found at start: version, the table shape the kernel accepts',
  kernel_capabilities: 'the kernel rejects part of the table; what is missing',
  cannot_start: 'nft or the kernel cannot run addrmap here (or its notifications cannot be subscribed to); exit 4',
  holding: 'cannot start, and waits to be stopped (ADDRMAP_HOLD_ON_FAILURE=1)',
  already_running: 'another agent watches this table; exit 1',
  handed_over: 'apply gave its pass to the running agent (its outcome)',
  lock_unavailable: 'the one-agent lock cannot be taken; running without it',
  query_socket_failed: 'the query socket cannot be served; status without root reads the state files',
  // State and outputs.
  state_write_failed: 'a state file could not be written; status goes stale, pushes still apply',
  state_dir_untrusted: 'the state directory is not root’s or is a symlink: not used',
  snapshot_unreadable: 'the previous status snapshot could not be read',
  watch_error: 'the file watcher reported an error; the periodic check still runs',
  metrics_listening: 'serving /metrics',
  metrics_listen_failed: 'cannot serve /metrics',
  metrics_write_failed: 'cannot write the metrics file',
  usage_sample_failed: 'cannot sample the per-mapping counters',
} as const;

/** The name of a log event: the logger (logger.ts) takes no other. */
export type LogEvent = keyof typeof LOG_EVENTS;
