import type pg from 'pg';
import { deadLetterQueuesOption } from './options';
import { pausedQueues } from './queue-control';
import { queueStatsSql } from './sql';

/** Exact counts of one queue (see `PostgresEventBroker.getStats`). */
export interface BrokerQueueStats {
  name: string;
  /** Waiting to run (created or retry), including `deferred`. */
  queued: number;
  active: number;
  /** Waiting with a start time in the future (retry backoff, lock-contention reschedule). */
  deferred: number;
  /** Terminally failed rows still retained (their dead-letter copies are in `deadLettered` of this queue). */
  failed: number;
  /** Finished rows still retained (completed; also cancelled through pg-boss directly). */
  completed: number;
  /** Every retained row. */
  total: number;
  /** Copies of this queue's jobs waiting in dead-letter queues (what `DeadLetters.list` returns). */
  deadLettered: number;
  /**
   * Of `deadLettered`, those dead-lettered in the last {@link RECENT_DEAD_LETTER_WINDOW_SECONDS}: a
   * value to alert on that falls back to 0 once nothing new fails (unlike the dead-letter queue's age).
   */
  deadLetteredRecently: number;
  /** Age of the oldest job ready to run, or null when none is ready. */
  oldestQueuedAgeMs: number | null;
  /** Paused (`pauseQueue`, `arvo-postgres queues pause`): no worker fetches its jobs. */
  paused: boolean;
}

/** The window of {@link BrokerQueueStats.deadLetteredRecently}: 15 minutes. */
export const RECENT_DEAD_LETTER_WINDOW_SECONDS = 900;

/**
 * Exact per-queue counts in one statement (`queueStatsSql`): `names` in that order, and with `all`
 * every other queue of the database after them. `deadLetterQueues`: the dead-letter queues to count
 * besides those some queue names (as {@link DeadLetters}; default the broker's default one). Used by
 * the broker's `getStats`, its metrics and the CLI, which needs no running broker.
 */
export async function queryQueueStats(
  db: Pick<pg.Pool, 'query'>,
  schema: string,
  names: string[],
  all: boolean,
  deadLetterQueues?: string[],
): Promise<BrokerQueueStats[]> {
  const paused = await pausedQueues(db, schema);
  const { rows } = await db.query(queueStatsSql(schema, names.length), [
    names,
    all,
    deadLetterQueuesOption(deadLetterQueues),
    RECENT_DEAD_LETTER_WINDOW_SECONDS,
  ]);
  return rows.map((row) => ({
    name: row.name,
    queued: row.queued,
    active: row.active,
    deferred: row.deferred,
    failed: row.failed,
    completed: row.completed,
    total: row.total,
    deadLettered: row.dead_lettered,
    deadLetteredRecently: row.dead_lettered_recently,
    oldestQueuedAgeMs: row.oldest_queued_age_ms,
    paused: paused.has(row.name),
  }));
}
