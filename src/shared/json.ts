/** `\u0000` as `JSON.stringify` writes a NUL character (an escaped backslash before `u0000` is not one). */
const JSON_NUL_ESCAPE = /(?<!\\)(?:\\\\)*\\u0000/;

/**
 * Whether the JSON text (from `JSON.stringify`) holds a NUL character in some string. PostgreSQL's
 * `jsonb` and `text` cannot store U+0000, so such values are refused before they reach the driver.
 */
export function jsonContainsNul(json: string): boolean {
  return JSON_NUL_ESCAPE.test(json);
}

/** `text` with every NUL character replaced by U+FFFD, so PostgreSQL can store it (in `jsonb` or `text`). */
export function withoutNul(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}
