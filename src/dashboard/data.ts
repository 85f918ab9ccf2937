import type pg from 'pg';
import { type DeadLetter, type DeadLetterFilter, DeadLetters } from '../broker/dead-letters';
import { type BrokerQueueStats, queryQueueStats } from '../broker/stats';
import type { WorkflowDetail, WorkflowFilter, WorkflowPage } from '../history/types';
import { Workflows } from '../history/workflows';
import type { DashboardSettings } from './options';
import { type DashboardStatements, dashboardStatements } from './sql';

/** pg-boss's own queues (`__pgboss__send-it`, ...), left out of the queue page. */
const INTERNAL_QUEUE_PREFIX = '__pgboss__';
/** Minutes of throughput the queue page shows. */
export const THROUGHPUT_MINUTES = 10;
/** One queue with its finished jobs per minute, index 0 = the current minute. */
export interface QueueOverview extends BrokerQueueStats {
  finishedPerMinute: number[];
}

/** Everything the pages read, and the two actions, on one pool. */
export class DashboardData {
  readonly deadLetters: DeadLetters;
  readonly #pool: pg.Pool;
  readonly #settings: DashboardSettings;
  readonly #sql: DashboardStatements;
  readonly #workflows: Workflows;

  constructor(pool: pg.Pool, settings: DashboardSettings) {
    this.#pool = pool;
    this.#settings = settings;
    this.#sql = dashboardStatements(settings);
    this.deadLetters = new DeadLetters({
      pool,
      schema: settings.pgBossSchema,
      deadLetterQueues: settings.deadLetterQueues,
    });
    this.#workflows = new Workflows(pool, settings, settings.history);
  }

  async queues(): Promise<QueueOverview[]> {
    // Two independent statements, side by side: the page costs the slower one, not the sum.
    const [all, throughput] = await Promise.all([
      queryQueueStats(this.#pool, this.#settings.pgBossSchema, [], true, this.#settings.deadLetterQueues),
      this.#pool.query<{ name: string; minutes_ago: number; finished: number }>(this.#sql.throughput, [
        THROUGHPUT_MINUTES,
      ]),
    ]);
    return all
      .filter((queue) => !queue.name.startsWith(INTERNAL_QUEUE_PREFIX))
      .map((queue) => {
        const finishedPerMinute = new Array<number>(THROUGHPUT_MINUTES).fill(0);
        for (const row of throughput.rows) {
          if (row.name === queue.name && row.minutes_ago < THROUGHPUT_MINUTES)
            finishedPerMinute[row.minutes_ago] = row.finished;
        }
        return { ...queue, finishedPerMinute };
      });
  }

  async statuses(): Promise<string[]> {
    const { rows } = await this.#pool.query<{ status: string }>(this.#sql.statuses);
    return rows.map((row) => row.status);
  }

  workflows(filter: WorkflowFilter): Promise<WorkflowPage> {
    return this.#workflows.listWorkflows(filter);
  }

  /** One workflow with its tree, dead letters and timeline; null when no record has `subject`. */
  workflow(subject: string): Promise<WorkflowDetail | null> {
    return this.#workflows.getWorkflow(subject);
  }

  listDeadLetters(filter: DeadLetterFilter): Promise<DeadLetter[]> {
    return this.deadLetters.list(filter);
  }
}
