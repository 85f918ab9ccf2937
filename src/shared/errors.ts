/**
 * Base class of every error this library throws. `code` is stable and meant for programs;
 * `message` is for people and never contains credentials (see {@link redactSecrets}).
 */
export class ArvoPostgresError extends Error {
  /** Stable, machine-readable error code, e.g. `INVALID_OPTION`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An option passed to a constructor or connect function is missing, of the wrong type or out of range. */
export class InvalidOptionError extends ArvoPostgresError {
  /** Dotted path of the offending option, e.g. `lock.ttlMs`. */
  readonly option: string;

  constructor(option: string, message: string) {
    super('INVALID_OPTION', `Invalid option \`${option}\`: ${message}`);
    this.option = option;
  }
}
