/**
 * Small helpers shared by every benchmark scenario: the result shape, timing, percentiles,
 * resource snapshots and table printing. Scenarios live in `bench/scenarios/*.ts`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';

/** What `bench/run.ts` hands every scenario. */
export interface ScenarioContext {
  /** Small counts, so the whole quick run takes a minute or three. */
  quick: boolean;
  /** Connection string of a fresh, empty database made for this scenario alone. */
  databaseUrl: string;
  /** Results of the scenarios that already ran in this process (for in-run ratios). */
  earlier: ReadonlyMap<string, ScenarioResult>;
  /** Progress line on stderr, so the table on stdout stays clean. */
  log(message: string): void;
}

/** One benchmark scenario (one file in `bench/scenarios/`). */
export interface Scenario {
  /** Number used by the issue (`1`..`6`). */
  id: number;
  /** Short name accepted by `--scenario`. */
  name: string;
  /** One line: what is measured. */
  title: string;
  run(context: ScenarioContext): Promise<ScenarioMeasurement>;
}

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** A target from issue 13 (or 4) and whether this run met it. */
export interface TargetCheck {
  /** What is compared, e.g. `hops/s vs raw pg-boss`. */
  what: string;
  /** The target as written in the issue, e.g. `≥ 0.6×`. */
  target: string;
  /** The measured value, formatted. */
  measured: string;
  /** `null` when it could not be judged (a prerequisite scenario did not run). */
  met: boolean | null;
}

/** What a scenario measured; `bench/run.ts` adds resources and timing around it. */
export interface ScenarioMeasurement {
  /** The headline throughput. */
  throughput: { value: number; unit: string } | null;
  /** Hops per second, when the scenario moves events (comparable across scenarios). */
  hopsPerSecond?: number;
  /** The headline latency (per hop for workflow scenarios, per operation otherwise). */
  latency: (LatencySummary & { of: string }) | null;
  /** Throughput divided by the in-run reference (raw pg-boss unless `ratio.to` says otherwise). */
  ratio: { to: string; value: number } | null;
  targets: TargetCheck[];
  /** Scenario-specific numbers (settings used, counts, secondary latencies). */
  details: Record<string, unknown>;
  /** Cost per unit of throughput (hop, cycle) in the measured part: CPU (Node vs PostgreSQL), commits, WAL. */
  cost?: CostPerUnit & { per: string };
  /** Pool usage of the pool the scenario owns, sampled at the start and the end of the measured part. */
  pool?: { before: PoolUsage; after: PoolUsage };
}

/** A finished scenario as written to the JSON file. */
export interface ScenarioResult extends ScenarioMeasurement {
  id: number;
  name: string;
  title: string;
  status: 'ok' | 'failed';
  error?: string;
  durationMs: number;
  resources: { before: ResourceSnapshot; after: ResourceSnapshot };
  /** With `--statements`: the statements that took the most server time in this scenario. */
  statements?: StatementStats[];
}

/** One normalized statement from `pg_stat_statements`. */
export interface StatementStats {
  calls: number;
  totalMs: number;
  meanMs: number;
  rows: number;
  /** Share of all statement time in the scenario's database, 0..1. */
  share: number;
  query: string;
}

/** node-postgres pool counters. */
export interface PoolUsage {
  total: number;
  idle: number;
  waiting: number;
}

/** Process memory and server-side connection counts at one moment. */
export interface ResourceSnapshot {
  rssMb: number;
  heapUsedMb: number;
  /** Connections open to the scenario's database, as `pg_stat_activity` counts them. */
  databaseConnections: number | null;
}

/** Milliseconds since an arbitrary origin, with sub-millisecond precision. */
export function now(): number {
  return performance.now();
}

/** The `q`-quantile (0..1) of `sorted` (ascending), nearest-rank. */
function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(q * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))] as number;
}

/** p50/p95/p99/max of a list of millisecond samples. */
export function summarize(samples: number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50: round(quantile(sorted, 0.5)),
    p95: round(quantile(sorted, 0.95)),
    p99: round(quantile(sorted, 0.99)),
    max: round(sorted.length ? (sorted[sorted.length - 1] as number) : Number.NaN),
  };
}

/** Rounds to `digits` decimals (2 by default) for readable JSON. */
export function round(value: number, digits = 2): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** A promise with its resolve function outside, for "wait until N things happened". */
export function countdown(total: number): { tick(): void; done: Promise<void>; remaining(): number } {
  let left = total;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  if (left <= 0) resolveDone();
  return {
    tick() {
      left -= 1;
      if (left === 0) resolveDone();
    },
    done,
    remaining: () => left,
  };
}

