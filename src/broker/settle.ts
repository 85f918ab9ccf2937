import type { ArvoEvent } from 'arvo-core';
import { writeLog } from '../shared/logger';
import { describeError } from '../shared/redact';
import type { DeadLetterAlerts } from './dead-letter-alerts';
import { failureHistory, type JobFailureRecord } from './dead-letters';
import { isConnectionFailure } from './errors';
import { nameBasedUuid } from './event-codec';
import { JobTransaction } from './job-transaction';
import type { FetchedJob, JobResult } from './pgboss';
import { actionFor, classifyFailure } from './policy';
import { OUT_OF_REACH_RETENTION_SECONDS } from './sql';
import type { BrokerRuntime, Registration } from './types';
import { markedUnreported } from './unreported-dead-letters';
import type { UnsettledAttempts } from './unsettled';

/**
 * Settles a failed attempt by the error policy (`policy.ts`): retry, dead-letter, or reschedule on
 * lock contention. See docs/design.md, "Settling failures".
 */
export class Settlement {
  readonly #runtime: BrokerRuntime;
  readonly #unsettled: UnsettledAttempts;
  readonly #alerts: DeadLetterAlerts;

  constructor(runtime: BrokerRuntime, unsettled: UnsettledAttempts, alerts: DeadLetterAlerts) {
    this.#runtime = runtime;
    this.#unsettled = unsettled;
    this.#alerts = alerts;
  }

