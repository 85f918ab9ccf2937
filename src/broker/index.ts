// Public API of src/broker.
export {
  type ArvoEventHandlerLike,
  type BrokerEventListener,
  type HandlerNotFoundDetails,
  type HandlerNotFoundListener,
  PostgresEventBroker,
  type RegisterOptions,
} from './broker';
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
  ConcurrentResolveError,
  DatabaseUnavailableError,
  DuplicateRegistrationError,
  InternalQueueError,
  InvalidEventError,
  PayloadTooLargeError,
  ResolveTimeoutError,
  StateOutsideBrokerTransactionError,
  UnclaimedReplyError,
  UnroutableEventError,
} from './errors';
export { type BrokerQueueStats, queryQueueStats } from './metrics';
export type { BrokerQueueOptions, BrokerWorkerOptions, PostgresEventBrokerOptions } from './options';
export type { FailureAction, FailureKind } from './policy';
