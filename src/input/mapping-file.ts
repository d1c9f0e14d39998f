// Mapping file v1: JSON text in, validated mappings out. The JSON Schema next to
// this file is the single definition of the shape; this module adds what a
// schema cannot say (address syntax, duplicates) and names the offending entry.
import schema from './mapping-file.schema.json' with { type: 'json' };
import { parseAddress, AddressError, type IpAddress, type IpFamily } from '../net/address.js';
import { strictJsonProblem } from './strict-json.js';
import { describeJsonError } from './json-syntax.js';
import { validate as generatedValidate } from './mapping-file.validate.js';
import { Prefix, prefixKey } from '../net/prefix.js';

export interface Mapping {
  family: IpFamily;
  from: string;
  to: string;
  /** When the mapping retires (epoch milliseconds); absent: never. */
  expires?: number;
  /**
   * Set for a prefix mapping: from and to are then network addresses of this
   * length, and every address in from's prefix maps to the same host bits in to's.
   */
  prefixLength?: number;
  /** Position in the file (mappings[index]) when it differs from the position in the list, for error messages. */
  index?: number;
}

/** "fdaa::/80" for a prefix mapping's from, the address for others. */
export const fromKey = (m: { from: string; prefixLength?: number }) =>
  m.prefixLength === undefined ? m.from : prefixKey(m.from, m.prefixLength);

export interface MappingFile {
  generation: number;
  /** Canonical and de-duplicated, in file order. Chains are not yet resolved. */
  mappings: Mapping[];
  /** This guest's own previous addresses (from) and its addresses now (to); IPv6. */
  self?: { from: string; to: string }[];
}

/** A refused file. `entry` names where the problem is, e.g. "mappings[3]". */
export class MappingFileError extends Error {
  constructor(
    readonly entry: string | null,
    readonly reason: string,
  ) {
    super(entry ? `${entry}: ${reason}` : reason);
  }
}

/** The mappings still in force at `now`, and those that have expired. */
export function splitExpired(mappings: readonly Mapping[], now: number): { live: readonly Mapping[]; expired: Mapping[] } {
  const isExpired = (m: Mapping) => m.expires !== undefined && m.expires <= now;
  if (!mappings.some(isExpired)) return { live: mappings, expired: [] };
  const live: Mapping[] = [];
  const expired: Mapping[] = [];
  // Positions shift once expired entries are left out: keep the file's, so
  // a refusal still names the right entry.
  mappings.forEach((m, i) => (isExpired(m) ? expired.push(m) : live.push(m.index === undefined ? { ...m, index: i } : m)));
  return { live, expired };
}

/** The earliest expiry still to come, or null. */
export function nextExpiry(mappings: readonly Mapping[], now: number): number | null {
  let next: number | null = null;
  for (const m of mappings) if (m.expires !== undefined && m.expires > now && (next === null || m.expires < next)) next = m.expires;
  return next;
}

interface SchemaError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** The schema, compiled ahead of time by ajv (packaging/validator.mjs). */
const validate = generatedValidate as { (doc: unknown): boolean; errors?: SchemaError[] | null };

export interface ParseOptions {
  /** Targets must lie in one of these; the config's allowedTargets. */
  allowedTargets: readonly Prefix[];
}

/** The IPv6 ULA range, fc00::/7, and nothing else. */
export const DEFAULT_ALLOWED_TARGETS: readonly Prefix[] = [Prefix.parse('fc00::/7')];

export function parseMappingFile(text: string, options: ParseOptions = { allowedTargets: DEFAULT_ALLOWED_TARGETS }): MappingFile {
  return parseIndexed(text, options).file;
}

/** A parsed file and what parsing it learned: each mapping by its from key, and whether entries repeated one another. */
export interface IndexedFile {
  file: MappingFile;
  byFrom: Map<string, Mapping>;
  /** Some entry repeated an earlier one exactly and was left out: positions in the file and the list differ. */
  repeats: boolean;
  /** The document without its mappings list, as read. */
  head: Record<string, unknown>;
}

