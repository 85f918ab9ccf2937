import type pg from 'pg';
import { describeError } from '../shared/redact';
import type { CircuitState } from './circuit-breaker';
import { settleWithin } from './consumer';
import type { PgBossClient } from './pgboss';

/** A worker of this process, as {@link BrokerHealth} reports it. */
export interface WorkerHealth {
  queue: string;
  /** pg-boss's worker state: `created`, `active` (fetching or handling), `stopping`, `stopped`. */
  state: string;
  /** Milliseconds since this worker's last successful fetch (an empty one counts), or null before its first. */
  sinceLastFetchMs: number | null;
}

/** What `PostgresEventBroker.health()` reports: enough for a readiness or liveness probe. */
export interface BrokerHealth {
  /** Started, PostgreSQL answered, the dispatch circuit is not open and every worker is active. */
  ok: boolean;
  state: 'new' | 'starting' | 'started' | 'stopping' | 'stopped';
  /** Whether `SELECT 1` on the broker's pool answered within the check's timeout, and how fast. */
  database: { reachable: boolean; latencyMs: number | null; error: string | null };
  /** The circuit breaker of `dispatch`. */
  circuit: CircuitState;
  workers: WorkerHealth[];
  /** The smallest of the workers' `sinceLastFetchMs`: how long ago this process last fetched at all. */
  sinceLastFetchMs: number | null;
}

/** Checks the database with `SELECT 1` (at most `timeoutMs`) and reads the workers' and circuit's state. */
export async function checkHealth(
  state: BrokerHealth['state'],
  pool: pg.Pool | undefined,
  boss: PgBossClient | undefined,
  circuit: CircuitState,
  timeoutMs: number,
): Promise<BrokerHealth> {
  const database = await pingDatabase(pool, timeoutMs);
  const now = Date.now();
  const workers = (boss?.workers() ?? []).map((worker) => ({
    queue: worker.name,
    state: worker.state,
    sinceLastFetchMs: worker.lastFetchedOn ? now - worker.lastFetchedOn : null,
  }));
  const fetchAges = workers.flatMap((worker) =>
    worker.sinceLastFetchMs === null ? [] : [worker.sinceLastFetchMs],
  );
  return {
    ok:
      state === 'started' &&
      database.reachable &&
      circuit !== 'open' &&
      workers.every((worker) => worker.state === 'active'),
    state,
    database,
    circuit,
    workers,
    sinceLastFetchMs: fetchAges.length ? Math.min(...fetchAges) : null,
  };
}

async function pingDatabase(pool: pg.Pool | undefined, timeoutMs: number): Promise<BrokerHealth['database']> {
  if (!pool)
    return { reachable: false, latencyMs: null, error: 'not connected (start() not called or stopped)' };
  const started = Date.now();
  let error: string | null = null;
  const ping = pool.query('SELECT 1').then(
    () => {},
    (failure: unknown) => {
      error = describeError(failure).message;
    },
  );
  if (!(await settleWithin([ping], timeoutMs))) error = `no answer within ${timeoutMs} ms`;
  return error === null
    ? { reachable: true, latencyMs: Date.now() - started, error: null }
    : { reachable: false, latencyMs: null, error };
}
