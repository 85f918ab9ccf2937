/**
 * `npm run bench [-- --quick] [--scenario baseline,1,...] [--json path]`
 *
 * Runs the benchmark scenarios (issues 4 and 13) against the embedded PostgreSQL (fsync and
 * synchronous_commit on, as in production) or against `DATABASE_URL`, each in a fresh database, then
 * prints a table and every target with met/missed, and writes the results as JSON (default
 * `bench/results/latest.json`). The raw pg-boss baselines run first so every other figure can be
 * given as a ratio to them.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createTestDatabase } from '../test/support/database';
import { type PostgresServer, startEmbeddedPostgres } from '../test/support/postgres-server';
import {
  formatNumber,
  formatRatio,
  readStatementStats,
  recordStatementStats,
  renderMarkdownTable,
  renderTable,
  resetStatementStats,
  type Scenario,
  type ScenarioResult,
  snapshotResources,
} from './lib';
import { baselineScenario, perJobTransactionBaselineScenario } from './scenarios/baseline';
import { fanOutScenario } from './scenarios/fan-out';
import { historyScenario } from './scenarios/history';
import { idleLatencyScenario } from './scenarios/idle-latency';
import { memoryScenario } from './scenarios/memory';
import { scaleScenario } from './scenarios/scale';
import { throughputScenario } from './scenarios/throughput';
import { workersScenario } from './scenarios/workers';

/** Run order: the baseline first (the reference), scale last (it reuses scenario 1's figure). */
const SCENARIOS: Scenario[] = [
  baselineScenario,
  perJobTransactionBaselineScenario,
  memoryScenario,
  throughputScenario,
  historyScenario,
  idleLatencyScenario,
  fanOutScenario,
  workersScenario,
  scaleScenario,
];

const root = path.dirname(fileURLToPath(import.meta.url));

function usage(): string {
  return [
    'usage: npm run bench -- [--quick] [--scenario <names>] [--json <path>]',
    '  --quick            small counts; the whole run takes a minute or three',
    `  --scenario <list>  comma-separated ids or names: ${SCENARIOS.map((s) => `${s.id}|${s.name}`).join(', ')}`,
    '  --json <path>      where to write results (default bench/results/latest.json)',
    '  --statements       record pg_stat_statements per scenario (preloads it in the embedded server)',
    'DATABASE_URL=postgres://... runs against that server instead of an embedded one.',
  ].join('\n');
}

function selectScenarios(list: string | undefined): Scenario[] {
  if (!list) return SCENARIOS;
  const wanted = list
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
  for (const item of wanted) {
    if (!SCENARIOS.some((s) => String(s.id) === item || s.name === item)) {
      throw new Error(`unknown scenario ${JSON.stringify(item)}\n${usage()}`);
    }
  }
  return SCENARIOS.filter((s) => wanted.includes(String(s.id)) || wanted.includes(s.name));
}

async function describeMachine(serverUrl: string, external: boolean) {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const setting = async (name: string) =>
      (await client.query('SELECT current_setting($1) AS value', [name])).rows[0].value as string;
    const pgBoss = JSON.parse(
      await readFile(path.join(root, '..', 'node_modules', 'pg-boss', 'package.json'), 'utf8'),
    ) as { version: string };
    const cpus = os.cpus();
    return {
      cpus: cpus.length,
      cpuModel: cpus[0]?.model ?? 'unknown',
      totalMemoryGb: Math.round(os.totalmem() / 2 ** 30),
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      node: process.version,
      postgres: await setting('server_version'),
      postgresSettings: {
        fsync: await setting('fsync'),
        synchronous_commit: await setting('synchronous_commit'),
        shared_buffers: await setting('shared_buffers'),
      },
      pgBoss: pgBoss.version,
      database: external ? 'DATABASE_URL' : 'embedded PostgreSQL on loopback',
    };
  } finally {
    await client.end();
  }
}