/** Rejects after `ms` with a message naming what was awaited, unless `promise` settles first. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// A full GC before each memory reading makes before/after RSS comparable (tsx gives no --expose-gc).
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** Bytes of JavaScript heap in use after a full GC: what the process really retains. */
export function heapUsedAfterGc(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** Process memory (after a full GC) and the connection count of `databaseUrl`. */
export async function snapshotResources(databaseUrl: string): Promise<ResourceSnapshot> {
  collectGarbage();
  const memory = process.memoryUsage();
  return {
    rssMb: round(memory.rss / 2 ** 20, 1),
    heapUsedMb: round(memory.heapUsed / 2 ** 20, 1),
    databaseConnections: await countConnections(databaseUrl),
  };
}

async function countConnections(databaseUrl: string): Promise<number | null> {
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    await client.connect();
    const { rows } = await client.query(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    return rows[0].n as number;
  } catch {
    return null;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Counters of a node-postgres pool. */
export function poolUsage(pool: pg.Pool): PoolUsage {
  return { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount };
}

/**
 * Wraps `pool.query` and the `query` of every client the pool hands out so each statement sent to
 * the server is counted: the round trips a piece of code costs, measured rather than believed.
 */
export function countRoundTrips(pool: pg.Pool): { readonly count: number; reset(): void } {
  let count = 0;
  const wrapped = new WeakSet<object>();
  const wrapQuery = (target: { query: (...args: any[]) => any }) => {
    if (wrapped.has(target)) return;
    wrapped.add(target);
    const original = target.query.bind(target);
    target.query = (...args: any[]) => {
      count += 1;
      return original(...args);
    };
  };
  // pool.query checks out a client and calls client.query: count it once, at the client.
  pool.on('connect', (client) => wrapQuery(client));
  return {
    get count() {
      return count;
    },
    reset() {
      count = 0;
    },
  };
}

/** `ratio` formatted as `0.62×`. */
export function formatRatio(value: number | null | undefined): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : `${value.toFixed(2)}×`;
}

/** Number with a fixed count of decimals, or `–`. */
export function formatNumber(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);
}

/** Milliseconds as `12.3 ms`. */
export function formatMs(value: number): string {
  return `${value.toFixed(1)} ms`;
}

/** A target check built from a comparison; `met` is null when the measured value is unknown. */
export function checkTarget(
  what: string,
  target: string,
  measured: number | null | undefined,
  passes: (value: number) => boolean,
  format: (value: number) => string = (value) => formatNumber(value, 2),
): TargetCheck {
  const known = measured !== null && measured !== undefined && Number.isFinite(measured);
  return {
    what,
    target,
    measured: known ? format(measured) : 'n/a',
    met: known ? passes(measured) : null,
  };
}

/** Renders rows as a plain-text table with a header rule. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

/** What a measured window cost, in total. */
export interface CostUsage {
  /** CPU ms of this Node process (the benchmark, broker, handlers and pg-boss). */
  nodeCpuMs: number;
  /** CPU ms of the PostgreSQL server's processes, when it runs on this machine (`null` otherwise). */
  postgresCpuMs: number | null;
  /**
   * Commits of transactions that wrote (each one a WAL flush with synchronous_commit on), server-wide:
   * the WAL's commit records (`pg_walinspect`), or, where that extension cannot be created, the
   * transaction ids consumed, which count each savepoint that wrote as well.
   */
  writeTransactions: number;
  /** WAL generated, server-wide. */
  walBytes: number;
}

/** {@link CostUsage} divided by the units of work done (hops, cycles). */
export interface CostPerUnit {
  nodeCpuMs: number;
  postgresCpuMs: number | null;
  writeTransactions: number;
  walBytes: number;
  /**
   * JavaScript heap in use after the measured part (after a full GC) minus before it, per unit.
   * Near 0 when nothing is kept per event; a steady positive figure is a leak.
   */
  retainedHeapBytes?: number;
}

const CLOCK_TICKS_PER_SECOND = 100;

/** Command name, parent pid and CPU ticks (utime + stime) of a process, from `/proc/<pid>/stat`. */
async function readProcStat(pid: string): Promise<{ command: string; ppid: number; ticks: number } | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      command: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
      ppid: Number(fields[1]),
      ticks: Number(fields[11]) + Number(fields[12]),
    };
  } catch {
    return null;
  }
}

/** Total CPU ticks of the postmaster `postmaster` and its children (the backends). */
async function postgresTicks(postmaster: number): Promise<number | null> {
  const own = await readProcStat(String(postmaster));
  if (!own) return null;
  let ticks = own.ticks;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readProcStat(entry);
    if (stat && stat.ppid === postmaster) ticks += stat.ticks;
  }
  return ticks;
}

/**
 * The next transaction id (consumed only by transactions that write) and the WAL position; neither
 * read consumes anything itself.
 */
const SERVER_COUNTERS_SQL = `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,
  pg_current_wal_lsn()::text AS lsn, pg_backend_pid() AS pid`;

/**
 * Commit records in the WAL between `from` and `to`: commits of transactions that wrote, whatever
 * savepoints they used (each consumes a transaction id of its own); `null` without `pg_walinspect`.
 */
async function commitRecords(client: pg.Client, from: string, to: string): Promise<number | null> {
  try {
    const { rows } = await client.query(
      `SELECT coalesce(sum(count), 0)::bigint AS commits FROM pg_get_wal_stats($1::pg_lsn, $2::pg_lsn, true)
        WHERE "resource_manager/record_type" = 'Transaction/COMMIT'`,
      [from, to],
    );
    return Number(rows[0].commits);
  } catch {
    return null;
  }
}

