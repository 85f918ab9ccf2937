import { ArvoPostgresError } from '../shared/errors';

/**
 * `write` lost a race: the record was created, changed or deleted by someone else since the caller
 * read it. Orchestrators turn this into a retryable `TransactionViolation`.
 */
export class MachineMemoryConflictError extends ArvoPostgresError {
  readonly subject: string;
  /** The version the caller's `prevData` had, or `null` for a create. */
  readonly expectedVersion: string | null;

  constructor(subject: string, expectedVersion: string | null, message: string) {
    super('MEMORY_WRITE_CONFLICT', message);
    this.subject = subject;
    this.expectedVersion = expectedVersion;
  }
}

/** The state or lock table does not have the layout this version of the library needs. */
export class MachineMemoryTableStructureError extends ArvoPostgresError {
  /** Every problem found, one sentence each. */
  readonly problems: string[];

  constructor(problems: string[]) {
    super(
      'INVALID_TABLE_STRUCTURE',
      `Machine memory tables do not match layout version 1:\n- ${problems.join('\n- ')}`,
    );
    this.problems = problems;
  }
}

/**
 * `migrateFromArvoTools` refused: a lock of the `@arvo-tools/postgres` installation is still live, or
 * the tables named are not that package's. Nothing was copied.
 */
export class ArvoToolsMigrationError extends ArvoPostgresError {
  constructor(message: string) {
    super('ARVO_TOOLS_MIGRATION_REFUSED', message);
  }
}
