import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { Prefix } from '../../../src/net/prefix.js';
import {
  DEFAULT_ALLOWED_TARGETS,
  MappingFileError,
  nextExpiry,
  parseMappingFile,
  splitExpired,
  type MappingFile,
  type ParseOptions,
} from '../../../src/input/mapping-file.js';
import { mappingFileText } from '../fakes.js';

/** The default ULA range plus the IPv4 test ranges, as a config's allowedTargets would set it. */
const WITH_V4: ParseOptions = { allowedTargets: [...DEFAULT_ALLOWED_TARGETS, Prefix.parse('10.0.0.0/8')] };

/** Parses a document (object or raw text) and returns the refusal, failing the test if it was accepted. */
function refusal(doc: unknown, options: ParseOptions = WITH_V4): MappingFileError {
  const text = typeof doc === 'string' ? doc : JSON.stringify(doc);
  let parsed: MappingFile;
  try {
    parsed = parseMappingFile(text, options);
  } catch (e) {
    expect(e).toBeInstanceOf(MappingFileError);
    const err = e as MappingFileError;
    // The message always carries the entry (when there is one) and the reason.
    expect(err.message).toBe(err.entry ? `${err.entry}: ${err.reason}` : err.reason);
    return err;
  }
  return expect.unreachable(`expected a refusal, but the file was accepted as ${JSON.stringify(parsed)}`);
}

const file = (mappings: unknown[], extra: Record<string, unknown> = {}) => ({ version: 1, generation: 7, mappings, ...extra });
const one = (from: unknown, to: unknown) => file([{ from, to }]);

