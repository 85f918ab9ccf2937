import { type Logger, writeLog } from '../shared/logger';
import { describeError } from '../shared/redact';
import { isConnectionFailure } from './errors';

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 2000;

/**
 * Failed attempts whose settle (fail or dead-letter) could not reach PostgreSQL. Without this list
 * such a job stays `active` until pg-boss's expiry (`expireInSeconds`, 5 minutes by default, plus
 * the monitor's interval) although nothing works on it any more. Each settle is retried here with
 * backoff (250 ms doubling to 2 s) until the database answers, so the job is retried within seconds
 * of its return. Settles are fenced to the attempt that was fetched: once pg-boss or another worker
 * has settled or taken the job, a retry changes nothing and the entry is dropped.
 */
export class UnsettledAttempts {
  readonly #pending = new Map<string, () => Promise<void>>();
  readonly #logger: () => Logger;
  #timer: NodeJS.Timeout | undefined;
  #delayMs = FIRST_DELAY_MS;

  constructor(logger: () => Logger) {
    this.#logger = logger;
  }

  /** Keeps `settle` (fenced; throws while the database is unreachable) to retry until it succeeds. */
  add(jobId: string, settle: () => Promise<void>): void {
    this.#pending.set(jobId, settle);
    this.#delayMs = FIRST_DELAY_MS;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer || this.#pending.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#retry().then(() => this.#schedule());
    }, this.#delayMs);
    this.#timer.unref();
  }

  async #retry(): Promise<void> {
    let unreachable = false;
    for (const [jobId, settle] of [...this.#pending]) {
      try {
        await settle();
        this.#pending.delete(jobId);
      } catch (error) {
        if (isConnectionFailure(error)) {
          unreachable = true;
          break;
        }
        // Settled or taken elsewhere meanwhile (the fence matched nothing), or refused for good.
        this.#pending.delete(jobId);
        writeLog(this.#logger(), 'debug', 'arvo-postgres broker: a deferred settle was not applied', {
          jobId,
          error: describeError(error),
        });
      }
    }
    this.#delayMs = unreachable ? Math.min(MAX_DELAY_MS, this.#delayMs * 2) : FIRST_DELAY_MS;
  }

  /** Tries once more, then forgets what is left (pg-boss's expiry retries those jobs). */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.size > 0) await this.#retry();
    this.#pending.clear();
  }
}