async function readServerCounters(client: pg.Client): Promise<{ nextXid: number; lsn: string; pid: number }> {
  const { rows } = await client.query(SERVER_COUNTERS_SQL);
  return { nextXid: Number(rows[0].next_xid), lsn: rows[0].lsn, pid: rows[0].pid };
}

/**
 * Starts measuring what a window of work costs: CPU of this process and of the PostgreSQL server
 * behind `databaseUrl` (found as the parent of a backend; Linux `/proc` only), write transactions
 * and WAL bytes. Tells where a hop's cost goes: Node or the database, and how many commits it
 * takes. Server-wide counters assume nothing else uses the server (true for the embedded one).
 * With {@link recordStatementStats} on, it also clears `pg_stat_statements`.
 */
export async function startCostMeter(databaseUrl: string): Promise<{ stop(): Promise<CostUsage> }> {
  // Statement statistics then cover the measured part, not the set-up (schema creation, seeding).
  if (statementStatsEnabled) await resetStatementStats(databaseUrl);
  const client = new pg.Client({ connectionString: databaseUrl });
  // Open while the measured work runs: if that work fails, the scenario's database is dropped (its
  // connections terminated) before stop() is called, and an unheard error would end the process.
  client.on('error', () => {});
  await client.connect();
  try {
    // Before the window: its own commit is not counted. A server where it cannot be created (no
    // rights, no contrib) falls back to transaction ids.
    await client.query('CREATE EXTENSION IF NOT EXISTS pg_walinspect').catch(() => {});
    const before = await readServerCounters(client);
    // Only when the backend is a local process (a remote server's pid may name anything here).
    const backend = await readProcStat(String(before.pid));
    const postmaster = backend?.command === 'postgres' ? backend.ppid : null;
    const postgresBefore = postmaster === null ? null : await postgresTicks(postmaster);
    const nodeBefore = process.cpuUsage();
    return {
      async stop() {
        const node = process.cpuUsage(nodeBefore);
        const postgresAfter = postmaster === null ? null : await postgresTicks(postmaster);
        try {
          const after = await readServerCounters(client);
          const { rows } = await client.query('SELECT pg_wal_lsn_diff($1, $2)::bigint AS bytes', [
            after.lsn,
            before.lsn,
          ]);
          return {
            nodeCpuMs: (node.user + node.system) / 1000,
            postgresCpuMs:
              postgresBefore === null || postgresAfter === null
                ? null
                : ((postgresAfter - postgresBefore) * 1000) / CLOCK_TICKS_PER_SECOND,
            writeTransactions:
              (await commitRecords(client, before.lsn, after.lsn)) ?? after.nextXid - before.nextXid,
            walBytes: Number(rows[0].bytes),
          };
        } finally {
          await client.end().catch(() => {});
        }
      },
    };
  } catch (error) {
    await client.end().catch(() => {});
    throw error;
  }
}

/** Cost per unit of work (per hop, per cycle). */
export function costPer(usage: CostUsage, units: number): CostPerUnit {
  return {
    nodeCpuMs: round(usage.nodeCpuMs / units, 3),
    postgresCpuMs: usage.postgresCpuMs === null ? null : round(usage.postgresCpuMs / units, 3),
    writeTransactions: round(usage.writeTransactions / units, 2),
    walBytes: Math.round(usage.walBytes / units),
  };
}

let statementStatsEnabled = false;

/** `--statements`: every {@link startCostMeter} clears `pg_stat_statements` first. */
export function recordStatementStats(enabled: boolean): void {
  statementStatsEnabled = enabled;
}

/**
 * Enables `pg_stat_statements` in the database at `databaseUrl` and clears its counters; false when
 * the server was not started with it in `shared_preload_libraries`.
 */
export async function resetStatementStats(databaseUrl: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    await client.query('SELECT pg_stat_statements_reset()');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** The `limit` statements of the current database with the most total execution time. */
export async function readStatementStats(databaseUrl: string, limit = 12): Promise<StatementStats[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `WITH mine AS (
         SELECT calls, total_exec_time, rows, query FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%pg_stat_statements%'
       )
       SELECT calls::float8 AS calls, total_exec_time AS total_ms, rows::float8 AS rows,
              total_exec_time / nullif(sum(total_exec_time) OVER (), 0) AS share,
              regexp_replace(query, '\\s+', ' ', 'g') AS query
       FROM mine ORDER BY total_exec_time DESC LIMIT $1`,
      [limit],
    );
    return rows.map((row) => ({
      calls: row.calls,
      totalMs: round(row.total_ms),
      meanMs: round(row.total_ms / Math.max(1, row.calls), 3),
      rows: row.rows,
      share: round(row.share ?? 0, 3),
      query: row.query,
    }));
  } finally {
    await client.end().catch(() => {});
  }
}

/** Renders rows as a Markdown table (pipes in cells escaped). */
export function renderMarkdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
