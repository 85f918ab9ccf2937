// Public API of src/broker.
export {
  type ArvoEventHandlerLike,
  type BrokerEventListener,
  type BrokerQueueStats,
  type DeadLetter,
  type DeadLetterFilter,
  type HandlerNotFoundDetails,
  type HandlerNotFoundListener,
  type JobFailureRecord,
  PostgresEventBroker,
  type RegisterOptions,
} from './broker';
export {
  BrokerNotStartedError,
  DatabaseUnavailableError,
  DuplicateRegistrationError,
  InvalidEventError,
  PayloadTooLargeError,
  ResolveTimeoutError,
  UnroutableEventError,
} from './errors';
export { decodeEvent, encodeEvent, jobIdForEvent } from './event-codec';
export type { BrokerQueueOptions, BrokerWorkerOptions, PostgresEventBrokerOptions } from './options';
export type { FailureAction, FailureKind } from './policy';