export function parseIndexed(text: string, options: ParseOptions = { allowedTargets: DEFAULT_ALLOWED_TARGETS }): IndexedFile {
  const problem = strictJsonProblem(text);
  if (problem) throw new MappingFileError(null, `invalid JSON: ${problem}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new MappingFileError(null, describeJsonError(text));
  }
  // Checked before the schema so that a newer format is reported as such rather
  // than as a list of fields this version does not know.
  if (isObject(doc) && 'version' in doc && doc.version !== 1) {
    const v = doc.version;
    throw new MappingFileError(
      'version',
      `unsupported version${typeof v === 'number' && Number.isSafeInteger(v) ? ` ${v}` : ' (not a whole number)'}; this addrmap reads version 1`,
    );
  }
  checkSchema(doc);
  const file: RawFile = doc;

  // This loop runs for every entry of every push that is parsed whole (100k
  // at the largest sizes): plain loops and one object per mapping; of the
  // error messages only the entry's name is built before one is thrown.
  const byFrom = new Map<string, Mapping>();
  const firstIndex = new Map<Mapping, number>();
  const mappings: Mapping[] = [];
  const allowedTargets = options.allowedTargets;
  let repeats = false;
  for (let i = 0; i < file.mappings.length; i++) {
    const entry = `mappings[${i}]`;
    const { key, mapping } = checkMapping(entry, file.mappings[i]!, allowedTargets);
    const seen = byFrom.get(key);
    if (seen) {
      if (seen.to === mapping.to && seen.expires === mapping.expires) {
        repeats = true; // an exact repeat says nothing new
        continue;
      }
      const at = firstIndex.get(seen) ?? mappings.indexOf(seen);
      throw duplicateError(entry, key, seen, mapping, at);
    }
    byFrom.set(key, mapping);
    // Only needed once entries were dropped as repeats, when positions in the file and the list part.
    if (mappings.length !== i) firstIndex.set(mapping, i);
    mappings.push(mapping);
  }
  const { mappings: _, ...head } = file;
  if (!file.self) return { file: { generation: file.generation, mappings }, byFrom, repeats, head };
  return { file: { generation: file.generation, mappings, self: checkSelf(file.self) }, byFrom, repeats, head };
}

/** The file as the schema defines it, before any address is read. */
export interface RawFile {
  generation: number;
  mappings: RawMapping[];
  self?: { from: string; to: string }[];
}
export interface RawMapping {
  from: string;
  to: string;
  expires?: string;
}

/** Refuses a document the schema does not allow, naming the first place it fails. */
export function checkSchema(doc: unknown): asserts doc is RawFile {
  if (validate(doc)) return;
  const err = validate.errors?.[0];
  let where = err ? pointerToEntry(err.instancePath) : null;
  // A missing top-level field is the entry itself, so status shows it. An
  // unknown one is not named: its name is the file's bytes.
  const field = err?.params.missingProperty;
  if (where === null && typeof field === 'string') where = field;
  const detail = err ? describeSchemaError(err) : 'does not match the schema';
  throw new MappingFileError(where, detail);
}

/** The "already mapped" refusal: `at` is where the first mapping of `key` stands. */
function duplicateError(entry: string, key: string, seen: Mapping, mapping: Mapping, at: number): MappingFileError {
  return new MappingFileError(
    entry,
    seen.to === mapping.to
      ? `from ${key} is already mapped by mappings[${at}] with another expiry`
      : `from ${key} is already mapped to ${seen.to} by mappings[${at}], here to ${mapping.to}`,
  );
}

/** One entry of the mappings list on its own: its addresses, family, target range and expiry; its from key. */
export function checkMapping(entry: string, m: RawMapping, allowedTargets: readonly Prefix[]): { key: string; mapping: Mapping } {
  const { from, to, length } = parseEnds(entry, m.from, m.to);
  if (from.family !== to.family) {
    throw new MappingFileError(entry, `mixes address families: from ${from.text} is IPv${from.family}, to ${to.text} is IPv${to.family}`);
  }
  if (from.text === to.text)
    throw new MappingFileError(entry, `from and to are the same ${length === undefined ? 'address' : 'prefix'} (${from.text})`);
  // A target prefix must lie wholly inside an allowed range.
  let allowed = false;
  for (let k = 0; k < allowedTargets.length && !allowed; k++) {
    const p = allowedTargets[k]!;
    allowed = p.contains(to) && (length === undefined || p.length <= length);
  }
  if (!allowed) {
    const ranges = allowedTargets.map((p) => p.text).join(', ') || 'none';
    throw new MappingFileError(
      entry,
      `to ${length === undefined ? to.text : prefixKey(to.text, length)} is outside the allowed target ranges (${ranges}); see allowedTargets in the config file`,
    );
  }
  let expires: number | undefined;
  if (m.expires !== undefined) {
    expires = Date.parse(m.expires);
    if (!Number.isFinite(expires))
      throw new MappingFileError(entry, 'expires is not a valid time; write an RFC 3339 time such as "2026-12-31T23:00:00Z"');
  }
  const mapping: Mapping = { family: from.family, from: from.text, to: to.text };
  if (expires !== undefined) mapping.expires = expires;
  if (length !== undefined) mapping.prefixLength = length;
  return { key: length === undefined ? from.text : prefixKey(from.text, length), mapping };
}

/** The guest's own previous addresses (IPv6 only, each once on either side). */
function checkSelf(list: readonly { from: string; to: string }[]): { from: string; to: string }[] {
  const self: { from: string; to: string }[] = [];
  const selfFrom = new Map<string, number>();
  list.forEach((m, i) => {
    const entry = `self[${i}]`;
    const from = parseField(entry, 'from', m.from);
    const to = parseField(entry, 'to', m.to);
    if (from.family !== 6 || to.family !== 6) {
      // An IPv4 address added to the guest is answered in ARP on every link,
      // which would claim the old address on the network; not done.
      throw new MappingFileError(entry, 'own previous addresses are supported for IPv6 only');
    }
    if (from.text === to.text) throw new MappingFileError(entry, `from and to are the same address (${from.text})`);
    const seen = selfFrom.get(from.text);
    if (seen !== undefined) throw new MappingFileError(entry, `from ${from.text} is already listed by self[${seen}]`);
    if (self.some((x) => x.to === to.text))
      throw new MappingFileError(entry, `to ${to.text} is listed twice; each current address takes one previous address`);
    selfFrom.set(from.text, i);
    self.push({ from: from.text, to: to.text });
  });
  return self;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Both ends of a mapping: two addresses, or two prefixes of one length with
 * no host bits set ("fdaa:0:18:a7b:7d::/80"). A full-length prefix is an address.
 */
const isPrefix = (t: string) => typeof t === 'string' && t.includes('/');

function parseEnds(entry: string, fromText: string, toText: string): { from: IpAddress; to: IpAddress; length?: number } {
  if (!isPrefix(fromText) && !isPrefix(toText)) return { from: parseField(entry, 'from', fromText), to: parseField(entry, 'to', toText) };
  if (!isPrefix(fromText) || !isPrefix(toText)) {
    const [field, other] = isPrefix(fromText) ? ['from', 'to'] : ['to', 'from'];
    throw new MappingFileError(entry, `${field} is a prefix but ${other} is an address; a prefix maps to a prefix of the same length`);
  }
  const p = (field: 'from' | 'to', t: string) => {
    try {
      return Prefix.parse(t);
    } catch (e) {
      if (e instanceof AddressError) throw new MappingFileError(entry, `${field}: ${e.message}`);
      throw e;
    }
  };
  const from = p('from', fromText);
  const to = p('to', toText);
  if (from.family !== to.family)
    throw new MappingFileError(entry, `mixes address families: from ${from.text} is IPv${from.family}, to ${to.text} is IPv${to.family}`);
  if (from.length !== to.length)
    throw new MappingFileError(entry, `prefix lengths differ (/${from.length} and /${to.length}); they must be equal`);
  const full = from.family === 6 ? 128 : 32;
  const net = (x: typeof from) => x.text.slice(0, x.text.lastIndexOf('/'));
  if (from.length === full) return { from: parseField(entry, 'from', net(from)), to: parseField(entry, 'to', net(to)) };
  if (from.length < (from.family === 6 ? 16 : 8))
    throw new MappingFileError(entry, `prefix /${from.length} is too short to be a host's prefix`);
  return { from: { family: from.family, text: net(from) }, to: { family: to.family, text: net(to) }, length: from.length };
}

function parseField(entry: string, field: 'from' | 'to', value: string) {
  try {
    return parseAddress(value);
  } catch (e) {
    if (e instanceof AddressError) throw new MappingFileError(entry, `${field}: ${e.message}`);
    throw e;
  }
}

/** The fields the schema allows in the object at a JSON pointer ("", "/mappings/3", "/self/0"). */
function knownFields(pointer: string): string {
  const props = (o: unknown) => Object.keys((o as { properties?: object }).properties ?? {}).join(', ');
  const top = schema as unknown as { properties: Record<string, { items?: unknown }> };
  const list = pointer.split('/')[1];
  return list && top.properties[list]?.items ? props(top.properties[list].items) : props(top);
}

/** "/mappings/3/to" -> "mappings[3].to" */
function pointerToEntry(pointer: string): string | null {
  if (!pointer) return null;
  return pointer
    .slice(1)
    .split('/')
    .map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`))
    .join('');
}

function describeSchemaError(err: SchemaError): string {
  switch (err.keyword) {
    case 'additionalProperties':
      // Not named: the name is the file's bytes. What is allowed is ours to say.
      return `an unknown field (allowed here: ${knownFields(err.instancePath)})`;
    case 'required':
      return `missing field ${JSON.stringify(err.params.missingProperty)}`;
    case 'const':
      return `unsupported value (expected ${JSON.stringify(err.params.allowedValue)})`;
    case 'pattern':
      return 'must be an RFC 3339 time such as "2026-12-31T23:00:00Z"';
    default:
      return err.message ?? err.keyword;
  }
}
