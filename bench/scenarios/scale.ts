/**
 * Scenario 6 — scale: scenario 1 again on a database that already retains 1,000,000 completed jobs
 * in the broker's queues and 100,000 finished workflow records, seeded with set-based
 * `INSERT … SELECT generate_series` straight into pg-boss's job table and the memory's state table,
 * then vacuumed, analysed and checkpointed (the state autovacuum and the checkpointer would
 * reach). Also times `getStats()`, which must count over those rows.
 */
import type pg from 'pg';
import { qualifiedName } from '../../src/shared/identifiers';
import {
  checkTarget,
  formatMs,
  formatRatio,
  type LatencySummary,
  now,
  type Scenario,
  summarize,
} from '../lib';
import { RIG_TABLES, type WorkflowRig } from '../workflow';
import { measureThroughput, runMeasurement, throughputWorkflows } from './throughput';

/** `$1` count, `$2` queue names: completed jobs spread over the queues, finished in the last 10 minutes. */
function seedJobsSql(schema: string): string {
  const job = qualifiedName(schema, 'job');
  const queue = qualifiedName(schema, 'queue');
  return `INSERT INTO ${job} (id, name, data, state, policy, retry_limit, retry_delay, retry_backoff,
  expire_seconds, deletion_seconds, created_on, start_after, started_on, completed_on, keep_until)
SELECT gen_random_uuid(), q.name,
  jsonb_build_object('id', gen_random_uuid(), 'type', 'com.bench.service', 'source', 'arvo.orc.bench',
    'specversion', '1.0', 'subject', md5(g::text) || repeat('s', 140), 'to', q.name,
    'time', now(), 'data', jsonb_build_object('step', g % 3)),
  'completed', q.policy, q.retry_limit, q.retry_delay, q.retry_backoff, q.expire_seconds, q.deletion_seconds,
  now() - interval '20 minutes', now() - interval '20 minutes', now() - interval '20 minutes',
  now() - (g % 600) * interval '1 second', now() + interval '14 days'
FROM generate_series(1, $1::int) AS g
JOIN ${queue} q ON q.name = ($2::text[])[1 + g % cardinality($2::text[])]`;
}

/**
 * `$1` count: finished root workflows, each a copy of a real finished record (the orchestrator's
 * xstate snapshot and all) under a new subject.
 */
function seedWorkflowsSql(schema: string, table: string): string {
  const state = qualifiedName(schema, table);
  return `INSERT INTO ${state} (subject, data, version, parent_subject, root_subject,
  status, execution_status, orchestrator, initiator, source, created_at, updated_at)
SELECT s.subject, jsonb_set(t.data, '{subject}', to_jsonb(s.subject)), t.version, NULL, s.subject,
  t.status, t.execution_status, t.orchestrator, t.initiator, t.source,
  now() - interval '30 minutes', now() - (s.g % 1200) * interval '1 second'
FROM (SELECT * FROM ${state} WHERE status = 'done' AND parent_subject IS NULL LIMIT 1) t,
  (SELECT g, 'seed.' || md5(g::text) || repeat('w', 140) AS subject FROM generate_series(1, $1::int) AS g) s`;
}

async function seed(
  pool: pg.Pool,
  queues: string[],
  counts: { jobs: number; workflows: number },
  log: (message: string) => void,
): Promise<Record<string, number>> {
  const started = now();
  log(`seeding ${counts.jobs} completed jobs over ${queues.length} queues`);
  await pool.query(seedJobsSql(RIG_TABLES.pgBossSchema), [counts.jobs, queues]);
  const jobsSeconds = (now() - started) / 1000;
  log(`seeding ${counts.workflows} finished workflows`);
  await pool.query(seedWorkflowsSql(RIG_TABLES.memorySchema, RIG_TABLES.stateTable), [counts.workflows]);
  const workflowsSeconds = (now() - started) / 1000 - jobsSeconds;
  log('vacuum analyze');
  await pool.query(`VACUUM (ANALYZE) ${qualifiedName(RIG_TABLES.pgBossSchema, 'job')}`);
  await pool.query(`VACUUM (ANALYZE) ${qualifiedName(RIG_TABLES.memorySchema, RIG_TABLES.stateTable)}`);
  // The seed wrote about a gigabyte of WAL: flush it now rather than in a checkpoint during the run.
  await pool.query('CHECKPOINT').catch((error: Error) => log(`CHECKPOINT skipped: ${error.message}`));
  return { jobsSeconds, workflowsSeconds, totalSeconds: (now() - started) / 1000 };
}

/** Latencies of `calls` sequential `getStats()` calls. */
async function timeGetStats(rig: WorkflowRig, calls: number): Promise<LatencySummary> {
  const latencies: number[] = [];
  for (let call = 0; call < calls; call += 1) {
    const started = now();
    await rig.broker.getStats();
    latencies.push(now() - started);
  }
  return summarize(latencies);
}

export const scaleScenario: Scenario = {
  id: 6,
  name: 'scale',
  title: 'scale: scenario 1 with 1,000,000 retained jobs and 100,000 finished workflows; getStats()',
  async run({ quick, databaseUrl, earlier, log }) {
    const workflows = throughputWorkflows(quick);
    const counts = quick ? { jobs: 50_000, workflows: 5_000 } : { jobs: 1_000_000, workflows: 100_000 };

    let emptyHopsPerSecond = earlier.get('throughput')?.hopsPerSecond;
    if (emptyHopsPerSecond === undefined) {
      log('scenario 1 did not run: measuring the empty run here first');
      emptyHopsPerSecond = (await measureThroughput(databaseUrl, workflows, log)).hopsPerSecond;
    }

    let seeding: Record<string, number> = {};
    let emptyStats = summarize([]);
    let stats = summarize([]);
    const run = await measureThroughput(databaseUrl, workflows, log, async (rig) => {
      emptyStats = await timeGetStats(rig, 5);
      // One real workflow first: its finished record is the template of the seeded ones.
      await rig.run(1, 'sequential', 30_000);
      seeding = await seed(rig.pool, rig.broker.queues, counts, log);
      log('timing getStats()');
      stats = await timeGetStats(rig, 20);
    });
    const ratio = run.hopsPerSecond / emptyHopsPerSecond;
    return runMeasurement(run, {
      of: 'hop (under load, seeded)',
      ratio: { to: 'empty run hops/s', value: ratio },
      targets: [
        checkTarget('hops/s vs empty run', '≥ 0.9×', ratio, (value) => value >= 0.9, formatRatio),
        checkTarget('getStats() p50', '≤ 50 ms', stats.p50, (value) => value <= 50, formatMs),
      ],
      details: {
        seeded: counts,
        seedingSeconds: seeding,
        emptyRunHopsPerSecond: emptyHopsPerSecond,
        getStatsLatencyMs: stats,
        getStatsLatencyBeforeSeedingMs: emptyStats,
      },
    });
  },
};
