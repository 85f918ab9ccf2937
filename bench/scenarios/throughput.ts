/**
 * Scenario 1 — workflow throughput: the fixture orchestrator calls one service 3 times in sequence
 * and completes (8 hops), with every workflow dispatched at once. Judged against the raw pg-boss
 * baseline measured earlier in the same run.
 */
import {
  checkTarget,
  formatMs,
  formatRatio,
  type Scenario,
  type ScenarioMeasurement,
  summarize,
} from '../lib';
import {
  type RigBrokerOptions,
  SEQUENTIAL_STEPS,
  startWorkflowRig,
  type WorkflowRig,
  type WorkflowRun,
} from '../workflow';

/** Workflows run (unmeasured) before each measured burst. */
const WARM_UP_WORKFLOWS = 20;

/** Workflows dispatched at once. */
export function throughputWorkflows(quick: boolean): number {
  return quick ? 100 : 1000;
}

/** Runs scenario 1's burst on `databaseUrl` (also used by scenario 6 on a pre-seeded database). */
export async function measureThroughput(
  databaseUrl: string,
  workflows: number,
  log: (message: string) => void,
  beforeRun?: (rig: WorkflowRig) => Promise<void>,
  brokerOptions: RigBrokerOptions = {},
): Promise<WorkflowRun> {
  const rig = await startWorkflowRig(databaseUrl, SEQUENTIAL_STEPS, brokerOptions);
  try {
    await beforeRun?.(rig);
    // Warm-up (JIT, prepared statements, pool connections), so the first scenario in a process
    // is not the only one paying for it.
    await rig.run(WARM_UP_WORKFLOWS, 'burst', 60_000);
    log(`dispatching ${workflows} workflows at once`);
    return await rig.run(workflows, 'burst', 300_000);
  } finally {
    await rig.stop();
  }
}

/**
 * A workflow scenario's measurement of `run`: its rates, hop latency (`of` says under what), cost and
 * pool, around the scenario's own ratio, targets and details.
 */
export function runMeasurement(
  run: WorkflowRun,
  measured: Pick<ScenarioMeasurement, 'ratio' | 'targets'> & {
    of: string;
    details?: Record<string, unknown>;
  },
): ScenarioMeasurement {
  return {
    throughput: { value: run.workflowsPerSecond, unit: 'workflows/s' },
    hopsPerSecond: run.hopsPerSecond,
    latency: { ...summarize(run.hopLatencies), of: measured.of },
    ratio: measured.ratio,
    targets: measured.targets,
    details: { ...describeRun(run), ...measured.details },
    cost: { per: 'hop', ...run.costPerHop },
    pool: run.pool,
  };
}

/** The figures every workflow scenario reports about a run. */
function describeRun(run: WorkflowRun): Record<string, unknown> {
  return {
    workflows: run.workflows,
    hops: run.hops,
    elapsedSeconds: run.elapsedSeconds,
    workflowsPerSecond: run.workflowsPerSecond,
    hopsPerSecond: run.hopsPerSecond,
    deliveries: run.deliveries,
    hopLatencyMs: summarize(run.hopLatencies),
    workflowLatencyMs: summarize(run.workflowLatencies),
    lockContention: run.lockContention,
    failedWorkflows: run.failedWorkflows,
    statementsPerHopOnSharedPool: run.statementsPerHop,
    costPerHop: run.costPerHop,
  };
}

export const throughputScenario: Scenario = {
  id: 1,
  name: 'throughput',
  title: 'workflow throughput: broker + orchestrator calling a service 3× (8 hops), all dispatched at once',
  async run({ quick, databaseUrl, earlier, log }) {
    const run = await measureThroughput(databaseUrl, throughputWorkflows(quick), log);
    const baseline = earlier.get('baseline')?.hopsPerSecond;
    const ratio = baseline ? run.hopsPerSecond / baseline : null;
    const perJobBaseline = earlier.get('baseline-per-job')?.hopsPerSecond;
    const perJobRatio = perJobBaseline ? run.hopsPerSecond / perJobBaseline : null;
    const { nodeCpuMs, postgresCpuMs, writeTransactions } = run.costPerHop;
    return runMeasurement(run, {
      of: 'hop (under load)',
      ratio: ratio === null ? null : { to: 'raw pg-boss hops/s', value: ratio },
      targets: [
        checkTarget(
          'hops/s vs raw pg-boss, one transaction per job',
          '≥ 1.2×',
          perJobRatio,
          (value) => value >= 1.2,
          formatRatio,
        ),
        checkTarget('hops/s vs raw pg-boss, batched', '≥ 0.4×', ratio, (value) => value >= 0.4, formatRatio),
        checkTarget('commits per hop (under load)', '≤ 0.6', writeTransactions, (value) => value <= 0.6),
        checkTarget(
          'CPU ms per hop, Node + PostgreSQL (under load)',
          '≤ 1.5 ms',
          postgresCpuMs === null ? null : nodeCpuMs + postgresCpuMs,
          (value) => value <= 1.5,
          formatMs,
        ),
        checkTarget('workflows failed', '0', run.failedWorkflows, (value) => value === 0, String),
      ],
      details: { ratioToPerJobTransactionBaseline: perJobRatio },
    });
  },
};
