/**
 * Redaction of credentials from anything that leaves the library: thrown errors, log lines,
 * dead-letter records, failed-job outputs, span attributes and CLI output. Secrets are found by
 * structure only (URL user-info, values of secret-named keys), never by remembering a password and
 * searching for it: that masked ordinary words containing it and missed every other shape. The
 * rules (secret keys, the extent of a value) are spelled out in SECURITY.md ("Redaction").
 */

import { storableText } from './json';

const MASK = '[REDACTED]';

// Words that name a secret when they are the last word of a key (`db_password`, `clientSecret`).
const SECRET_WORDS = new Set([
  'password',
  'passwd',
  'passphrase',
  'pass',
  'pwd',
  'secret',
  'credential',
  'credentials',
  'authorization',
  'apikey',
]);
// Keys that are secret as a whole (separators removed): tokens only when they authenticate, so that a
// lock's `fencing_token` is left alone.
const SECRET_KEYS = new Set([
  'token',
  'accesstoken',
  'authtoken',
  'refreshtoken',
  'idtoken',
  'apitoken',
  'bearertoken',
  'sessiontoken',
  'apikey',
  'privatekey',
  'sslkey',
]);
// Run-together names whose end names a secret (`PGPASSWORD`, `sslpassword`, `clientsecret`).
const SECRET_ENDINGS = /(?:password|passwd|passphrase|secret)$/;

/**
 * Whether a key (an option, a JSON/object key, a `key=value` parameter or an environment variable)
 * names a secret: its last word is one of password, passwd, passphrase, pass, pwd, secret,
 * credential(s), authorization, apikey; or, with `_`, `-` and `.` removed, it ends in password,
 * passwd, passphrase or secret, or is token, access/auth/refresh/id/api/bearer/session token,
 * apikey, privatekey or sslkey. Case does not matter.
 */
export function isSecretKey(key: string): boolean {
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[\s_.-]+/)
    .filter(Boolean);
  const last = words.at(-1);
  if (last === undefined) return false;
  const joined = words.join('');
  return SECRET_WORDS.has(last) || SECRET_KEYS.has(joined) || SECRET_ENDINGS.test(joined);
}