async function runScenario(
  scenario: Scenario,
  options: { quick: boolean; statements: boolean },
  earlier: Map<string, ScenarioResult>,
): Promise<ScenarioResult> {
  const database = await createTestDatabase(`bench_${scenario.name}`);
  const log = (message: string) => console.error(`[${scenario.id} ${scenario.name}] ${message}`);
  const started = Date.now();
  const before = await snapshotResources(database.url);
  try {
    const recording = options.statements && (await resetStatementStats(database.url));
    if (options.statements && !recording) log('pg_stat_statements is not preloaded on this server: skipped');
    const measured = await scenario.run({ quick: options.quick, databaseUrl: database.url, earlier, log });
    const after = await snapshotResources(database.url);
    return {
      id: scenario.id,
      name: scenario.name,
      title: scenario.title,
      status: 'ok',
      durationMs: Date.now() - started,
      resources: { before, after },
      ...measured,
      ...(recording ? { statements: await readStatementStats(database.url) } : {}),
    };
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    log(`failed: ${message}`);
    return {
      id: scenario.id,
      name: scenario.name,
      title: scenario.title,
      status: 'failed',
      error: error instanceof Error ? error.message : String(error),
      durationMs: Date.now() - started,
      resources: { before, after: await snapshotResources(database.url) },
      throughput: null,
      latency: null,
      ratio: null,
      targets: [],
      details: {},
    };
  } finally {
    await database.drop().catch((error) => log(`could not drop ${database.name}: ${error}`));
  }
}

/** The columns of the results table: title and cell of each scenario. */
const RESULT_COLUMNS: Array<[string, (result: ScenarioResult) => string]> = [
  ['scenario', (result) => `${result.id} ${result.name}`],
  [
    'throughput',
    (result) =>
      result.status !== 'ok'
        ? `FAILED: ${result.error ?? ''}`.slice(0, 60)
        : result.throughput
          ? `${formatNumber(result.throughput.value)} ${result.throughput.unit}`
          : '–',
  ],
  ['hops/s', (result) => formatNumber(result.hopsPerSecond, 0)],
  ['p50 ms', (result) => formatNumber(result.latency?.p50, 2)],
  ['p95 ms', (result) => formatNumber(result.latency?.p95, 2)],
  ['p99 ms', (result) => formatNumber(result.latency?.p99, 2)],
  ['latency of', (result) => result.latency?.of ?? ''],
  ['ratio', (result) => (result.ratio ? `${formatRatio(result.ratio.value)} ${result.ratio.to}` : '–')],
  [
    'CPU ms node | pg',
    (result) =>
      result.cost
        ? `${formatNumber(result.cost.nodeCpuMs, 2)} | ${formatNumber(result.cost.postgresCpuMs, 2)} /${result.cost.per}`
        : '–',
  ],
  [
    'commits',
    (result) => (result.cost ? `${formatNumber(result.cost.writeTransactions, 2)} /${result.cost.per}` : '–'),
  ],
  ['heap B', (result) => formatNumber(result.cost?.retainedHeapBytes, 0)],
  [
    'RSS MB',
    (result) =>
      `${formatNumber(result.resources.before.rssMb, 0)}→${formatNumber(result.resources.after.rssMb, 0)}`,
  ],
  [
    'db conns',
    (result) =>
      `${result.resources.before.databaseConnections ?? '?'}→${result.resources.after.databaseConnections ?? '?'}`,
  ],
];

const TARGET_HEADER = ['scenario', 'target', 'goal', 'measured', 'result'];

function targetRows(results: ScenarioResult[]): string[][] {
  return results.flatMap((result) =>
    result.targets.map((target) => [
      `${result.id} ${result.name}`,
      target.what,
      target.target,
      target.measured,
      target.met === null ? 'n/a' : target.met ? 'met' : 'MISSED',
    ]),
  );
}

function resultRows(results: ScenarioResult[]): string[][] {
  return results.map((result) => RESULT_COLUMNS.map(([, cell]) => cell(result)));
}

function printResults(results: ScenarioResult[]): void {
  console.log(
    renderTable(
      RESULT_COLUMNS.map(([title]) => title),
      resultRows(results),
    ),
  );
  const targets = targetRows(results);
  if (targets.length > 0) {
    console.log();
    console.log(renderTable(TARGET_HEADER, targets));
  }
  for (const result of results) {
    if (!result.statements?.length) continue;
    console.log(`\nserver time by statement, ${result.id} ${result.name} (its last measured part):`);
    console.log(
      renderTable(
        ['share', 'calls', 'total ms', 'mean ms', 'statement'],
        result.statements.map((statement) => [
          `${(statement.share * 100).toFixed(1)}%`,
          String(statement.calls),
          formatNumber(statement.totalMs, 0),
          formatNumber(statement.meanMs, 3),
          statement.query.slice(0, 110),
        ]),
      ),
    );
  }
}