describe('parseMappingFile: accepted files', () => {
  test('a valid file parses into canonical mappings in file order', () => {
    const parsed = parseMappingFile(
      JSON.stringify({
        version: 1,
        generation: 42,
        mappings: [
          { from: 'fd00:1::10', to: 'fdaa::10', comment: 'db primary' },
          { from: '10.1.0.5', to: '10.2.0.5' },
          { from: 'fd00:1::11', to: 'fdaa::11' },
        ],
      }),
      WITH_V4,
    );
    expect(parsed).toEqual<MappingFile>({
      generation: 42,
      mappings: [
        { family: 6, from: 'fd00:1::10', to: 'fdaa::10' },
        { family: 4, from: '10.1.0.5', to: '10.2.0.5' },
        { family: 6, from: 'fd00:1::11', to: 'fdaa::11' },
      ],
    });
  });

  test('an empty mapping list and generation 0 are valid', () => {
    expect(parseMappingFile(JSON.stringify({ version: 1, generation: 0, mappings: [] }))).toEqual({ generation: 0, mappings: [] });
  });

  test('the largest safe integer is a valid generation', () => {
    expect(parseMappingFile(JSON.stringify({ version: 1, generation: Number.MAX_SAFE_INTEGER, mappings: [] })).generation).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });

  test.each([
    ['upper case', 'FD00:1::A', 'FDAA::B'],
    ['leading zeros', 'fd00:0001::000a', 'fdaa:0000::000b'],
    ['fully expanded', 'fd00:0001:0000:0000:0000:0000:0000:000a', 'fdaa:0000:0000:0000:0000:0000:0000:000b'],
    ['expanded without zeros compressed', 'fd00:1:0:0:0:0:0:a', 'fdaa:0:0:0:0:0:0:b'],
    ['mixed case, leading zeros and compression', 'Fd00:01:0::0A', 'FdAa::0:000B'],
  ])('IPv6 written in %s canonicalises to RFC 5952 form', (_name, from, to) => {
    expect(parseMappingFile(mappingFileText(1, [[from, to]])).mappings).toEqual([{ family: 6, from: 'fd00:1::a', to: 'fdaa::b' }]);
  });

  test('RFC 5952: the longest run of zero groups is compressed, a single zero group is not', () => {
    const parsed = parseMappingFile(mappingFileText(1, [['fd00:0:0:1:0:0:0:1', 'fd00:0:1:1:1:1:1:1']]));
    expect(parsed.mappings).toEqual([{ family: 6, from: 'fd00:0:0:1::1', to: 'fd00:0:1:1:1:1:1:1' }]);
  });

  test('the same address in different spellings compares equal: an exact repeat in another spelling is de-duplicated', () => {
    const parsed = parseMappingFile(
      mappingFileText(3, [
        ['fd00::1', 'fdaa::1'],
        ['FD00:0:0:0:0:0:0:0001', 'FDAA::0001'],
        ['fd00:0000::1', 'fdaa:0::1'],
      ]),
    );
    expect(parsed.mappings).toEqual([{ family: 6, from: 'fd00::1', to: 'fdaa::1' }]);
  });

  test('an exact repeat is accepted and de-duplicated, keeping the first position', () => {
    const parsed = parseMappingFile(
      mappingFileText(1, [
        ['10.0.0.1', '10.9.0.1'],
        ['10.0.0.2', '10.9.0.2'],
        ['10.0.0.1', '10.9.0.1'],
      ]),
      WITH_V4,
    );
    expect(parsed.mappings.map((m) => m.from)).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  test('two stale addresses may share one target', () => {
    const parsed = parseMappingFile(
      mappingFileText(1, [
        ['fd00::1', 'fdaa::1'],
        ['fd00::2', 'fdaa::1'],
      ]),
    );
    expect(parsed.mappings).toHaveLength(2);
  });

  test('the comment field is allowed and ignored', () => {
    const parsed = parseMappingFile(JSON.stringify(file([{ from: 'fd00::1', to: 'fdaa::1', comment: 'moved to rack 7' }])));
    expect(parsed.mappings).toEqual([{ family: 6, from: 'fd00::1', to: 'fdaa::1' }]);
  });
});

describe('parseMappingFile: refusals name the offending entry', () => {
  test('invalid JSON', () => {
    const err = refusal('{"version": 1, "generation": 1, "mappings": [');
    expect(err.entry).toBeNull();
    // Our own words and position, never V8's message (which quotes the text).
    expect(err.reason).toBe('invalid JSON at line 1 column 46: the text ends where a value should be');
  });

  test('empty text is invalid JSON', () => {
    expect(refusal('').reason).toBe('invalid JSON at line 1 column 1: the text ends where a value should be');
  });

  test.each([
    ['an array', '[]'],
    ['null', 'null'],
    ['a number', '1'],
    ['a string', '"fd00::1"'],
  ])('a document that is %s is refused', (_name, text) => {
    const err = refusal(text);
    expect(err.entry).toBeNull();
    expect(err.reason).toMatch(/object/);
  });

  test.each([
    ['2', 2],
    ['"1" (a string)', '1'],
    ['0', 0],
    ['null', null],
    ['1.5', 1.5],
  ])('unknown version %s is reported as a version problem', (_name, version) => {
    const err = refusal({ version, generation: 1, mappings: [] });
    expect(err.entry).toBe('version');
    // A safe integer is ours to print; anything else is the file's bytes and is only described.
    const shown = typeof version === 'number' && Number.isSafeInteger(version) ? ` ${version}` : ' (not a whole number)';
    expect(err.reason).toBe(`unsupported version${shown}; this addrmap reads version 1`);
    expect(err.message).toMatch(/^version: unsupported version/);
    if (shown === ' (not a whole number)') expect(err.message).not.toContain(JSON.stringify(version));
  });

  test('a newer version is reported as such even when it has fields v1 does not know', () => {
    const err = refusal({ version: 2, generation: 1, mappings: [], signatures: [] });
    expect(err.entry).toBe('version');
    expect(err.reason).toContain('unsupported version 2');
  });

  test.each(['version', 'generation', 'mappings'])('missing top-level field %s is named', (field) => {
    const doc: Record<string, unknown> = { version: 1, generation: 1, mappings: [] };
    delete doc[field];
    const err = refusal(doc);
    // The missing field itself is the entry, so status can show it.
    expect(err.entry).toBe(field);
    expect(err.reason).toBe(`missing field "${field}"`);
  });

  test('an unknown top-level field is named', () => {
    const err = refusal(file([], { enabled: true }));
    // Named by what is allowed there, not by the unknown name (the file's bytes).
    expect(err.reason).toBe('an unknown field (allowed here: version, generation, mappings, self)');
    expect(err.message).not.toContain('enabled');
  });

  test.each([
    ['from', { to: 'fdaa::1' }],
    ['to', { from: 'fd00::1' }],
  ])('missing %s in a mapping names the mapping and the field', (field, m) => {
    const err = refusal(file([{ from: 'fd00::9', to: 'fdaa::9' }, m]));
    expect(err.entry).toBe('mappings[1]');
    expect(err.reason).toBe(`missing field "${field}"`);
    expect(err.message).toBe(`mappings[1]: missing field "${field}"`);
  });

  test('an unknown field in a mapping names the mapping and the field', () => {
    const err = refusal(
      file([
        { from: 'fd00::1', to: 'fdaa::1' },
        { from: 'fd00::2', to: 'fdaa::2' },
        { from: 'fd00::3', too: 'fdaa::3', to: 'fdaa::3' },
      ]),
    );
    expect(err.entry).toBe('mappings[2]');
    expect(err.reason).toBe('an unknown field (allowed here: from, to, comment, expires)');
    expect(err.message).not.toContain('too');
  });

  test('a mapping that is not an object is named', () => {
    const err = refusal(file([{ from: 'fd00::1', to: 'fdaa::1' }, 'fd00::2 fdaa::2']));
    expect(err.entry).toBe('mappings[1]');
  });

  test('a non-string address names the field', () => {
    const err = refusal(
      file([
        { from: 'fd00::1', to: 'fdaa::1' },
        { from: 42, to: 'fdaa::2' },
      ]),
    );
    expect(err.entry).toBe('mappings[1].from');
    expect(err.reason).toMatch(/string/);
  });

  test('mappings that are not an array', () => {
    const err = refusal({ version: 1, generation: 1, mappings: { 'fd00::1': 'fdaa::1' } });
    expect(err.entry).toBe('mappings');
    expect(err.reason).toMatch(/array/);
  });

  test('an over-long comment names the comment', () => {
    const err = refusal(file([{ from: 'fd00::1', to: 'fdaa::1', comment: 'x'.repeat(257) }]));
    expect(err.entry).toBe('mappings[0].comment');
  });

  test.each([
    ['negative', -1, /must be >= 0/],
    ['non-integer', 1.5, /must be integer/],
    ['string', '3', /must be integer/],
    ['null', null, /must be integer/],
    ['too large (2^53)', 2 ** 53, /must be <=/],
  ])('a %s generation is refused', (_name, generation, reason) => {
    const err = refusal({ version: 1, generation, mappings: [] });
    expect(err.entry).toBe('generation');
    expect(err.reason).toMatch(reason);
    expect(err.message).toMatch(/^generation: /);
  });

  test.each([
    ['an invalid IPv6 address', 'fd00::1::2', /not a valid IPv6 address/],
    ['an invalid IPv4 address', '10.0.0.256', /not a valid IPv4 address/],
    ['a short IPv4 address', '10.1', /not a valid IPv4 address/],
    ['a host name', 'db.example.com', /not a valid IP address/],
    ['an empty string', '', /empty address/],
    ['an over-long address', 'f'.repeat(65), /too long|must NOT have more than 64/],
    ['a bracketed address', '[fd00::1]', /not a valid IPv6 address/],
    ['an address with a port', '[fd00::1]:80', /not a valid IPv6 address/],
    [
      'an IPv4 address with leading zeros (ambiguous: octal to inet_aton)',
      '010.0.0.1',
      /^from: not a valid IPv4 address: leading zeros \(some parsers read them as octal\)$/,
    ],
  ])('%s is refused and named', (_name, bad, reason) => {
    const err = refusal(
      file([
        { from: 'fd00::1', to: 'fdaa::1' },
        { from: 'fd00::2', to: 'fdaa::2' },
        { from: bad, to: 'fdaa::3' },
      ]),
    );
    expect(err.entry).toMatch(/^mappings\[2\]/);
    expect(err.reason).toMatch(reason);
    if (bad) expect(err.message).not.toContain(bad);
  });

  test('an invalid to address names the entry, the field and the value', () => {
    const err = refusal(file([{ from: 'fd00::1', to: 'fdaa::zz' }]));
    expect(err.entry).toBe('mappings[0]');
    // The field and the reason; the value itself is not quoted.
    expect(err.reason).toBe('to: not a valid IPv6 address');
    expect(err.message).not.toContain('fdaa::zz');
    expect(err.message).not.toContain('zz');
  });

  test.each([
    ['identical text', 'fd00::1', 'fd00::1', 'fd00::1'],
    ['different spellings of the same IPv6 address', 'fd00::1', 'FD00:0:0:0:0:0:0:0001', 'fd00::1'],
    ['IPv4', '10.0.0.1', '10.0.0.1', '10.0.0.1'],
  ])('from equal to (%s) is refused', (_name, from, to, canonical) => {
    const err = refusal(
      file([
        { from: 'fd00::9', to: 'fdaa::9' },
        { from, to },
      ]),
    );
    expect(err.entry).toBe('mappings[1]');
    expect(err.reason).toBe(`from and to are the same address (${canonical})`);
  });

  test('the same from twice with different targets names the second entry and the first', () => {
    const err = refusal(
      file([
        { from: 'fd00::1', to: 'fdaa::1' },
        { from: 'fd00::2', to: 'fdaa::2' },
        { from: 'fd00::1', to: 'fdaa::3' },
      ]),
    );
    expect(err.entry).toBe('mappings[2]');
    expect(err.reason).toBe('from fd00::1 is already mapped to fdaa::1 by mappings[0], here to fdaa::3');
  });

  test('the same from twice, spelt differently, with different targets is a conflict', () => {
    const err = refusal(
      file([
        { from: 'fd00::1', to: 'fdaa::1' },
        { from: 'FD00:0::0001', to: 'fdaa::2' },
      ]),
    );
    expect(err.entry).toBe('mappings[1]');
    expect(err.reason).toContain('already mapped to fdaa::1 by mappings[0]');
  });

  test.each([
    ['IPv6 to IPv4', 'fd00::1', '10.0.0.1', /from fd00::1 is IPv6, to 10\.0\.0\.1 is IPv4/],
    ['IPv4 to IPv6', '10.0.0.1', 'fd00::1', /from 10\.0\.0\.1 is IPv4, to fd00::1 is IPv6/],
  ])('mixed families (%s) are refused', (_name, from, to, reason) => {
    const err = refusal(
      file([
        { from: 'fd00::9', to: 'fdaa::9' },
        { from, to },
      ]),
    );
    expect(err.entry).toBe('mappings[1]');
    expect(err.reason).toMatch(/mixes address families/);
    expect(err.reason).toMatch(reason);
  });

  test.each([
    ['from', { from: 'fe80::1%eth0', to: 'fdaa::1' }, 'fe80::1%eth0', '%eth0'],
    ['to', { from: 'fd00::1', to: 'fdaa::1%2' }, 'fdaa::1%2', '%2'],
  ])('a zone id in %s is refused', (field, m, value, zone) => {
    const err = refusal(file([m]));
    expect(err.entry).toBe('mappings[0]');
    expect(err.reason).toBe(`${field}: zone ids are not allowed`);
    expect(err.message).not.toContain(value);
    expect(err.message).not.toContain(zone);
  });

  test.each(['fd00::1/128', 'fd00::/64', '10.0.0.1/32', '10.0.0.0/8'])('a prefix %s is refused', (p) => {
    const err = refusal(file([{ from: p, to: p.includes(':') ? 'fdaa::1' : '10.9.9.9' }]));
    expect(err.entry).toBe('mappings[0]');
    expect(err.reason).toMatch(/is a prefix but (to|from) is an address/);
  });

  test.each(['::ffff:10.0.0.1', '::FFFF:192.0.2.1'])('IPv4-mapped %s (dotted form) is refused', (a) => {
    const err = refusal(file([{ from: a, to: 'fdaa::1' }]));
    expect(err.entry).toBe('mappings[0]');
    expect(err.reason).toMatch(/IPv4-mapped/);
  });

  test.each([
    ['loopback', '::1', /loopback/],
    ['loopback, expanded', '0:0:0:0:0:0:0:1', /loopback/],
    ['loopback', '127.0.0.1', /loopback/],
    ['loopback', '127.255.0.1', /loopback/],
    ['multicast', 'ff02::1', /multicast/],
    ['multicast', 'ff0e::1234', /multicast/],
    ['multicast', '224.0.0.1', /multicast/],
    ['multicast', '239.255.255.250', /multicast/],
    ['broadcast', '255.255.255.255', /multicast or reserved/],
    ['link-local', 'fe80::1', /link-local/],
    ['link-local (fe80::/10)', 'febf::1', /link-local/],
    ['link-local', '169.254.10.1', /link-local/],
    ['unspecified', '::', /unspecified/],
    ['unspecified', '0:0:0:0:0:0:0:0', /unspecified/],
    ['unspecified', '0.0.0.0', /unspecified/],
    ['"this network"', '0.1.2.3', /unspecified/],
  ])('a %s address (%s) is refused as from and as to', (_kind, a, reason) => {
    const v6 = a.includes(':');
    const fromErr = refusal(file([{ from: a, to: v6 ? 'fdaa::1' : '10.9.9.9' }]));
    expect(fromErr.entry).toBe('mappings[0]');
    expect(fromErr.reason).toMatch(/^from: /);
    expect(fromErr.reason).toMatch(reason);
    const toErr = refusal(file([{ from: v6 ? 'fd00::1' : '10.8.8.8', to: a }]));
    expect(toErr.entry).toBe('mappings[0]');
    expect(toErr.reason).toMatch(/^to: /);
    expect(toErr.reason).toMatch(reason);
  });

  test.each([' fd00::1', 'fd00::1 ', 'fd00:: 1', 'fd00::1\n', '\t10.0.0.1', '10.0.0.1\u00a0'])('white space in %j is refused', (a) => {
    const err = refusal(file([{ from: a, to: a.includes(':') ? 'fdaa::1' : '10.9.9.9' }]));
    expect(err.entry).toBe('mappings[0]');
    expect(err.reason).toMatch(/white space/);
  });

  test('the first offending entry is the one reported', () => {
    const err = refusal(
      file([
        { from: 'fd00::1', to: 'fdaa::1' },
        { from: '::1', to: 'fdaa::2' },
        { from: 'bogus', to: 'fdaa::3' },
      ]),
    );
    expect(err.entry).toBe('mappings[1]');
  });
});

describe('parseMappingFile: allowed target ranges', () => {
  test('by default only IPv6 ULA targets (fc00::/7) are allowed', () => {
    expect(DEFAULT_ALLOWED_TARGETS.map((p) => p.text)).toEqual(['fc00::/7']);
    expect(
      parseMappingFile(
        mappingFileText(1, [
          ['2001:db8::1', 'fc00::1'],
          ['2001:db8::2', 'fdff:ffff::1'],
        ]),
      ).mappings,
    ).toHaveLength(2);
  });

  test.each([
    [
      'a global IPv6 target',
      '2001:db8::1',
      'fd00::1',
      /^to 2001:db8::1 is outside the allowed target ranges \(fc00::\/7\); see allowedTargets in the config file$/,
    ],
    ['an IPv6 target just below fc00::/7', 'fbff:ffff::1', 'fd00::1', /outside the allowed target ranges/],
    ['an IPv4 target', '10.9.0.1', '10.0.0.1', /^to 10\.9\.0\.1 is outside the allowed target ranges \(fc00::\/7\)/],
  ])('%s is refused by default, naming the entry', (_name, to, from, reason) => {
    const err = refusal(
      file([
        { from: 'fd00::9', to: 'fdaa::9' },
        { from, to },
      ]),
      { allowedTargets: DEFAULT_ALLOWED_TARGETS },
    );
    expect(err.entry).toBe('mappings[1]');
    expect(err.reason).toMatch(reason);
  });

  test('the stale (from) address is not restricted', () => {
    expect(parseMappingFile(mappingFileText(1, [['2001:db8::5', 'fdaa::5']])).mappings).toEqual([
      { family: 6, from: '2001:db8::5', to: 'fdaa::5' },
    ]);
  });

  test('configured ranges replace the default', () => {
    const options = { allowedTargets: [Prefix.parse('198.51.100.0/24'), Prefix.parse('2001:db8:1::/48')] };
    expect(
      parseMappingFile(
        mappingFileText(1, [
          ['10.0.0.1', '198.51.100.7'],
          ['fd00::1', '2001:db8:1:ffff::1'],
        ]),
        options,
      ).mappings,
    ).toHaveLength(2);
    expect(refusal(mappingFileText(1, [['10.0.0.1', '198.51.101.7']]), options).reason).toMatch(
      /outside the allowed target ranges \(198\.51\.100\.0\/24, 2001:db8:1::\/48\)/,
    );
    expect(refusal(mappingFileText(1, [['fd00::1', 'fdaa::1']]), options).reason).toMatch(/outside/);
  });

  test('an empty list allows no target at all', () => {
    expect(refusal(mappingFileText(1, [['fd00::1', 'fdaa::1']]), { allowedTargets: [] }).reason).toMatch(
      /outside the allowed target ranges \(none\)/,
    );
  });

  test('every hop of a chain is a target and must be allowed', () => {
    const options = { allowedTargets: [Prefix.parse('fdaa::/16')] };
    const err = refusal(
      mappingFileText(1, [
        ['fd00::a', 'fdbb::1'],
        ['fdbb::1', 'fdaa::1'],
      ]),
      options,
    );
    expect(err.entry).toBe('mappings[0]');
  });
});

describe('parseMappingFile: strict JSON', () => {
  test('a duplicate top-level key is refused instead of silently taking the last', () => {
    const err = refusal('{"version": 1, "generation": 9, "generation": 1, "mappings": []}');
    expect(err.entry).toBeNull();
    // Where the second one is, not which key (the key is the file's bytes).
    expect(err.reason).toBe('invalid JSON: a field appears twice in one object (the second at line 1 column 33)');
    expect(err.message).not.toContain('generation');
  });

  test('a duplicate key inside a mapping is refused', () => {
    const err = refusal('{"version": 1, "generation": 1, "mappings": [{"from": "fd00::1", "to": "fdaa::1", "to": "fdaa::2"}]}');
    expect(err.reason).toBe('invalid JSON: a field appears twice in one object (the second at line 1 column 83)');
    expect(err.message).not.toContain('"to"');
    expect(err.message).not.toContain('fdaa::2');
  });

  test('the same key in different objects is fine', () => {
    const text =
      '{"version": 1, "generation": 1, "mappings": [{"from": "fd00::1", "to": "fdaa::1"}, {"from": "fd00::2", "to": "fdaa::2"}]}';
    expect(parseMappingFile(text).mappings).toHaveLength(2);
  });

  test('keys that are equal only after unescaping are duplicates', () => {
    const err = refusal('{"version": 1, "generation": 1, "mappings": [], "\\u0076ersion": 1}');
    expect(err.reason).toBe('invalid JSON: a field appears twice in one object (the second at line 1 column 49)');
    expect(err.message).not.toContain('version');
    expect(err.message).not.toContain('\\u0076');
  });

  test('strings that look like keys inside values are not keys', () => {
    const text =
      '{"version": 1, "generation": 1, "mappings": [{"from": "fd00::1", "to": "fdaa::1", "comment": "from, to, \\"from\\": x"}]}';
    expect(parseMappingFile(text).mappings).toHaveLength(1);
  });

  test('absurd nesting is refused without exhausting the stack', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const err = refusal(`{"version": 1, "generation": 1, "mappings": ${deep}}`);
    expect(err.reason).toMatch(/nested more than \d+ levels deep/);
  });
});

describe('refusals quote nothing of the file', () => {
  // A mapping file may be a hard link to a secret, and a refusal is shown in
  // world-readable status: no refusal may carry the file's bytes. The strings
  // planted here start with "zq", which no message of ours contains, so any
  // occurrence in a refusal (entry or reason) was copied from the file.
  const ALNUM = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'];
  const planted = fc.string({ unit: fc.constantFrom(...ALNUM), minLength: 4, maxLength: 10 }).map((t) => `zq${t}`);
  const VALID = JSON.stringify(file([{ from: 'fd00::1', to: 'fdaa::1' }]));

  const contexts: [string, (s: string) => string][] = [
    [
      'from',
      (s) =>
        JSON.stringify(
          file([
            { from: 'fd00::9', to: 'fdaa::9' },
            { from: s, to: 'fdaa::1' },
          ]),
        ),
    ],
    ['to', (s) => JSON.stringify(file([{ from: 'fd00::1', to: s }]))],
    ['from, in an IPv6-looking address', (s) => JSON.stringify(one(`fd00::${s}`, 'fdaa::1'))],
    ['from, in an IPv4-looking address', (s) => JSON.stringify(one(`10.0.0.${s}`, '10.9.9.9'))],
    ['from, as a zone id', (s) => JSON.stringify(one(`fe80::1%${s}`, 'fdaa::1'))],
    ['from, in a prefix', (s) => JSON.stringify(one(`fd00:${s}::/64`, 'fdaa::/64'))],
    ['a self address', (s) => JSON.stringify(file([], { self: [{ from: s, to: 'fdaa::78' }] }))],
    ['an unknown field name in a mapping', (s) => JSON.stringify(file([{ from: 'fd00::1', to: 'fdaa::1', [s]: 'x' }]))],
    ['an unknown field name at the top level', (s) => JSON.stringify(file([{ from: 'fd00::1', to: 'fdaa::1' }], { [s]: true }))],
    ['a duplicate key at the top level', (s) => `{"version":1,"generation":7,"mappings":[],"${s}":1,"${s}":2}`],
    [
      'a duplicate key in a mapping',
      (s) => `{"version":1,"generation":7,"mappings":[{"from":"fd00::1","${s}":"a","to":"fdaa::1","${s}":"b"}]}`,
    ],
    ['garbage after valid JSON', (s) => `${VALID} ${s}`],
    ['garbage on a line after valid JSON', (s) => `${VALID}\n${s}\n`],
    ['a bare word in place of a value', (s) => `{"version":1,"generation":${s},"mappings":[]}`],
    ['a string that never ends', (s) => `{"version":1,"generation":7,"mappings":[{"from":"${s}`],
    ['an invalid escape in a string', (s) => `{"version":1,"generation":7,"mappings":[{"from":"\\q${s}","to":"fdaa::1"}]}`],
    ['the version', (s) => JSON.stringify({ version: s, generation: 7, mappings: [] })],
    ['the generation', (s) => JSON.stringify({ version: 1, generation: s, mappings: [] })],
    ['expires', (s) => JSON.stringify(file([{ from: 'fd00::1', to: 'fdaa::1', expires: s }]))],
  ];

  test.each(contexts)('property: a random string as %s is refused without being quoted', (_name, make) => {
    fc.assert(
      fc.property(planted, (s) => {
        expect(s.length).toBeGreaterThanOrEqual(6);
        const err = refusal(make(s));
        // err.message is the entry and the reason, as status shows them.
        expect(err.message).not.toContain(s);
        expect(err.message).not.toMatch(/zq/);
      }),
      { numRuns: 100 },
    );
  });

  test('a syntax error in a multi-line file is reported at its line and column', () => {
    const lines = ['{', '  "version": 1,', '    @ "generation": 7,', '  "mappings": []', '}'];
    expect(refusal(lines.join('\n')).reason).toBe('invalid JSON at line 3 column 5: expected a field name in double quotes');
    // CRLF line ends count the same.
    expect(refusal(lines.join('\r\n')).reason).toBe('invalid JSON at line 3 column 5: expected a field name in double quotes');
    // A stray token after a value, further into the file.
    const after = ['{', '  "version": 1,', '  "generation": 7 8,', '  "mappings": []', '}'];
    expect(refusal(after.join('\n')).reason).toBe("invalid JSON at line 3 column 19: expected ',' or '}' after a value");
    const err = refusal(lines.join('\n'));
    expect(err.entry).toBeNull();
    expect(err.message).not.toContain('@');
  });
});

// Failing tests documenting bugs in src/address.ts (parseAddress), reported
// rather than fixed here.
describe('BUG: IPv4-mapped detection depends on the spelling', () => {
  // BUG: only the dotted spelling is recognised (ip-address's is4() reports the
  // notation, not the address), so the same IPv4-mapped address in hex form is
  // accepted as an ordinary IPv6 mapping that can never match.
  test.each(['::ffff:a00:1', '0:0:0:0:0:ffff:0a00:0001'])('IPv4-mapped %s (hex form) is refused like its dotted spelling', (a) => {
    const err = refusal(file([{ from: a, to: 'fdaa::1' }]));
    expect(err.entry).toBe('mappings[0]');
    expect(err.reason).toMatch(/IPv4-mapped/);
  });

  // BUG: any IPv6 address written with an embedded dotted quad is refused as
  // "IPv4-mapped", though only ::ffff:0:0/96 is. fd00::10.0.0.1 is fd00::a00:1,
  // which is accepted in hex form; NAT64 addresses (64:ff9b::/96) are commonly
  // written this way.
  test.each([
    ['fd00::10.0.0.1', 'fd00::a00:1'],
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201'],
  ])('an ordinary IPv6 address written with a dotted quad (%s) is accepted like its hex spelling', (dotted, hex) => {
    const parsed = parseMappingFile(mappingFileText(1, [[dotted, 'fdaa::1']]));
    expect(parsed.mappings).toEqual([{ family: 6, from: hex, to: 'fdaa::1' }]);
  });
});

describe('expires', () => {
  const withExpiry = (expires: unknown) =>
    JSON.stringify({ version: 1, generation: 1, mappings: [{ from: 'fd00::1', to: 'fdaa::1', expires }] });

  test('RFC 3339 times with offsets and fractions are accepted as epoch milliseconds', () => {
    expect(parseMappingFile(withExpiry('2026-12-31T23:00:00Z')).mappings[0]!.expires).toBe(Date.UTC(2026, 11, 31, 23));
    expect(parseMappingFile(withExpiry('2026-12-31T23:00:00.5+01:00')).mappings[0]!.expires).toBe(Date.UTC(2026, 11, 31, 22, 0, 0, 500));
  });

  test.each(['2026-12-31', 'tomorrow', '2026-13-40T99:00:00Z', 1767222000, '2026-12-31T23:00:00'])(
    '%j is refused naming the entry',
    (expires) => {
      expect(() => parseMappingFile(withExpiry(expires))).toThrow(/mappings\[0\]/);
      if (typeof expires !== 'string') return;
      const err = refusal(withExpiry(expires));
      expect(err.reason).toMatch(/RFC 3339 time such as "2026-12-31T23:00:00Z"$/);
      // The value is not quoted (unless it is part of the example we give).
      if (!'"2026-12-31T23:00:00Z"'.includes(expires)) expect(err.message).not.toContain(expires);
    },
  );

  test('the same from twice with another expiry is a conflict', () => {
    const text = JSON.stringify({
      version: 1,
      generation: 1,
      mappings: [
        { from: 'fd00::1', to: 'fdaa::1', expires: '2026-12-31T23:00:00Z' },
        { from: 'fd00::1', to: 'fdaa::1' },
      ],
    });
    expect(() => parseMappingFile(text)).toThrow(/mappings\[1\]: from fd00::1 is already mapped by mappings\[0\] with another expiry/);
  });

  test('splitExpired and nextExpiry', () => {
    const ms = [
      { family: 6 as const, from: 'fd00::1', to: 'fdaa::1', expires: 100 },
      { family: 6 as const, from: 'fd00::2', to: 'fdaa::2', expires: 300 },
      { family: 6 as const, from: 'fd00::3', to: 'fdaa::3' },
    ];
    expect(splitExpired(ms, 100).expired.map((m) => m.from)).toEqual(['fd00::1']);
    expect(splitExpired(ms, 100).live.map((m) => m.from)).toEqual(['fd00::2', 'fd00::3']);
    expect(nextExpiry(ms, 100)).toBe(300);
    expect(nextExpiry(ms, 300)).toBeNull();
  });
});

describe('prefix mappings in the file', () => {
  const one = (from: string, to: string) => JSON.stringify({ version: 1, generation: 1, mappings: [{ from, to }] });
  test('equal lengths, host bits zero, canonical networks', () => {
    expect(parseMappingFile(one('FDAA:0:18:A7B:7D::/80', 'fdaa:0:18:a7b:00c2::/80')).mappings).toEqual([
      { family: 6, from: 'fdaa:0:18:a7b:7d::', to: 'fdaa:0:18:a7b:c2::', prefixLength: 80 },
    ]);
    expect(
      parseMappingFile(one('198.51.100.8/29', '198.51.100.16/29'), { allowedTargets: [Prefix.parse('198.51.100.0/24')] }).mappings[0],
    ).toMatchObject({ prefixLength: 29 });
  });

  test('a full-length prefix is an address', () => {
    expect(parseMappingFile(one('fd00::1/128', 'fdaa::1/128')).mappings).toEqual([{ family: 6, from: 'fd00::1', to: 'fdaa::1' }]);
  });

  test.each([
    ['fdaa:0:18:a7b:7d::/80', 'fdaa:0:18:a7b::/64', /prefix lengths differ/],
    ['fdaa:0:18:a7b:7d::1/80', 'fdaa:0:18:a7b:c2::/80', /host bits are set/],
    ['fd00::/8', 'fd00::/8', /same prefix|too short/],
    ['fc00::/7', 'fc00::/7', /too short|same prefix/],
    ['fd00::/8', 'fe00::/8', /too short/],
    ['fdaa:0:18:a7b:7d::/80', 'fdaa:0:18:a7b:7d::/80', /same prefix/],
    ['fdaa:0:18:a7b:7d::/80', '198.51.100.0/24', /mixes address families|lengths differ/],
  ])('%s -> %s is refused', (from, to, reason) => {
    expect(() => parseMappingFile(one(from, to))).toThrow(reason);
  });

  test('the whole target prefix must lie in an allowed range', () => {
    expect(() => parseMappingFile(one('fdaa:0:7d::/48', 'fdaa:0:c2::/48'), { allowedTargets: [Prefix.parse('fdaa:0:c2::/64')] })).toThrow(
      /outside the allowed target ranges/,
    );
  });
});

describe('self: the guest’s own previous addresses', () => {
  const doc = (self: unknown, mappings: unknown[] = []) => JSON.stringify({ version: 1, generation: 1, mappings, self });
  test('parsed canonically; IPv6 only; duplicates refused', () => {
    expect(parseMappingFile(doc([{ from: 'FDAA::77', to: 'fdaa:0::0078' }])).self).toEqual([{ from: 'fdaa::77', to: 'fdaa::78' }]);
    expect(() => parseMappingFile(doc([{ from: '198.51.100.10', to: '198.51.100.20' }]))).toThrow(
      /self\[0\]: own previous addresses are supported for IPv6 only/,
    );
    expect(() =>
      parseMappingFile(
        doc([
          { from: 'fdaa::77', to: 'fdaa::78' },
          { from: 'fdaa::77', to: 'fdaa::79' },
        ]),
      ),
    ).toThrow(/self\[1\]: from fdaa::77 is already listed by self\[0\]/);
    expect(() => parseMappingFile(doc([{ from: 'fdaa::77', to: 'fdaa::77' }]))).toThrow(/self\[0\]: from and to are the same/);
    expect(() => parseMappingFile(doc([{ from: 'fdaa::77' }]))).toThrow(/self\[0\]: missing field "to"/);
  });
});
