// Public API of src/lock.
export {
  createPostgresLock,
  type LockHandle,
  type LockRetryOptions,
  LockUnavailableError,
  PostgresLock,
  type PostgresLockOptions,
} from './lock';
