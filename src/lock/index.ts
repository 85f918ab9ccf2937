// Public API of src/lock.
export { LockUnavailableError } from './errors';
export type { LockHandle } from './handle';
export { createPostgresLock, PostgresLock } from './lock';
export type { LockRetryOptions, PostgresLockOptions } from './options';
