// What a terminal would obey, escaped. Text from files and the kernel (file
// names, lines of a customer's configs, process command lines, interface
// names) reaches a terminal through status, explain and scan; an escape
// sequence or a bidirectional override in it must show as what it is.

// C0 and C1 controls, DEL, and the Unicode format characters that reorder or
// hide text (bidi marks, embeddings, overrides and isolates; line and
// paragraph separators).
// eslint-disable-next-line no-control-regex -- matching control characters is this pattern's whole purpose
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// eslint-disable-next-line no-control-regex -- as above, sparing tab and newline
const CONTROL_BUT_LAYOUT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// JSON.stringify escapes C0 itself; these it leaves raw.
const JSON_RAW = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const escape = (c: string) => {
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
};

/** One field (a file name, a command line): every control character escaped, newlines and tabs too. */
export function printable(field: string): string {
  return field.replace(CONTROL, escape);
}

/** Whole lines of output: as printable, but the layout's newlines and tabs stay. */
export function printableText(text: string): string {
  return text.replace(CONTROL_BUT_LAYOUT, escape);
}

/** JSON text for a terminal: still valid JSON, with nothing a terminal would act on. */
export function printableJson(json: string): string {
  return json.replace(JSON_RAW, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
