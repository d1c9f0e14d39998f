// Where addrmap reads and writes: command-line flags win over environment
// variables, which win over the defaults.
export interface Paths {
  config: string;
  mappings: string;
  stateDir: string;
}

export const DEFAULT_PATHS: Paths = {
  config: '/etc/addrmap/config.json',
  mappings: '/etc/addrmap/mappings.json',
  stateDir: '/run/addrmap',
};

export function resolvePaths(flags: Partial<Paths>, env: NodeJS.ProcessEnv): Paths {
  return {
    // An empty variable counts as unset, as for ADDRMAP_ENABLED.
    config: flags.config || env.ADDRMAP_CONFIG || DEFAULT_PATHS.config,
    mappings: flags.mappings || env.ADDRMAP_MAPPINGS || DEFAULT_PATHS.mappings,
    stateDir: flags.stateDir || env.ADDRMAP_STATE_DIR || DEFAULT_PATHS.stateDir,
  };
}
