import { InvalidOptionError } from './errors';
import { option } from './options';
import { redactSecrets, redactValue } from './redact';

/**
 * `console`, a pino, bunyan or winston logger, or your own object. Only `info` and `error` are
 * required; `debug` and `warn` fall back to them. pino and bunyan loggers are called
 * `(fields, message)`, every other logger `(message, fields)` (console's and winston's order).
 */
export interface Logger {
  debug?: (...args: any[]) => void;
  info: (...args: any[]) => void;
  warn?: (...args: any[]) => void;
  error: (...args: any[]) => void;
}

/** Log levels the library emits. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The method of the library's own loggers that drops a record: {@link writeLog} skips redacting for it. */
function discard(): void {}

/** A logger that discards everything. */
export const silentLogger: Logger = { debug: discard, info: discard, warn: discard, error: discard };

/** The default: warnings and errors to the console, nothing else. */
export const consoleLogger: Logger = {
  info: discard,
  warn: (...args: unknown[]) => console.warn(...args),
  error: (...args: unknown[]) => console.error(...args),
};

/**
 * Validates a `logger` option: `fallback` when undefined, else an object with `info()` and `error()`
 * functions (anything less would silently swallow every warning).
 */
export function loggerOption(value: unknown, option: string, fallback: Logger = consoleLogger): Logger {
  if (value === undefined) return fallback;
  const candidate = value as Partial<Logger> | null;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.info !== 'function' ||
    typeof candidate.error !== 'function'
  ) {
    throw new InvalidOptionError(option, 'expected an object with info() and error() functions');
  }
  return candidate as Logger;
}

/** The `logger` option of every component. */
export const LOGGER_OPTION = option((value, at) => loggerOption(value, at), consoleLogger);

// pino and bunyan take (fields, message); console and winston take (message, fields). winston also has
// child() and a string level, so only what pino (bindings()) and bunyan (streams, fields) alone have counts.
function takesFieldsFirst(logger: Logger): boolean {
  const candidate = logger as Logger & {
    child?: unknown;
    bindings?: unknown;
    streams?: unknown;
    fields?: unknown;
  };
  if (typeof candidate.child !== 'function') return false;
  const pino = typeof candidate.bindings === 'function';
  const bunyan = Array.isArray(candidate.streams) && typeof candidate.fields === 'object';
  return pino || bunyan;
}

/** Writes one redacted log record to `logger`. Never throws: a broken logger must not break the caller. */
export function writeLog(
  logger: Logger,
  level: LogLevel,
  message: string,
  fields?: Record<string, unknown>,
): void {
  const fn = logger[level] ?? (level === 'debug' ? logger.info : level === 'warn' ? logger.error : undefined);
  if (!fn || fn === discard) return;
  const safeMessage = redactSecrets(message);
  const safeFields = fields ? redactValue(fields) : undefined;
  try {
    if (!safeFields) fn.call(logger, safeMessage);
    else if (takesFieldsFirst(logger)) fn.call(logger, safeFields, safeMessage);
    else fn.call(logger, safeMessage, safeFields);
  } catch {
    // A logger that throws is ignored on purpose.
  }
}
