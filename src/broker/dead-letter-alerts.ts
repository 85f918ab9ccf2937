import { type Logger, writeLog } from '../shared/logger';
import { describeError } from '../shared/redact';
import type { JobFailureRecord } from './dead-letters';
import type { BrokerMetrics } from './metrics';

/**
 * Called once for each job this process moved to a dead-letter queue, after that move committed:
 * the failure record stored with the dead letter (queue, kind, event id and type, error, history).
 * A listener that throws (or rejects) is logged and changes nothing.
 */
export type DeadLetterListener = (deadLetter: JobFailureRecord) => void | Promise<void>;

/**
 * The one place every dead-lettering path of a process reports to once it committed: the failure
 * policy (`settle.ts`), its deferred retries (`unsettled.ts`) and the expiry sweep (`retention.ts`).
 * Counts `arvo_postgres.jobs.dead_lettered` and calls the `onDeadLetter` listeners.
 */
export class DeadLetterAlerts {
  readonly #listeners: DeadLetterListener[] = [];
  readonly #metrics: BrokerMetrics;
  readonly #logger: () => Logger;

  constructor(metrics: BrokerMetrics, logger: () => Logger) {
    this.#metrics = metrics;
    this.#logger = logger;
  }

  listen(listener: DeadLetterListener): void {
    this.#listeners.push(listener);
  }

  /** `records` were dead-lettered and committed. */
  deadLettered(records: JobFailureRecord[]): void {
    for (const record of records) {
      this.#metrics.deadLettered(record.queue, record.kind);
      for (const listener of this.#listeners) {
        // A listener must not turn a committed dead letter into a failed settle (and a retry).
        Promise.resolve()
          .then(() => listener(record))
          .catch((error) =>
            writeLog(this.#logger(), 'error', 'arvo-postgres broker: an onDeadLetter listener failed', {
              queue: record.queue,
              eventId: record.eventId,
              error: describeError(error),
            }),
          );
      }
    }
  }
}
