import type pg from 'pg';
import { ArvoPostgresError, InvalidOptionError } from '../shared/errors';
import type { Logger } from '../shared/logger';
import { type PeriodicTask, startPeriodic } from '../shared/periodic';
import type { Queryable } from '../shared/transaction';
import { forceOption } from './arguments';
import { QueueDeletionRefusedError } from './errors';
import { QUEUE_CONTROL_TABLE } from './migrations/v1';
import { queueNameOption } from './options';
import { migrateBrokerTables } from './schema';
import {
  deleteQueueSql,
  existingQueuesSql,
  queueControlRowsSql,
  queueDeletionCheckSql,
  setDefaultPrioritySql,
  setPausedSql,
} from './sql';

/**
 * Queue control: pausing a queue in every process, its default priority, and deleting a queue
 * safely. Both settings live in the broker's own table (`arvo_queue_control`, migration data in
 * `migrations/v1.ts`), which each broker reads once a second ({@link QueueControlState}); see
 * docs/design.md, "Queue control".
 */

/** pg-boss's own internal queues (e.g. `__pgboss__send-it`). */
const PGBOSS_INTERNAL_PREFIX = '__pgboss__';

/** How often every broker reads the control table: a pause takes effect within this. */
export const QUEUE_CONTROL_POLL_MS = 1000;

/** The broker's control table is missing (`migrate: false` without the DDL of `brokerMigrationSql`). */
function missingTable(schema: string, error: unknown): unknown {
  if ((error as { code?: unknown }).code !== '42P01') return error;
  return new ArvoPostgresError(
    'MIGRATION_MISSING',
    `The broker's table ${schema}.${QUEUE_CONTROL_TABLE} does not exist: start a broker with migrate: true once, run \`arvo-postgres migrate\`, or apply brokerMigrationSql() as an administrator`,
    { cause: error },
  );
}

async function controlQuery(db: Queryable, schema: string, sql: string, values: unknown[]) {
  try {
    return await db.query(sql, values);
  } catch (error) {
    throw missingTable(schema, error);
  }
}

/** Throws unless `queue` exists in the database. */
async function assertQueueExists(db: Queryable, schema: string, queue: string): Promise<void> {
  const { rows } = await db.query(existingQueuesSql(schema), [[queue]]);
  if (rows.length === 0) throw new InvalidOptionError('queue', `no queue ${JSON.stringify(queue)} exists`);
}

/**
 * Pauses (`paused`) or resumes `queue` in every process: their workers stop or start fetching it
 * within {@link QUEUE_CONTROL_POLL_MS} (jobs being handled finish); `dispatch` keeps accepting.
 */
export async function setQueuePaused(db: Queryable, schema: string, queue: string, paused: boolean) {
  await assertQueueExists(db, schema, queue);
  await controlQuery(db, schema, setPausedSql(schema), [queue, paused]);
}

/** Stores `priority` as `queue`'s default (null: none), for events any process sends to it. */
export async function setDefaultPriority(
  db: Queryable,
  schema: string,
  queue: string,
  priority: number | null,
) {
  await controlQuery(db, schema, setDefaultPrioritySql(schema), [queue, priority]);
}

/** The paused queues of the database (none when the control table does not exist yet). */
export async function pausedQueues(db: Queryable, schema: string): Promise<Set<string>> {
  try {
    const { rows } = await db.query(queueControlRowsSql(schema));
    return new Set(rows.filter((row) => row.paused).map((row) => row.queue as string));
  } catch (error) {
    if ((error as { code?: unknown }).code === '42P01') return new Set();
    throw error;
  }
}

/**
 * Deletes `queue` and its jobs (pg-boss's `delete_queue`) in one transaction that first locks the
 * queue's row and counts its waiting jobs: refused for an internal queue (a dead-letter queue,
 * `internal`, pg-boss's own) and, unless `force`, while jobs wait or run. Returns the jobs deleted
 * that were waiting.
 */
