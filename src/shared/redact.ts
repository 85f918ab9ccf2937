/**
 * Redaction of credentials from anything that leaves the library: thrown errors, log lines,
 * dead-letter records and span attributes. Pattern rules catch credentials in their usual shapes;
 * passwords the library was configured with are also remembered and masked verbatim wherever they
 * appear, whatever the surrounding text looks like.
 */

import { storableText } from './json';

const MASK = '[REDACTED]';
const knownSecrets = new Set<string>();

const RULES: ReadonlyArray<[RegExp, string]> = [
  // scheme://user:password@host → scheme://user:[REDACTED]@host
  [/([a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]*):([^@\s/]*)@/gi, `$1:${MASK}@`],
  // password=secret, "password":"secret", password: 'secret', PGPASSWORD=secret, sslkey=...
  [
    /((?:pg)?pass(?:word|wd)?|secret|api[_-]?key|access[_-]?token|auth[_-]?token|sslkey|sslpassword)(["']?\s*[:=]\s*["']?)([^"'\s&,;}]+)/gi,
    `$1$2${MASK}`,
  ],
  // Authorization: Bearer xyz / Basic xyz, and bare bearer tokens
  [/(authorization["']?\s*[:=]\s*["']?)(?:(bearer|basic|digest|token)\s+)?[^"'\s,;}]+/gi, `$1$2 ${MASK}`],
  [/\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}/gi, `$1 ${MASK}`],
];

/** Remembers a secret (e.g. a configured password) so that it is masked verbatim from now on. */
export function registerSecret(secret: string | undefined | null): void {
  // Very short values would mask ordinary words; they are still caught by the pattern rules.
  if (typeof secret === 'string' && secret.length >= 4) knownSecrets.add(secret);
}

/** Returns `text` with credentials masked. */
export function redactSecrets(text: string): string {
  let out = text;
  // Pattern rules first: a known secret that is also an ordinary word (e.g. a password `postgres`)
  // would otherwise be masked inside the URL scheme and stop the URL rule from matching.
  for (const [pattern, replacement] of RULES) out = out.replace(pattern, replacement);
  for (const secret of knownSecrets) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
  }
  return out.replace(/ {2}\[REDACTED\]/g, ` ${MASK}`);
}

/** Redacts every string inside a JSON-like value (for log fields and stored error records). */
export function redactValue<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return redactSecrets(value) as T;
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return describeError(value) as T;
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1)) as T;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    out[key] = /^(password|pass|pwd|secret|authorization|token|connectionstring)$/i.test(key)
      ? MASK
      : redactValue(item, depth + 1);
  }
  return out as T;
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
      name: storableText(String(error.name)),
      message: text(error.message),
      ...(typeof code === 'string' ? { code: storableText(code) } : {}),
      ...(error.stack ? { stack: text(error.stack) } : {}),
    };
  }
  return { name: 'Error', message: text(String(error)) };
}

/**
 * Returns an error safe to rethrow: same class, code and name, with message and stack redacted.
 * Used wherever a driver error (which may quote a connection string) crosses the public API.
 */
export function redactError<E>(error: E): E {
  if (!(error instanceof Error)) return new Error(redactSecrets(String(error))) as E;
  const message = redactSecrets(error.message);
  const stack = error.stack === undefined ? undefined : redactSecrets(error.stack);
  if (message === error.message && stack === error.stack) return error;
  try {
    error.message = message;
    if (stack !== undefined) error.stack = stack;
    return error;
  } catch {
    // Some errors (e.g. a DOMException abort reason) have a read-only message: copy them instead.
    const copy = new Error(message);
    copy.name = error.name;
    if (stack !== undefined) copy.stack = stack;
    return copy as E;
  }
}
