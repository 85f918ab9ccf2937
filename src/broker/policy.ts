import { ArvoPostgresError } from '../shared/errors';

/**
 * What the broker does with a job whose handling threw, by kind of error (arvo's violation kinds):
 *
 * | kind | thrown | action |
 * |---|---|---|
 * | `contract` | `ContractViolation` | dead-letter at once |
 * | `config` | `ConfigViolation` | dead-letter at once |
 * | `execution` | `ExecutionViolation` | dead-letter at once (or retry, option `executionViolation: 'retry'`) |
 * | `lockContention` | transaction violation with cause `LOCK_UNACQUIRED` | reschedule shortly; no retry consumed |
 * | `transaction` | any other transaction violation (memory I/O, optimistic conflict) | retry with backoff, then dead-letter |
 * | `invalidEvent` | the job or an output cannot be (de)serialized, or is over the payload limit | dead-letter at once |
 * | `timeout` | the handler ran past `expireInSeconds` (`HandlerTimeoutError`) | retry with backoff, then dead-letter |
 * | `expired` | never a thrown error: the event waited past its queue's `retentionSeconds` undelivered | dead-letter (by the retention sweep) |
 * | `infrastructure` | anything else | retry with backoff, then dead-letter |
 */
export type FailureKind =
  | 'contract'
  | 'config'
  | 'execution'
  | 'lockContention'
  | 'transaction'
  | 'invalidEvent'
  | 'timeout'
  | 'expired'
  | 'infrastructure';

/** What happens to the job. */
export type FailureAction = 'deadLetter' | 'retry' | 'reschedule';

const LOCK_UNACQUIRED = 'LOCK_UNACQUIRED';

function isViolation(error: unknown): error is Error & { type?: unknown; metadata?: unknown } {
  return error instanceof Error && error.name.includes('ViolationError');
}

/** Classifies a thrown value by the arvo violation kind it carries (`err.type`), see the table above. */
export function classifyFailure(error: unknown): FailureKind {
  if (
    error instanceof ArvoPostgresError &&
    (error.code === 'INVALID_EVENT' || error.code === 'PAYLOAD_TOO_LARGE')
  ) {
    return 'invalidEvent';
  }
  if (error instanceof ArvoPostgresError && error.code === 'HANDLER_TIMEOUT') return 'timeout';
  if (!isViolation(error)) return 'infrastructure';
  const type = typeof error.type === 'string' ? error.type : '';
  if (/transaction/i.test(type)) {
    const metadata = error.metadata as { cause?: unknown } | null | undefined;
    const cause = (error as { cause?: unknown }).cause;
    return cause === LOCK_UNACQUIRED || metadata?.cause === LOCK_UNACQUIRED
      ? 'lockContention'
      : 'transaction';
  }
  if (type === 'Contract') return 'contract';
  if (type === 'Config') return 'config';
  if (type === 'Execution') return 'execution';
  return 'infrastructure';
}

/** The action for `kind`; `executionViolation` is the broker option of the same name. */
export function actionFor(kind: FailureKind, executionViolation: 'deadLetter' | 'retry'): FailureAction {
  switch (kind) {
    case 'lockContention':
      return 'reschedule';
    case 'contract':
    case 'config':
    case 'invalidEvent':
    case 'expired':
      return 'deadLetter';
    case 'execution':
      return executionViolation;
    default:
      return 'retry';
  }
}
