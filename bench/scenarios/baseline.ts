/**
 * Scenario 4 — raw pg-boss baseline. The workflow of scenario 1 without Arvo or the broker: the
 * same 8 hops over the same three queues (orchestrator → service → orchestrator … → initiator),
 * each handler inserting the next hop. This is what PostgreSQL and pg-boss alone allow on this
 * machine, and scenario 1 is judged against it.
 */
import { type Db, type Job, PgBoss } from 'pg-boss';
import {
  costPer,
  countdown,
  now,
  type PoolUsage,
  type Scenario,
  type ScenarioContext,
  type ScenarioMeasurement,
  startCostMeter,
  summarize,
  withTimeout,
} from '../lib';

/** Hops per workflow, as in scenario 1: init, 3 × (call + reply), completion. */
export const HOPS_PER_WORKFLOW = 8;

const ORCHESTRATOR = 'bench_orchestrator';
const SERVICE = 'bench_service';
const INITIATOR = 'bench_initiator';

/**
 * The best settings found on a 2-core machine (tried: batch 1/10/20/50/100, 1–4 workers, plain
 * handlers that `insert` then let pg-boss complete vs `transactional` handlers that insert and
 * complete in one commit). Every queue uses NOTIFY; a full batch fetches again at once.
 */
export const BASELINE_SETTINGS = {
  batchSize: 50,
  localConcurrency: 2,
  transactional: true,
  pollingIntervalSeconds: 0.5,
  notifyPollingIntervalSeconds: 1,
  burstWhenBatchFull: true,
} as const;

interface HopData {
  workflow: number;
  hop: number;
  /** Epoch milliseconds (sub-ms) when the hop was sent. */
  sentAt: number;
  /** Epoch milliseconds when the workflow was dispatched. */
  startedAt: number;
}

/** Wall clock with sub-millisecond precision, comparable across handlers. */
function epochNow(): number {
  return performance.timeOrigin + now();
}

/** Where hop `hop + 1` goes after hop `hop` was handled. */
function nextQueue(hop: number): string {
  const next = hop + 1;
  if (next === HOPS_PER_WORKFLOW - 1) return INITIATOR;
  return next % 2 === 1 ? SERVICE : ORCHESTRATOR;
}

interface Chain {
  boss: PgBoss;
  hopLatencies: number[];
  workflowLatencies: number[];
  /** Called with each finished workflow number. */
  onWorkflowDone: (workflow: number) => void;
  stop(): Promise<void>;
}

async function startChain(databaseUrl: string, settings: typeof BASELINE_SETTINGS): Promise<Chain> {
  const boss = new PgBoss({
    connectionString: databaseUrl,
    useListenNotify: true,
    schedule: false,
    max: 10,
  });
  boss.on('error', (error) => console.error('[baseline] pg-boss error:', error.message));
  await boss.start();
  for (const name of [ORCHESTRATOR, SERVICE, INITIATOR]) await boss.createQueue(name, { notify: true });

  const chain: Chain = {
    boss,
    hopLatencies: [],
    workflowLatencies: [],
    onWorkflowDone: () => {},
    stop: () => boss.stop({ graceful: true, timeout: 10_000 }),
  };

  const forward = async (jobs: Job<HopData>[], db?: Db) => {
    const received = epochNow();
    const byQueue = new Map<string, { data: HopData }[]>();
    for (const job of jobs) {
      chain.hopLatencies.push(received - job.data.sentAt);
      const queue = nextQueue(job.data.hop);
      const list = byQueue.get(queue) ?? [];
      list.push({ data: { ...job.data, hop: job.data.hop + 1, sentAt: epochNow() } });
      byQueue.set(queue, list);
    }
    await Promise.all([...byQueue].map(([queue, next]) => boss.insert(queue, next, db ? { db } : undefined)));
  };
  const { batchSize, localConcurrency, transactional, pollingIntervalSeconds, notifyPollingIntervalSeconds } =
    settings;
  const workOptions = {
    batchSize,
    localConcurrency,
    pollingIntervalSeconds,
    notifyPollingIntervalSeconds,
    burstWhenBatchFull: settings.burstWhenBatchFull,
  };
  for (const queue of [ORCHESTRATOR, SERVICE]) {
    if (transactional) {
      const transactionalOptions = { ...workOptions, transactional: true } as const;
      await boss.work<HopData, void, typeof transactionalOptions>(queue, transactionalOptions, (jobs, tx) =>
        forward(jobs, tx),
      );
    } else {
      await boss.work<HopData>(queue, workOptions, (jobs) => forward(jobs));
    }
  }
  await boss.work<HopData>(INITIATOR, workOptions, async (jobs) => {
    const received = epochNow();
    for (const job of jobs) {
      chain.hopLatencies.push(received - job.data.sentAt);
      chain.workflowLatencies.push(received - job.data.startedAt);
      chain.onWorkflowDone(job.data.workflow);
    }
  });
  return chain;
}

