// Public API of src/broker.

export { MAX_DISPATCH_BATCH } from './arguments';
export { PostgresEventBroker } from './broker';
export type { DeadLetterListener } from './dead-letter-alerts';
export {
  type DeadLetter,
  type DeadLetterFilter,
  type DeadLetterPurge,
  type DeadLetterReplay,
  DeadLetters,
  type DeadLettersOptions,
  type FailureHistoryEntry,
  type JobFailureRecord,
  MAX_FAILURE_HISTORY,
  type ReplayedDeadLetter,
} from './dead-letters';
export {
  BrokerNotStartedError,
  BrokerStoppingError,
  ConcurrentResolveError,
  DatabaseUnavailableError,
  DuplicateRegistrationError,
  InternalQueueError,
  InvalidBatchEventError,
  InvalidEventError,
  PayloadTooLargeError,
  QueueDeletionRefusedError,
  ResolveTimeoutError,
  StateOutsideBrokerTransactionError,
  UnclaimedReplyError,
  UnroutableEventError,
} from './errors';
export type {
  BrokerQueueOptions,
  BrokerWorkerOptions,
  PostgresEventBrokerOptions,
} from './options';
export { pgBossSchemaSql } from './pgboss';
export type { FailureAction, FailureKind } from './policy';
export type {
  ScheduledEvent,
  ScheduledEventTemplate,
  ScheduleFactory,
  ScheduleInfo,
  ScheduleOptions,
} from './schedules';
export { brokerMigrationSql } from './schema';
export type { StopOnSignalsOptions } from './shutdown';
export { type BrokerQueueStats, queryQueueStats } from './stats';
export type {
  ArvoEventHandlerLike,
  BrokerEventListener,
  DispatchOptions,
  HandlerNotFoundDetails,
  HandlerNotFoundListener,
  RegisterOptions,
} from './types';
