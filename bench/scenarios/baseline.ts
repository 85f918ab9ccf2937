/**
 * Scenario 4 — raw pg-boss baseline. The workflow of scenario 1 without Arvo or the broker: the
 * same 8 hops over the same three queues (orchestrator → service → orchestrator … → initiator),
 * each handler inserting the next hop. This is what PostgreSQL and pg-boss alone allow on this
 * machine, and scenario 1 is judged against it (and against the per-job variant below).
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
 * How a handler's next-hop insert and the completion commit:
 * - `batch`: a pg-boss `transactional` worker, one transaction per fetched batch (fewest commits);
 * - `job`: one transaction per job (insert + complete), the atomicity the broker gives each event;
 * - `none`: insert, then pg-boss completes the batch (two commits per batch).
 */
type TransactionScope = 'batch' | 'job' | 'none';

interface BaselineSettings {
  batchSize: number;
  localConcurrency: number;
  transaction: TransactionScope;
  pollingIntervalSeconds: number;
  notifyPollingIntervalSeconds: number;
  burstWhenBatchFull: boolean;
}

/**
 * The best settings found on a 2-core machine (tried: batch 1/10/20/50/100, 1–4 workers, each
 * transaction scope). Every queue uses NOTIFY; a full batch fetches again at once. Batch 1 is far
 * slower: burst mode ignores it and each worker sleeps the polling interval between fetches.
 */
export const BASELINE_SETTINGS: BaselineSettings = {
  batchSize: 50,
  localConcurrency: 2,
  transaction: 'batch',
  pollingIntervalSeconds: 0.5,
  notifyPollingIntervalSeconds: 1,
  burstWhenBatchFull: true,
};

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

async function startChain(databaseUrl: string, settings: BaselineSettings): Promise<Chain> {
  // The broker rig's pool size, so per-job transactions queue for connections alike.
  const boss = new PgBoss({
    connectionString: databaseUrl,
    useListenNotify: true,
    schedule: false,
    max: 20,
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

  /** Inserts the next hop of every job, grouped by queue, through `db` when given. */
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
  /** Each job in its own transaction: next-hop insert and completion commit together. */
  const forwardEachInItsOwnTransaction = async (queue: string, jobs: Job<HopData>[]) => {
    const database = boss.getDb();
    await Promise.all(
      jobs.map(async (job) => {
        const transaction = await (database.beginTransaction as NonNullable<Db['beginTransaction']>)();
        try {
          await forward([job], transaction.db);
          await boss.complete(queue, { id: job.id, retryCount: job.retryCount }, undefined, {
            db: transaction.db,
          });
          await transaction.commit();
        } catch (error) {
          await transaction.rollback();
          throw error;
        }
      }),
    );
  };
  const { batchSize, localConcurrency, transaction, pollingIntervalSeconds, notifyPollingIntervalSeconds } =
    settings;
  const workOptions = {
    batchSize,
    localConcurrency,
    pollingIntervalSeconds,
    notifyPollingIntervalSeconds,
    burstWhenBatchFull: settings.burstWhenBatchFull,
  };
  for (const queue of [ORCHESTRATOR, SERVICE]) {
    if (transaction === 'batch') {
      const transactionalOptions = { ...workOptions, transactional: true } as const;
      await boss.work<HopData, void, typeof transactionalOptions>(queue, transactionalOptions, (jobs, tx) =>
        forward(jobs, tx),
      );
    } else if (transaction === 'job') {
      // pg-boss then completes the batch again: a no-op update, one statement per batch.
      await boss.work<HopData>(queue, workOptions, (jobs) => forwardEachInItsOwnTransaction(queue, jobs));
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
function chosenSettings(): BaselineSettings {
  const override = process.env.BENCH_BASELINE_SETTINGS;
  return override ? { ...BASELINE_SETTINGS, ...(JSON.parse(override) as object) } : BASELINE_SETTINGS;
}

/** Workflow counts per mode: the throughput burst and the sequential idle-latency run. */
function counts(quick: boolean) {
  return quick ? { burst: 300, sequential: 20 } : { burst: 1000, sequential: 100 };
}

/** Burst then idle run of the chain with `settings`. */
async function measureChain(
  { quick, databaseUrl, log }: ScenarioContext,
  settings: BaselineSettings,
): Promise<ScenarioMeasurement> {
  const { burst, sequential } = counts(quick);
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
}

export const baselineScenario: Scenario = {
  id: 4,
  name: 'baseline',
  title: 'raw pg-boss: the same 8-hop chain, handlers insert the next hop (best settings)',
  run: (context) => measureChain(context, chosenSettings()),
};

/**
 * The baseline with one transaction per job instead of per batch: what raw pg-boss does when each
 * event must commit its outputs and completion atomically on its own, as the broker's do. Issue 13
 * judges scenario 1 against both this chain and the batched one.
 */
export const perJobTransactionBaselineScenario: Scenario = {
  id: 4,
  name: 'baseline-per-job',
  title: 'raw pg-boss as the baseline, but one transaction per job (insert next hop + complete)',
  run: (context) => measureChain(context, { ...chosenSettings(), transaction: 'job' }),
};

/** pg-boss's own pool counters (it exposes them for its instance registry). */
function bossPoolUsage(boss: PgBoss): PoolUsage | undefined {
  const counts = boss.getDb().poolCounts?.();
  return counts ? { total: counts.total, idle: counts.idle, waiting: counts.waiting } : undefined;
}