function dispatch(chain: Chain, workflow: number): Promise<string | null> {
  const sentAt = epochNow();
  return chain.boss.send(ORCHESTRATOR, { workflow, hop: 0, sentAt, startedAt: sentAt } satisfies HopData);
}

/**
 * `BENCH_BASELINE_SETTINGS='{"batchSize":50}'` overrides single settings, for re-tuning the
 * baseline on another machine.
 */
function chosenSettings(): typeof BASELINE_SETTINGS {
  const override = process.env.BENCH_BASELINE_SETTINGS;
  return override ? { ...BASELINE_SETTINGS, ...(JSON.parse(override) as object) } : BASELINE_SETTINGS;
}

/** Workflow counts per mode: the throughput burst and the sequential idle-latency run. */
function counts(quick: boolean) {
  return quick ? { burst: 300, sequential: 20 } : { burst: 1000, sequential: 100 };
}

export const baselineScenario: Scenario = {
  id: 4,
  name: 'baseline',
  title: 'raw pg-boss: the same 8-hop chain, handlers insert the next hop',
  async run({ quick, databaseUrl, log }: ScenarioContext): Promise<ScenarioMeasurement> {
    const { burst, sequential } = counts(quick);
    const settings = chosenSettings();
    const chain = await startChain(databaseUrl, settings);
    try {
      const poolBefore = bossPoolUsage(chain.boss);
      // Throughput: every workflow dispatched at once.
      log(`dispatching ${burst} workflows at once`);
      const finished = countdown(burst);
      chain.onWorkflowDone = () => finished.tick();
      const meter = await startCostMeter(databaseUrl);
      const started = now();
      await Promise.all(Array.from({ length: burst }, (_, workflow) => dispatch(chain, workflow)));
      await withTimeout(finished.done, 300_000, `${burst} baseline workflows`);
      const elapsedSeconds = (now() - started) / 1000;
      const costPerHop = costPer(await meter.stop(), burst * HOPS_PER_WORKFLOW);
      const burstHops = summarize(chain.hopLatencies);
      const burstWorkflows = summarize(chain.workflowLatencies);
      const poolAfter = bossPoolUsage(chain.boss);

      // Idle latency: one workflow at a time (the reference for scenario 2).
      log(`running ${sequential} workflows one at a time`);
      chain.hopLatencies = [];
      chain.workflowLatencies = [];
      for (let workflow = 0; workflow < sequential; workflow += 1) {
        const done = countdown(1);
        chain.onWorkflowDone = () => done.tick();
        await dispatch(chain, burst + workflow);
        await withTimeout(done.done, 30_000, `idle baseline workflow ${workflow}`);
      }
      const idleHops = summarize(chain.hopLatencies);
      const idleWorkflows = summarize(chain.workflowLatencies);

      const hopsPerSecond = (burst * HOPS_PER_WORKFLOW) / elapsedSeconds;
      return {
        throughput: { value: hopsPerSecond, unit: 'hops/s' },
        hopsPerSecond,
        latency: { ...idleHops, of: 'hop (idle, one workflow at a time)' },
        ratio: null,
        targets: [],
        details: {
          settings,
          costPerHop: costPerHop,
          workflows: burst,
          workflowsPerSecond: burst / elapsedSeconds,
          elapsedSeconds,
          burstHopLatencyMs: burstHops,
          burstWorkflowLatencyMs: burstWorkflows,
          idleWorkflows: sequential,
          idleHopLatencyMs: idleHops,
          idleWorkflowLatencyMs: idleWorkflows,
        },
        cost: { per: 'hop', ...costPerHop },
        ...(poolBefore && poolAfter ? { pool: { before: poolBefore, after: poolAfter } } : {}),
      };
    } finally {
      await chain.stop();
    }
  },
};

/** pg-boss's own pool counters (it exposes them for its instance registry). */
function bossPoolUsage(boss: PgBoss): PoolUsage | undefined {
  const counts = boss.getDb().poolCounts?.();
  return counts ? { total: counts.total, idle: counts.idle, waiting: counts.waiting } : undefined;
}
