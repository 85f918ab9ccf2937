/**
 * Scenario 3 — fan-out contention: the orchestrator calls the service 10 times in parallel and
 * collects the 10 replies on one subject (22 hops). Replies of one workflow arrive together and
 * contend for the workflow's lock; the broker must reschedule them without failing or
 * dead-lettering anything.
 */
import type pg from 'pg';
import { qualifiedName } from '../../src/shared/identifiers';
import { checkTarget, formatRatio, type Scenario } from '../lib';
import { hopsPerWorkflow } from '../orchestrator';
import { RIG_TABLES, startWorkflowRig } from '../workflow';
import { runMeasurement } from './throughput';

const FAN_OUT = 10;
/** One step of {@link FAN_OUT} parallel calls. */
const STEPS = [FAN_OUT];

/**
 * From the job table: jobs the broker completed as rescheduled for lock contention (it stores
 * `{ reason: 'lock contention' }` as their output) and jobs whose retry count moved (lock contention
 * must not spend retries).
 */
async function countReschedulesAndRetries(
  pool: pg.Pool,
  queues: string[],
): Promise<{ rescheduled: number; retried: number }> {
  const { rows } = await pool.query(
    `SELECT count(*) FILTER (WHERE output->>'reason' = 'lock contention')::int AS rescheduled,
            count(*) FILTER (WHERE retry_count > 0)::int AS retried
     FROM ${qualifiedName(RIG_TABLES.pgBossSchema, 'job')} WHERE name = ANY($1::text[])`,
    [queues],
  );
  return rows[0];
}

export const fanOutScenario: Scenario = {
  id: 3,
  name: 'fanout',
  title: `fan-out contention: ${FAN_OUT} parallel calls, ${FAN_OUT} replies to one subject (${hopsPerWorkflow(STEPS)} hops)`,
  async run({ quick, databaseUrl, earlier, log }) {
    const workflows = quick ? 15 : 100;
    const rig = await startWorkflowRig(databaseUrl, STEPS);
    try {
      await rig.run(3, 'burst', 60_000); // warm-up, unmeasured
      log(`dispatching ${workflows} fan-out workflows at once`);
      const run = await rig.run(workflows, 'burst', 300_000);
      const stats = await rig.broker.getStats();
      const failedJobs = stats.reduce((sum, queue) => sum + queue.failed, 0);
      const deadLettered = stats.reduce((sum, queue) => sum + queue.deadLettered, 0);
      const jobs = await countReschedulesAndRetries(rig.pool, rig.broker.queues);
      const sequentialHops = earlier.get('throughput')?.hopsPerSecond;
      const ratioToSequential = sequentialHops ? run.hopsPerSecond / sequentialHops : null;
      const baseline = earlier.get('baseline')?.hopsPerSecond;
      return runMeasurement(run, {
        of: 'hop (under contention)',
        ratio: baseline ? { to: 'raw pg-boss hops/s', value: run.hopsPerSecond / baseline } : null,
        targets: [
          checkTarget('failed + dead-lettered jobs', '0', failedJobs + deadLettered, (v) => v === 0, String),
          checkTarget('workflows failed', '0', run.failedWorkflows, (v) => v === 0, String),
          checkTarget('jobs that used a retry', '0', jobs.retried, (v) => v === 0, String),
          checkTarget(
            'hops/s vs scenario 1',
            '≥ 0.6×',
            ratioToSequential,
            (value) => value >= 0.6,
            formatRatio,
          ),
        ],
        details: {
          lockContentionReschedules: run.lockContention,
          rescheduledJobsIncludingWarmUp: jobs.rescheduled,
          jobsThatUsedARetry: jobs.retried,
          failedJobs,
          deadLettered,
          ratioToScenario1HopsPerSecond: ratioToSequential,
        },
      });
    } finally {
      await rig.stop();
    }
  },
};
