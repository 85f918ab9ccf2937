import type pg from 'pg';
import { type PeriodicTask, startPeriodic } from '../shared/periodic';
import { describeError } from '../shared/redact';
import { inTransaction } from '../shared/transaction';
import type { DeadLetterAlerts } from './dead-letter-alerts';
import { failureHistory, type JobFailureRecord } from './dead-letters';
import { EventExpiredError } from './errors';
import type { HistoryRecorder } from './history';
import { deadLetterAttempts } from './pgboss';
import { expiringJobsSql } from './sql';
import type { BrokerRuntime } from './types';
import { reportUnreportedDeadLetters } from './unreported-dead-letters';

/** Jobs one sweep transaction moves at most; the sweep repeats while batches come back full. */
const EXPIRY_BATCH_SIZE = 500;

interface ExpiringJob {
  name: string;
  id: string;
  retry_count: number;
  output: unknown;
  event_id: string | null;
  event_type: string | null;
  retention_seconds: number;
  created_on: Date;
  subject: string | null;
  source: string | null;
  destination: string | null;
  traceparent: string | null;
}

/**
 * The broker's retention: every waiting job (of any queue in the database with a dead-letter
 * queue) that has waited longer than its queue's `retentionSeconds` is moved, event intact, to its
 * dead-letter queue with a failure record of kind `expired`, from where it can be replayed.
 * pg-boss's own retention never deletes such a job first: the broker inserts every job with its
 * `keep_until` out of reach (see `OUT_OF_REACH_RETENTION_SECONDS`). Returns how many were moved.
 */
export async function deadLetterExpiredJobs(
  pool: pg.Pool,
  schema: string,
  history: HistoryRecorder,
  alerts?: DeadLetterAlerts,
): Promise<number> {
  let moved = 0;
  for (;;) {
    const records = await deadLetterExpiredBatch(pool, schema, history);
    alerts?.deadLettered(records);
    moved += records.length;
    if (records.length < EXPIRY_BATCH_SIZE) return moved;
  }
}

/**
 * Runs {@link deadLetterExpiredJobs}, the report of dead letters pg-boss made on its own
 * (`unreported-dead-letters.ts`, of `deadLetterQueues`), then the event history's age cap, every
 * maintenance interval.
 */
export function startExpirySweep(
  { pool, options, history, logger }: BrokerRuntime,
  alerts: DeadLetterAlerts,
  deadLetterQueues: () => string[],
): PeriodicTask {
  return startPeriodic(
    options.maintenanceIntervalSeconds * 1000,
    async () => {
      await deadLetterExpiredJobs(pool, options.schema, history, alerts);
      await reportUnreportedDeadLetters(pool, options.schema, deadLetterQueues(), alerts);
      await history.sweep(pool);
    },
    logger(),
    'arvo-postgres broker: the retention sweep (expired events to the dead-letter queue) failed; retried next interval',
  );
}

/** Dead-letters one batch of expired jobs in one transaction; returns their records once committed. */
async function deadLetterExpiredBatch(
  pool: pg.Pool,
  schema: string,
  history: HistoryRecorder,
): Promise<JobFailureRecord[]> {
  return inTransaction(pool, async (client) => {
    const { rows } = await client.query<ExpiringJob>(expiringJobsSql(schema), [EXPIRY_BATCH_SIZE]);
    const byQueue = new Map<string, Array<{ id: string; retry_count: number; output: JobFailureRecord }>>();
    const failedAt = new Date().toISOString();
    const records: JobFailureRecord[] = [];
    for (const row of rows) {
      const record: JobFailureRecord = {
        kind: 'expired',
        queue: row.name,
        attempt: row.retry_count + 1,
        eventId: row.event_id,
        eventType: row.event_type,
        error: describeError(new EventExpiredError(row.event_id ?? row.id, row.name, row.retention_seconds)),
        failedAt,
        history: failureHistory(row.output),
      };
      records.push(record);
      await history.record(
        client,
        { name: row.name, id: row.id, retryCount: row.retry_count, startedOn: row.created_on },
        'expired',
        {
          event: {
            id: row.event_id ?? row.id,
            type: row.event_type ?? undefined,
            subject: row.subject ?? '',
            source: row.source ?? undefined,
            to: row.destination,
            traceparent: row.traceparent,
          },
          error: { ...record.error, kind: 'expired' },
        },
      );
      const attempts = byQueue.get(row.name) ?? [];
      attempts.push({ id: row.id, retry_count: row.retry_count, output: record });
      byQueue.set(row.name, attempts);
    }
    for (const [queue, attempts] of byQueue) {
      await deadLetterAttempts(client, schema, queue, attempts);
    }
    return records;
  });
}