// scheme://user:password@host — the password runs to the last `@` of the authority (a raw `@` in a
// hand-written password still ends at the host). A URL encodes `"` and white space, so neither is in it.
const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/[^\s"'<>/?#@:]*):([^\s"<>/?#]*)@/gi;

// A key followed by `=` or `:`. The key must not continue a word, a path or a URL's user name.
const KEY = String.raw`[A-Za-z_][\w.-]*`;
const KEYED = new RegExp(
  String.raw`(?<![\w.\-/\\])(?<open>[?&])?(?<quote>\\?["']?)(?<key>${KEY})\k<quote>(?<sep>\s*[=:]\s*)`,
  'g',
);
// A quoted value: the quote, escaped characters (`\"`, `\\`) included, up to the closing quote.
const QUOTED = /^(["'`])((?:\\.|(?!\1)[^\\\r\n])*)\1/;
// The same inside a JSON string (`\"value\"`), where the value's own escapes are doubled: `\\\"`, `\\\\`.
const ESCAPED_QUOTED = /^\\"((?:\\\\\\"|\\\\\\\\|\\[^"]|[^\\\r\n])*)\\"/;
// Where an unquoted value stops: end of line (also written as a `\n` or `\r` escape, as in JSON), a
// `"` or `\"` closing a JSON string around it (JSON punctuation or the end of a line follows), or the next
// `key=` parameter (libpq `host=… password=… dbname=…`) or `, key:` / `&key=` pair.
const UNQUOTED_END = new RegExp(
  String.raw`[\r\n]|\\[nr]|\\?"(?=[ \t]*(?:\\?[,:}\]\r\n]|\\[nr]|"|$))|\s+${KEY}=|[&;,]\s*["']?${KEY}["']?\s*[=:]`,
);

/** The unquoted value at the start of `rest`, by the context its key was found in. */
function unquotedValue(rest: string, context: 'query' | 'json' | 'text'): string {
  if (context === 'query') return /^[^\s&#"]*/.exec(rest)?.[0] ?? '';
  if (context === 'json') return /^[^\s,}\]"]*/.exec(rest)?.[0] ?? '';
  const end = UNQUOTED_END.exec(rest)?.index ?? rest.length;
  return rest.slice(0, end).trimEnd();
}

/** Masks the value of every secret key in `text`, quoted or not; everything else is kept byte for byte. */
function maskKeyedValues(text: string): string {
  let out = '';
  let copied = 0;
  KEYED.lastIndex = 0;
  for (let match = KEYED.exec(text); match; match = KEYED.exec(text)) {
    const { open, quote, key } = match.groups as { open?: string; quote: string; key: string };
    if (!isSecretKey(key)) continue;
    const valueStart = match.index + match[0].length;
    const rest = text.slice(valueStart);
    const quoted = QUOTED.exec(rest);
    const escapedQuoted = quoted ? null : ESCAPED_QUOTED.exec(rest);
    let start: number;
    let length: number;
    if (quoted) {
      start = valueStart + 1;
      length = quoted[2]!.length;
    } else if (escapedQuoted) {
      start = valueStart + 2;
      length = escapedQuoted[1]!.length;
    } else {
      start = valueStart;
      length = unquotedValue(rest, open ? 'query' : quote ? 'json' : 'text').length;
    }
    if (length > 0) {
      out += text.slice(copied, start) + MASK;
      copied = start + length;
    }
    KEYED.lastIndex = Math.max(valueStart, copied);
  }
  return out + text.slice(copied);
}

/**
 * Returns `text` with every credential found by structure masked as `[REDACTED]`: the password of a
 * URL's user-info (`scheme://user:secret@host`, any scheme), and the whole value after a secret key
 * (see {@link isSecretKey}) followed by `=` or `:` — `password=…`, `?password=…`, `"password":"…"`,
 * `password: …`, `PGPASSWORD=…`, `Authorization: Bearer …`. A quoted value is masked up to its
 * closing quote (backslash escapes included); an unquoted one up to the end of the line (or a `\n`
 * escape), a `"` closing a JSON string, or the next `key=` parameter; in a URL query up to `&`, `#`
 * or white space; after a quoted JSON key up to `,`, `}`, `]` or white space. A bare
 * `Bearer <token>` is masked too. Nothing else is changed.
 */
export function redactSecrets(text: string): string {
  return maskKeyedValues(text.replace(URL_USERINFO, `$1:${MASK}@`)).replace(
    /\b(Bearer)\s+[A-Za-z0-9._~+/-]{8,}=*/gi,
    `$1 ${MASK}`,
  );
}

/**
 * Redacts a JSON-like value for log fields, stored error records and CLI output: the value of every
 * secret key (see {@link isSecretKey}) is replaced by `[REDACTED]` whatever its type, every other
 * string goes through {@link redactSecrets}, recursively. Errors become {@link describeError}.
 */
export function redactValue<T>(value: T, ancestors: WeakSet<object> = new WeakSet()): T {
  if (typeof value === 'string') return redactSecrets(value) as T;
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return describeError(value) as T;
  if (value instanceof Date) return value;
  // Only a cycle is cut: an object referenced twice (e.g. a history in two places) is kept twice.
  if (ancestors.has(value)) return '[Circular]' as T;
  ancestors.add(value);
  try {
    if (Array.isArray(value)) return value.map((item) => redactValue(item, ancestors)) as T;
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      out[key] =
        isSecretKey(key) && item !== null && item !== undefined ? MASK : redactValue(item, ancestors);
    }
    return out as T;
  } finally {
    ancestors.delete(value);
  }
}

/** A plain, redacted description of an error, safe to log or store. */
export interface ErrorDescription {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

/**
 * Describes any thrown value as a redacted {@link ErrorDescription} that PostgreSQL can store: it
 * goes into dead-letter records, where a NUL or a lone surrogate (replaced by U+FFFD) would fail the write.
 */
export function describeError(error: unknown): ErrorDescription {
  const text = (value: string) => storableText(redactSecrets(value));
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      name: text(String(error.name)),
      message: text(error.message),
      ...(typeof code === 'string' ? { code: text(code) } : {}),
      ...(error.stack ? { stack: text(error.stack) } : {}),
    };
  }
  return { name: 'Error', message: text(String(error)) };
}

/**
 * Returns an error safe to rethrow: same class, with its message, stack and every other own string
 * property (a driver error's `code`, `detail`, `hint`…) redacted, and its `cause` chain too. Used
 * wherever a driver error (which may quote a connection string) crosses the public API.
 */
export function redactError<E>(error: E, depth = 0): E {
  if (!(error instanceof Error)) return new Error(redactSecrets(String(error))) as E;
  const updates: Record<string, unknown> = {};
  for (const key of ['message', 'stack', ...Object.keys(error)]) {
    const current = (error as unknown as Record<string, unknown>)[key];
    const safe =
      typeof current === 'string'
        ? redactSecrets(current)
        : key === 'cause' && current instanceof Error && depth < 8
          ? redactError(current, depth + 1)
          : current;
    if (safe !== current) updates[key] = safe;
  }
  if (Object.keys(updates).length === 0) return error;
  try {
    Object.assign(error, updates);
    return error;
  } catch {
    // Some errors (e.g. a DOMException abort reason) have a read-only message: copy them instead.
    const copy = new Error(String(updates.message ?? error.message));
    copy.name = error.name;
    copy.stack = String(updates.stack ?? error.stack);
    return copy as E;
  }
}
