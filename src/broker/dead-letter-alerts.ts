import { type Logger, writeLog } from '../shared/logger';
import { describeError } from '../shared/redact';
import type { JobFailureRecord } from './dead-letters';
import type { BrokerMetrics } from './metrics';

/**
 * Called once for each dead letter, by one process, after the move committed: the failure record
 * stored with the dead letter (queue, kind, event id and type, error, history). A listener that
 * throws (or rejects) is logged and changes nothing.
 */
export type DeadLetterListener = (deadLetter: JobFailureRecord) => void | Promise<void>;

/**
 * The one place every dead-lettering path of a process reports to once it committed: the failure
 * policy (`settle.ts`), its deferred retries (`unsettled.ts`) and the expiry sweep (`retention.ts`)
 * count `arvo_postgres.jobs.dead_lettered` and call the `onDeadLetter` listeners; the sweep of dead
 * letters pg-boss made (`unreported-dead-letters.ts`) calls the listeners.
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

  /** Whether any listener is registered (the sweep of unreported dead letters runs only then). */
  get listening(): boolean {
    return this.#listeners.length > 0;
  }

  /** `records` were dead-lettered by this process and committed. */
  deadLettered(records: JobFailureRecord[]): void {
    for (const record of records) this.#metrics.deadLettered(record.queue, record.kind);
    this.reportMadeElsewhere(records);
  }

  /** `records` were dead-lettered by pg-boss (or another process that left them unreported), claimed by this one. */
  reportMadeElsewhere(records: JobFailureRecord[]): void {
    for (const record of records) {
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
