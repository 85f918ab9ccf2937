// Public API of src/lock.
export {
  createPostgresLock,
  type LockHandle,
  type LockRetryOptions,
  LockUnavailableError,
  PostgresLock,
  type PostgresLockOptions,
} from './lock';
export { lockMigrationV1 } from './migrations/v1';
