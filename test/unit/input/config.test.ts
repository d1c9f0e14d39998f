import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ConfigError, DEFAULT_CONFIG, loadConfig, parseConfig } from '../../../src/input/config.js';
import { DEFAULT_ALLOWED_TARGETS } from '../../../src/input/mapping-file.js';
import { FlagError, readKernelCmdline, resolveFlag } from '../../../src/input/flag.js';
import { DEFAULT_PATHS, resolvePaths } from '../../../src/input/settings.js';
import { tempDir } from '../fakes.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await cleanup();
});

describe('resolvePaths', () => {
  const env = { ADDRMAP_CONFIG: '/env/config.json', ADDRMAP_MAPPINGS: '/env/mappings.json', ADDRMAP_STATE_DIR: '/env/state' };

  test('defaults when neither flags nor environment say anything', () => {
    expect(resolvePaths({}, {})).toEqual(DEFAULT_PATHS);
    expect(DEFAULT_PATHS).toEqual({ config: '/etc/addrmap/config.json', mappings: '/etc/addrmap/mappings.json', stateDir: '/run/addrmap' });
  });

  test('environment beats defaults', () => {
    expect(resolvePaths({}, env)).toEqual({ config: '/env/config.json', mappings: '/env/mappings.json', stateDir: '/env/state' });
  });

  test('flags beat environment', () => {
    expect(resolvePaths({ config: '/flag/c.json', mappings: '/flag/m.json', stateDir: '/flag/s' }, env)).toEqual({
      config: '/flag/c.json',
      mappings: '/flag/m.json',
      stateDir: '/flag/s',
    });
  });

  test('each path is resolved on its own', () => {
    expect(resolvePaths({ mappings: '/flag/m.json' }, { ADDRMAP_STATE_DIR: '/env/state' })).toEqual({
      config: DEFAULT_PATHS.config,
      mappings: '/flag/m.json',
      stateDir: '/env/state',
    });
  });

  test('an undefined flag (as parseArgs gives for an absent option) falls through', () => {
    expect(resolvePaths({ config: undefined, mappings: undefined, stateDir: undefined }, env)).toEqual({
      config: '/env/config.json',
      mappings: '/env/mappings.json',
      stateDir: '/env/state',
    });
  });
});