export async function deleteQueue(
  pool: pg.Pool,
  schema: string,
  queue: string,
  options: { force?: boolean; internal?: readonly string[] } = {},
): Promise<number> {
  if (queue.startsWith(PGBOSS_INTERNAL_PREFIX) || options.internal?.includes(queue)) {
    throw new QueueDeletionRefusedError(queue, 'it is an internal queue (dead-letter, unroutable, domained)');
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query(queueDeletionCheckSql(schema), [queue]);
    const found = rows[0];
    if (!found) throw new InvalidOptionError('queue', `no queue ${JSON.stringify(queue)} exists`);
    if (found.dead_letter) {
      throw new QueueDeletionRefusedError(queue, 'it is the dead-letter queue of another queue');
    }
    if (found.waiting > 0 && !options.force) {
      throw new QueueDeletionRefusedError(
        queue,
        `${found.waiting} job(s) are waiting or running in it (force deletes them with the queue)`,
      );
    }
    const [deleteJobs, deleteControl] = deleteQueueSql(schema);
    await client.query(deleteJobs!, [queue]);
    // Absent until the first pause or default priority: a missing table leaves nothing to delete.
    await client.query('SAVEPOINT control');
    await client.query(deleteControl!, [queue]).catch(async (error) => {
      if ((error as { code?: unknown }).code !== '42P01') throw error;
      await client.query('ROLLBACK TO SAVEPOINT control');
    });
    await client.query('COMMIT');
    return found.waiting;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * A broker's queue control: what the control table says (paused queues, default priorities), read
 * every {@link QUEUE_CONTROL_POLL_MS} by each broker, which then stops or starts its workers.
 */
export class QueueControl {
  readonly #schema: string;
  readonly #migrate: boolean;
  #pool: pg.Pool | undefined;
  #poll: PeriodicTask | undefined;
  #paused = new Set<string>();
  #priorities = new Map<string, number>();

  constructor(options: { schema: string; migrate: boolean }) {
    this.#schema = options.schema;
    this.#migrate = options.migrate;
  }

  /**
   * Creates the table (option `migrate`), reads it (a clear error when it is missing), then polls it,
   * calling `changed` (which applies the pauses) after each read.
   */
  async start(pool: pg.Pool, changed: () => Promise<void>, logger: Logger): Promise<void> {
    this.#pool = pool;
    if (this.#migrate) await migrateBrokerTables(pool, this.#schema);
    await this.refresh();
    this.#poll = startPeriodic(
      QUEUE_CONTROL_POLL_MS,
      async () => {
        await this.refresh();
        await changed();
      },
      logger,
      'arvo-postgres broker: reading the queue control table failed; retried in a second',
    );
  }

  stop(): Promise<void> {
    return this.#poll?.stop() ?? Promise.resolve();
  }

  /** Reads the control table. */
  async refresh(): Promise<void> {
    const { rows } = await controlQuery(this.#pool!, this.#schema, queueControlRowsSql(this.#schema), []);
    this.#paused = new Set(rows.filter((row) => row.paused).map((row) => row.queue));
    this.#priorities = new Map(
      rows.filter((row) => row.default_priority !== null).map((row) => [row.queue, row.default_priority]),
    );
  }

  isPaused(queue: string): boolean {
    return this.#paused.has(queue);
  }

  /** The default priority of `queue`'s jobs, as last read. */
  defaultPriority(queue: string): number | undefined {
    return this.#priorities.get(queue);
  }

  /** Stores `queue`'s default priority (a registration's `priority`) and reads the table again. */
  async storeDefaultPriority(queue: string, priority: number | null): Promise<void> {
    await setDefaultPriority(this.#pool!, this.#schema, queue, priority);
    await this.refresh();
  }

  /** Pauses or resumes `queue` in every process (see {@link setQueuePaused}). */
  setPaused(queue: unknown, paused: boolean): Promise<void> {
    return setQueuePaused(this.#pool!, this.#schema, queueNameOption(queue, 'queue'), paused);
  }

  /** Deletes `queue` (see {@link deleteQueue}); `internal`: the broker's internal queues. */
  delete(queue: unknown, options: unknown, internal: string[]): Promise<number> {
    return deleteQueue(this.#pool!, this.#schema, queueNameOption(queue, 'queue'), {
      force: forceOption(options),
      internal,
    });
  }
}
