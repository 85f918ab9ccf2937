// Characters PostgreSQL cannot store in `text` or `jsonb` (they fail with 22P02 / 22021, or, as a
// driver parameter, turn into U+FFFD without a word): NUL, and a UTF-16 surrogate that is not half of
// a pair (what `slice()` leaves of an emoji). One rule for both, applied wherever text is stored.

/** A NUL or a lone surrogate in a JavaScript string. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching NUL is the point
const UNSTORABLE_CHARACTER = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const UNSTORABLE_CHARACTERS = new RegExp(UNSTORABLE_CHARACTER.source, 'g');

/**
 * The same characters in JSON text from `JSON.stringify`, which writes both as `\uXXXX` escapes (and
 * a surrogate pair as its characters, never escaped); an escaped backslash before `u` is not one.
 */
const JSON_UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i;

function describeCharacter(code: string): string {
  return code === '0000'
    ? 'a NUL character (\\u0000)'
    : `a lone UTF-16 surrogate (\\u${code.toLowerCase()}, e.g. half of an emoji cut by slice())`;
}

/** What PostgreSQL cannot store in `text` (e.g. `a NUL character (\u0000)`), or `null` when it can. */
export function unstorableCharacterIn(text: string): string | null {
  const found = UNSTORABLE_CHARACTER.exec(text)?.[0];
  return found === undefined ? null : describeCharacter(found.charCodeAt(0).toString(16).padStart(4, '0'));
}

/**
 * What PostgreSQL cannot store in `jsonb` in the JSON text `json` (from `JSON.stringify`), or `null`
 * when it can; such values are refused before they reach the driver.
 */
export function jsonUnstorableCharacter(json: string): string | null {
  const code = JSON_UNSTORABLE_ESCAPE.exec(json)?.[1];
  return code === undefined ? null : describeCharacter(code);
}

/** `text` with every character PostgreSQL cannot store replaced by U+FFFD (for error text, which must be stored). */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE_CHARACTERS, '\uFFFD');
}
