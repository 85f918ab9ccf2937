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
  /** What is wrong with it (the message without the option's name). */
  readonly reason: string;

  constructor(option: string, reason: string) {
    super('INVALID_OPTION', `Invalid option \`${option}\`: ${reason}`);
    this.option = option;
    this.reason = reason;
  }
}

/**
 * A migration's index is not what the migration lists: `CREATE INDEX IF NOT EXISTS` skips an index
 * whose name is taken in the schema (e.g. by another table's index: `<table>_<columns>_idx` of
 * tables `wf` and `wf_status` can coincide), so the table would silently go without it.
 */
export class MigrationIndexError extends ArvoPostgresError {
  /** One line per index that is not as listed, naming it, where it should be and what is there. */
  readonly problems: string[];

  constructor(component: string, problems: string[]) {
    super(
      'MIGRATION_INDEX_CONFLICT',
      `Migrating ${component} did not create its indexes as listed (nothing was applied): ${problems.join('; ')}`,
    );
    this.problems = problems;
  }
}