describe('parseConfig / loadConfig', () => {
  test('a missing file gives the defaults (feature flag unset)', async () => {
    const cfg = await loadConfig(join(dir, 'nope.json'));
    expect(cfg).toEqual({
      enabled: null,
      logLevel: 'info',
      allowedTargets: DEFAULT_ALLOWED_TARGETS,
      metricsFile: '/var/lib/prometheus/node-exporter/addrmap.prom',
      metricsListen: null,
      metricsListenAnyAddress: false,
      usageIntervalSeconds: 30,
      retireAfterSeconds: 604800,
    });
    expect(cfg).toEqual(DEFAULT_CONFIG);
    // A copy, not the shared default object.
    expect(cfg).not.toBe(DEFAULT_CONFIG);
  });

  test('a file with every setting', async () => {
    const path = join(dir, 'config.json');
    await writeFile(path, JSON.stringify({ enabled: true, logLevel: 'debug', allowedTargets: ['fd00::/8', '198.51.100.0/24'] }));
    const cfg = await loadConfig(path);
    expect(cfg).toMatchObject({ enabled: true, logLevel: 'debug' });
    expect(cfg.allowedTargets.map((p) => [p.family, p.text, p.length])).toEqual([
      [6, 'fd00::/8', 8],
      [4, '198.51.100.0/24', 24],
    ]);
  });

  test('an empty object is the defaults', () => {
    expect(parseConfig('{}')).toEqual(DEFAULT_CONFIG);
  });

  test('enabled: false is kept (it is not the same as unset)', () => {
    expect(parseConfig('{"enabled": false}').enabled).toBe(false);
  });

  test('an unknown key is refused, naming the key and the file', () => {
    // The file and the known settings are named; the unknown key (the file's bytes) is not quoted.
    expect(() => parseConfig('{"enable": true}', '/etc/addrmap/config.json')).toThrow(
      new ConfigError(
        '/etc/addrmap/config.json: an unknown setting (known: enabled, logLevel, allowedTargets, metricsFile, metricsListen, metricsListenAnyAddress, usageIntervalSeconds, retireAfterSeconds)',
      ),
    );
    expect(() => parseConfig('{"zqSecretKey": true}', 'cfg')).toThrow(/^cfg: an unknown setting \(known: /);
    expect(() => parseConfig('{"zqSecretKey": true}', 'cfg')).not.toThrow(/zqSecretKey/);
  });

  test.each([
    ['"enabled" must be a boolean', '{"enabled": "true"}', /"enabled" must be true or false/],
    ['"enabled" must not be 1', '{"enabled": 1}', /"enabled" must be true or false/],
    ['"enabled" must not be null', '{"enabled": null}', /"enabled" must be true or false/],
    ['"logLevel" must be a known level', '{"logLevel": "verbose"}', /"logLevel" must be one of fatal, error, warn, info, debug, trace/],
    ['invalid JSON', '{enabled: true}', /^cfg: invalid JSON at line 1 column 2: expected a field name in double quotes$/],
    ['an array', '[]', /must be a JSON object/],
    ['null', 'null', /must be a JSON object/],
  ])('%s', (_name, text, message) => {
    expect(() => parseConfig(text, 'cfg')).toThrow(ConfigError);
    expect(() => parseConfig(text, 'cfg')).toThrow(message);
    expect(() => parseConfig(text, 'cfg')).toThrow(/^cfg: /);
  });

  test('a path that is not a regular file (a directory) is a ConfigError, not the defaults', async () => {
    const path = join(dir, 'config.json');
    await mkdir(path);
    await expect(loadConfig(path)).rejects.toThrow(ConfigError);
    await expect(loadConfig(path)).rejects.toThrow(/^config refused: .*not a regular file/);
  });

  test('a config file writable by others is refused', async () => {
    const path = join(dir, 'config.json');
    await writeFile(path, '{"enabled": true}');
    await chmod(path, 0o666);
    await expect(loadConfig(path)).rejects.toThrow(/^config refused: .*writable by group or others \(mode 0666\)/);
  });

  test('allowedTargets: an empty list is kept (nothing allowed)', () => {
    expect(parseConfig('{"allowedTargets": []}').allowedTargets).toEqual([]);
  });

  test('allowedTargets: the prefix is canonicalised', () => {
    expect(parseConfig('{"allowedTargets": ["FD00:0::/8"]}').allowedTargets.map((p) => p.text)).toEqual(['fd00::/8']);
  });

  test.each([
    ['not a list', '{"allowedTargets": "fc00::/7"}', /"allowedTargets" must be a list of prefixes/],
    ['a non-string entry', '{"allowedTargets": [7]}', /"allowedTargets" must be a list of prefixes/],
    ['an address without a length', '{"allowedTargets": ["fc00::"]}', /^cfg: allowedTargets: not a prefix \(address\/length\)$/],
    ['host bits set', '{"allowedTargets": ["10.1.2.3/8"]}', /allowedTargets: .*host bits are set/],
    ['a length over 128', '{"allowedTargets": ["fc00::/129"]}', /length 129 is over 128/],
    ['a length over 32', '{"allowedTargets": ["10.0.0.0/33"]}', /length 33 is over 32/],
    ['a bad address', '{"allowedTargets": ["fg00::/7"]}', /not a valid IPv6 prefix/],
  ])('allowedTargets: %s is refused', (_name, text, message) => {
    expect(() => parseConfig(text, 'cfg')).toThrow(ConfigError);
    expect(() => parseConfig(text, 'cfg')).toThrow(message);
  });

  // Refusals quote nothing of the file: the prefix itself is not in the message.
  test.each([
    ['an address without a length', 'fc00::'],
    ['host bits set', '10.1.2.3/8'],
    ['a bad address', 'fg00::/7'],
    ['a planted string', 'zqsecret::/7'],
  ])('allowedTargets: %s is refused without quoting the prefix', (_name, prefix) => {
    let message = '';
    try {
      parseConfig(JSON.stringify({ allowedTargets: [prefix] }), 'cfg');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      message = (e as Error).message;
    }
    expect(message).toMatch(/^cfg: allowedTargets: /);
    expect(message).not.toContain(prefix);
  });

  test('a duplicate key is refused (the first "enabled" must not be silently overridden)', () => {
    expect(() => parseConfig('{"enabled": false, "enabled": true}', 'cfg')).toThrow(
      new ConfigError('cfg: invalid JSON: a field appears twice in one object (the second at line 1 column 20)'),
    );
    expect(() => parseConfig('{"zqDup": 1, "zqDup": 2}', 'cfg')).not.toThrow(/zqDup/);
    expect(() => parseConfig('{"zqDup": 1, "zqDup": 2}', 'cfg')).toThrow(/^cfg: invalid JSON: a field appears twice/);
  });
});

describe('resolveFlag', () => {
  test('default is off', () => {
    expect(resolveFlag({}, '', null)).toEqual({ enabled: false, source: 'default' });
  });

  test('config file when nothing more specific says anything', () => {
    expect(resolveFlag({}, 'root=/dev/vda1 quiet', true)).toEqual({ enabled: true, source: 'config file' });
    expect(resolveFlag({}, 'root=/dev/vda1 quiet', false)).toEqual({ enabled: false, source: 'config file' });
  });

  test('kernel command line beats config', () => {
    expect(resolveFlag({}, 'root=/dev/vda1 addrmap.enabled=0 quiet\n', true)).toEqual({ enabled: false, source: 'kernel command line' });
    expect(resolveFlag({}, 'addrmap.enabled=1', false)).toEqual({ enabled: true, source: 'kernel command line' });
  });

  test('environment beats kernel command line and config', () => {
    expect(resolveFlag({ ADDRMAP_ENABLED: '0' }, 'addrmap.enabled=1', true)).toEqual({ enabled: false, source: 'environment' });
    expect(resolveFlag({ ADDRMAP_ENABLED: '1' }, 'addrmap.enabled=0', false)).toEqual({ enabled: true, source: 'environment' });
  });

  test('an empty environment variable counts as unset', () => {
    expect(resolveFlag({ ADDRMAP_ENABLED: '' }, 'addrmap.enabled=1', false)).toEqual({ enabled: true, source: 'kernel command line' });
  });

  test.each([
    ['1', true],
    ['true', true],
    ['0', false],
    ['false', false],
  ])('value %s is %s in both places', (v, enabled) => {
    expect(resolveFlag({ ADDRMAP_ENABLED: v }, '', null).enabled).toBe(enabled);
    expect(resolveFlag({}, `addrmap.enabled=${v}`, null).enabled).toBe(enabled);
  });

  test('the last occurrence on the kernel command line wins, as in the kernel', () => {
    expect(resolveFlag({}, 'addrmap.enabled=1 ro addrmap.enabled=0', null)).toEqual({ enabled: false, source: 'kernel command line' });
    expect(resolveFlag({}, 'addrmap.enabled=0 addrmap.enabled=1\n', null)).toEqual({ enabled: true, source: 'kernel command line' });
  });

  test('parameters that merely contain the name are not the flag', () => {
    expect(resolveFlag({}, 'xaddrmap.enabled=1 addrmap.enabledx=1', true)).toEqual({ enabled: true, source: 'config file' });
    expect(resolveFlag({}, 'foo.addrmap.enabled=0', null)).toEqual({ enabled: false, source: 'default' });
  });

  test.each<[string, boolean | null]>([
    // The kernel's own boolean spellings (kstrtobool), and a bare name is on.
    ['addrmap.enabled=y', true],
    ['addrmap.enabled=Y', true],
    ['addrmap.enabled=on', true],
    ['addrmap.enabled=yes', true],
    ['addrmap.enabled=true', true],
    ['addrmap.enabled=n', false],
    ['addrmap.enabled=off', false],
    ['addrmap.enabled=no', false],
    ['addrmap.enabled', true],
    // Quotes around the value or the whole parameter are the kernel's, not the value's.
    ['addrmap.enabled="1"', true],
    ['"addrmap.enabled=0"', false],
    ['root=/dev/vda1 "addrmap.enabled=1" quiet', true],
    // A quoted value may hold spaces; the parameter after it still counts.
    ['foo="a b addrmap.enabled=0" addrmap.enabled=1', true],
    // After "--" the arguments are init's, not the kernel's.
    ['addrmap.enabled=1 -- addrmap.enabled=0', true],
    ['quiet -- addrmap.enabled=1', null],
  ])('the kernel command line %j reads as the kernel reads it', (cmdline, enabled) => {
    expect(resolveFlag({}, cmdline, null)).toEqual(
      enabled === null ? { enabled: false, source: 'default' } : { enabled, source: 'kernel command line' },
    );
  });

  test('tabs and newlines separate parameters', () => {
    expect(resolveFlag({}, 'ro\taddrmap.enabled=1\n', null)).toEqual({ enabled: true, source: 'kernel command line' });
  });

  test.each(['yes', 'on', 'TRUE', '2', ' 1'])('environment value %j is refused with a clear error', (v) => {
    expect(() => resolveFlag({ ADDRMAP_ENABLED: v }, 'addrmap.enabled=1', true)).toThrow(FlagError);
    expect(() => resolveFlag({ ADDRMAP_ENABLED: v }, '', null)).toThrow(
      `ADDRMAP_ENABLED must be 1 or 0 (or true/false), not ${JSON.stringify(v)}`,
    );
  });

  test.each(['', '2', 'maybe', '""'])('kernel command line value %j is refused with a clear error', (v) => {
    const value = v === '""' ? '' : v;
    expect(() => resolveFlag({}, `ro addrmap.enabled=${v} quiet`, true)).toThrow(
      new FlagError(`addrmap.enabled on the kernel command line must be 1 or 0 (or y/n, on/off, true/false), not ${JSON.stringify(value)}`),
    );
  });

  test('an invalid kernel command line value is not checked when the environment decides', () => {
    expect(resolveFlag({ ADDRMAP_ENABLED: '1' }, 'addrmap.enabled=maybe', null)).toEqual({ enabled: true, source: 'environment' });
  });
});

describe('readKernelCmdline', () => {
  test('reads the file named by ADDRMAP_CMDLINE_FILE', async () => {
    const path = join(dir, 'cmdline');
    await writeFile(path, 'root=/dev/vda1 addrmap.enabled=1\n');
    expect(await readKernelCmdline({ ADDRMAP_CMDLINE_FILE: path })).toBe('root=/dev/vda1 addrmap.enabled=1\n');
  });

  test('an unreadable file reads as an empty command line', async () => {
    expect(await readKernelCmdline({ ADDRMAP_CMDLINE_FILE: join(dir, 'missing') })).toBe('');
  });
});

describe('metricsListen', () => {
  const load = async (doc: unknown) => {
    const f = join(dir, `metrics-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(f, JSON.stringify(doc), { mode: 0o644 });
    return loadConfig(f);
  };

  test.each(['127.0.0.1:9851', '[::1]:9851', 'localhost:9851', '127.1.2.3:1', '[0:0:0:0:0:0:0:1]:65535'])(
    'accepts the loopback address %s',
    async (v) => {
      expect((await load({ metricsListen: v })).metricsListen).toBe(v);
    },
  );

  test.each(['0.0.0.0:9851', '[::]:9851', '192.0.2.1:9851', '[fd00::1]:9851'])(
    'refuses %s, reachable from other hosts, unless metricsListenAnyAddress',
    async (v) => {
      await expect(load({ metricsListen: v })).rejects.toThrow(/is reachable from other hosts and \/metrics lists every mapping/);
      expect((await load({ metricsListen: v, metricsListenAnyAddress: true })).metricsListen).toBe(v);
    },
  );

  test.each([
    '127.0.0.1:0',
    '127.0.0.1:65536',
    '127.0.0.1:99999',
    '999.0.0.1:9851',
    '[::g]:1',
    'example.org:9851',
    '127.0.0.1',
    ':9851',
    '[::1]:9851x',
    '127.0.0.1:09851x',
  ])('refuses the malformed %s', async (v) => {
    await expect(load({ metricsListen: v })).rejects.toThrow(/"metricsListen" must be host:port/);
  });
});