  /**
   * Applies the policy and settles the job at once, on its own: a batch's other jobs may still be
   * running, and pg-boss would only settle `perJobResults` after all of them. Returns pg-boss's
   * disposition: `completed` once settled here (a fenced no-op for pg-boss), or `failed` with the
   * record when settling here failed (pg-boss then fails it, or its claim expires).
   */
  async failure(
    registration: Registration,
    job: FetchedJob,
    event: ArvoEvent | null,
    error: unknown,
  ): Promise<JobResult> {
    const { metrics, options } = this.#runtime;
    const kind = classifyFailure(error);
    const action = actionFor(kind, options.executionViolation);
    const record: JobFailureRecord = {
      kind,
      queue: job.name,
      attempt: job.retryCount + 1,
      eventId: event?.id ?? (typeof job.data?.id === 'string' ? job.data.id : null),
      eventType: event?.type ?? (typeof job.data?.type === 'string' ? job.data.type : null),
      error: describeError(error),
      failedAt: new Date().toISOString(),
      history: failureHistory(job.output),
    };
    const deadLetter = action === 'deadLetter';
    const { boss, history, pool } = this.#runtime;
    const terminal = deadLetter || job.retryCount >= job.retryLimit;
    const outcome = terminal ? 'dead-lettered' : 'failed';
    // Retried as a whole by `unsettled.ts`: the alert follows whichever attempt commits.
    const settle = async () => {
      await history.settleWith(
        pool,
        (db) => history.record(db, job, outcome, { event, error: { ...record.error, kind } }),
        (db) => (deadLetter ? boss.deadLetter(job, record, db) : boss.fail(job, record, db)),
      );
      if (terminal) this.#alerts.deadLettered([record]);
    };
    try {
      if (action === 'reschedule') {
        const { minDelayMs, maxDelayMs } = options.lockContention;
        const delayMs = Math.round(minDelayMs + Math.random() * (maxDelayMs - minDelayMs));
        await this.#reschedule(registration, job, delayMs, 'lock contention');
        metrics.lockContention(job.name);
        writeLog(this.#runtime.logger(), 'debug', 'arvo-postgres broker: lock contention, job rescheduled', {
          queue: job.name,
          jobId: job.id,
        });
        return { id: job.id, status: 'completed' };
      }
      writeLog(
        this.#runtime.logger(),
        terminal ? 'error' : 'warn',
        terminal
          ? `arvo-postgres broker: job dead-lettered (${kind})`
          : `arvo-postgres broker: job failed, will be retried (${kind})`,
        {
          queue: job.name,
          jobId: job.id,
          attempt: record.attempt,
          error: { name: record.error.name, message: record.error.message },
        },
      );
      await settle();
      metrics.failed(job.name, kind);
      return { id: job.id, status: 'completed' };
    } catch (settleError) {
      if (isConnectionFailure(settleError)) {
        // Retried here until PostgreSQL is back, instead of leaving the job active until it expires.
        this.#unsettled.add(job.id, settle);
      }
      writeLog(
        this.#runtime.logger(),
        'warn',
        deadLetter
          ? 'arvo-postgres broker: could not dead-letter a failed job; pg-boss will dead-letter it'
          : 'arvo-postgres broker: could not settle a failed job; pg-boss will retry it',
        {
          queue: job.name,
          jobId: job.id,
          error: describeError(settleError),
        },
      );
      // pg-boss settles the batch's results afterwards (fenced the same way): keep the policy. A
      // dead letter it makes that way is marked for the sweep of unreported dead letters (no listener heard of it).
      const output = terminal ? markedUnreported(record) : record;
      return { id: job.id, status: deadLetter ? 'deadletter' : 'failed', output };
    }
  }

  /**
   * `job`'s work was undone through no fault of its own (`stop()` passed its deadline while its handler
   * ran, or its batch rolled back): the job goes back to its queue due at once, without costing a retry
   * (rescheduled as on lock contention), for any process to take. When that cannot be written, the
   * attempt is failed as any other (see docs/design.md, "Stopping").
   */
  async handBack(
    registration: Registration,
    job: FetchedJob,
    event: ArvoEvent,
    error: unknown,
    reason: 'broker stopped' | 'batch rolled back',
  ): Promise<JobResult> {
    try {
      await this.#reschedule(registration, job, 0, reason);
    } catch (handBackError) {
      writeLog(
        this.#runtime.logger(),
        'warn',
        `arvo-postgres broker: could not hand a job back (${reason})`,
        {
          queue: job.name,
          jobId: job.id,
          error: describeError(handBackError),
        },
      );
      return this.failure(registration, job, event, error);
    }
    writeLog(this.#runtime.logger(), 'info', `arvo-postgres broker: job handed back (${reason})`, {
      queue: job.name,
      jobId: job.id,
    });
    return { id: job.id, status: 'completed' };
  }

  /**
   * The job is not failed (which would cost a retry) but replaced, in one transaction, by a copy
   * starting after `delayMs` (remaining retry budget, id derived from the job's), and completed.
   * Delayed jobs send no NOTIFY: the local worker is woken when the copy comes due. See
   * docs/design.md, "Lock contention".
   */
  async #reschedule(
    registration: Registration,
    job: FetchedJob,
    delayMs: number,
    reason: string,
  ): Promise<void> {
    const { boss, pool, databaseId } = this.#runtime;
    const transaction = new JobTransaction(pool, databaseId, job.signal);
    try {
      const copyId = nameBasedUuid(`arvo-reschedule:${job.id}`);
      await boss.insert(
        job.name,
        [
          {
            id: copyId,
            data: job.data,
            startAfter: `${delayMs / 1000} seconds`,
            ...(job.groupId ? { group: { id: job.groupId } } : {}),
            retryLimit: Math.max(0, job.retryLimit - job.retryCount),
            retentionSeconds: OUT_OF_REACH_RETENTION_SECONDS,
          },
        ],
        transaction,
      );
      await this.#runtime.history.record(transaction, job, 'rescheduled');
      await boss.complete(job, { rescheduledAs: copyId, reason }, 'not rescheduled', transaction);
      await transaction.commit();
    } catch (error) {
      await transaction.rollback();
      throw error;
    }
    const workerId = registration.workerId;
    if (workerId && delayMs > 0) setTimeout(() => boss.notifyWorker(workerId), delayMs + 5).unref();
  }
}
