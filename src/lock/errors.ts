import { ArvoPostgresError } from '../shared/errors';

/** `withLock` could not get the lock within its attempts. */
export class LockUnavailableError extends ArvoPostgresError {
  readonly key: string;
  readonly attempts: number;

  constructor(key: string, attempts: number) {
    super(
      'LOCK_UNAVAILABLE',
      `Lock ${JSON.stringify(key)} is held by another owner (gave up after ${attempts} attempts)`,
    );
    this.key = key;
    this.attempts = attempts;
  }
}