/** The results as Markdown, ready to quote in the README's performance section. */
function resultsMarkdown(
  results: ScenarioResult[],
  machine: Awaited<ReturnType<typeof describeMachine>>,
  mode: string,
  startedAt: string,
): string {
  return [
    `Measured ${startedAt} (${mode} run): ${machine.cpus} × ${machine.cpuModel}, ${machine.totalMemoryGb} GB, ` +
      `${machine.platform}; Node ${machine.node}; PostgreSQL ${machine.postgres} (${machine.database}, ` +
      `fsync ${machine.postgresSettings.fsync}, synchronous_commit ${machine.postgresSettings.synchronous_commit}, ` +
      `shared_buffers ${machine.postgresSettings.shared_buffers}); pg-boss ${machine.pgBoss}.`,
    '',
    renderMarkdownTable(
      RESULT_COLUMNS.map(([title]) => title),
      resultRows(results),
    ),
    '',
    renderMarkdownTable(TARGET_HEADER, targetRows(results)),
    '',
  ].join('\n');
}

/**
 * Ctrl-C, SIGTERM or a crash must not leave a PostgreSQL (and its data directory) behind on a
 * machine others share. Connections the shutdown terminates raise errors nobody listens to any
 * more; those are ignored once stopping.
 */
function stopOnAbort(server: PostgresServer): void {
  let stopping = false;
  const stop = (reason: string, code: number) => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${reason}: stopping the embedded PostgreSQL`);
    void server.stop().finally(() => process.exit(code));
  };
  process.once('SIGINT', () => stop('SIGINT', 130));
  process.once('SIGTERM', () => stop('SIGTERM', 143));
  process.on('uncaughtException', (error) => {
    if (stopping) return;
    console.error(error);
    stop('uncaught exception', 1);
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      scenario: { type: 'string' },
      json: { type: 'string', default: path.join('bench', 'results', 'latest.json') },
      statements: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage());
    return 0;
  }
  const scenarios = selectScenarios(values.scenario);
  recordStatementStats(values.statements ?? false);
  const quick = values.quick ?? false;

  const external = Boolean(process.env.DATABASE_URL);
  let server: PostgresServer | undefined;
  if (!external) {
    const started = Date.now();
    // Production settings: fsync and synchronous_commit stay on (the embedded defaults).
    server = await startEmbeddedPostgres({
      postgresFlags: values.statements ? ['-c', 'shared_preload_libraries=pg_stat_statements'] : [],
    });
    // createTestDatabase reaches the server through DATABASE_URL.
    process.env.DATABASE_URL = server.url;
    console.error(`embedded PostgreSQL started in ${Date.now() - started} ms`);
    stopOnAbort(server);
  }
  const serverUrl = process.env.DATABASE_URL as string;
  try {
    const machine = await describeMachine(serverUrl, external);
    console.error(
      `${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, PostgreSQL ${machine.postgres} ` +
        `(fsync ${machine.postgresSettings.fsync}, synchronous_commit ${machine.postgresSettings.synchronous_commit}), ` +
        `pg-boss ${machine.pgBoss}${quick ? ', quick mode' : ''}`,
    );
    const started = new Date();
    const results = new Map<string, ScenarioResult>();
    for (const scenario of scenarios) {
      console.error(`[${scenario.id} ${scenario.name}] ${scenario.title}`);
      results.set(
        scenario.name,
        await runScenario(scenario, { quick, statements: values.statements ?? false }, results),
      );
    }
    const all = [...results.values()];
    console.log();
    printResults(all);

    const jsonPath = path.resolve(values.json as string);
    await mkdir(path.dirname(jsonPath), { recursive: true });
    await writeFile(
      jsonPath,
      `${JSON.stringify(
        {
          startedAt: started.toISOString(),
          durationMs: Date.now() - started.getTime(),
          mode: quick ? 'quick' : 'full',
          machine,
          scenarios: all,
        },
        null,
        2,
      )}\n`,
    );
    const markdownPath = jsonPath.replace(/(\.json)?$/, '.md');
    await writeFile(
      markdownPath,
      resultsMarkdown(all, machine, quick ? 'quick' : 'full', started.toISOString()),
    );
    console.error(
      `\nresults written to ${path.relative(process.cwd(), jsonPath)} and ${path.relative(process.cwd(), markdownPath)}`,
    );
    return all.every((result) => result.status === 'ok') ? 0 : 1;
  } finally {
    await server?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
