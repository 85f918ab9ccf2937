import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ArvoEvent, createArvoEvent } from 'arvo-core';
import type pg from 'pg';
import {
  type ArvoEventHandlerLike,
  PostgresEventBroker,
  type PostgresEventBrokerOptions,
  type RegisterOptions,
} from '../../src/broker/index';
import type { Logger } from '../../src/shared/logger';
import { closeAll } from '../support/close';
import { createTestDatabase, type TestDatabase, testPool } from '../support/database';
import { useAsyncContext } from '../support/telemetry';

useAsyncContext();

export { waitFor } from '../support/wait';

/**
 * A broker for one test: built from `options` (with a quiet {@link memoryLogger} unless they name a
 * logger), `setup` run on it before it starts (the test's own registrations and listeners), stopped
 * when the test ends.
 */
export async function startTestBroker(
  t: TestContext,
  options: PostgresEventBrokerOptions,
  setup: (broker: PostgresEventBroker) => Promise<unknown> = async () => {},
): Promise<PostgresEventBroker> {
  const broker = new PostgresEventBroker({ logger: memoryLogger(), ...options });
  t.after(() => broker.stop({ timeoutMs: 5000 }));
  await setup(broker);
  await broker.start();
  return broker;
}

/** Gives replies to the test client (`com.test.client`) a queue, served by a listener that ignores them. */
export function listenToClient(broker: PostgresEventBroker): Promise<void> {
  return broker.onWorkflowComplete({ source: 'com.test.client', listener: () => {} });
}

/**
 * Creates `queue` with `options` as its consumer's registration would, from a broker that then
 * stops: a queue its consumer has left, which nothing serves.
 */
export async function abandonedQueue(url: string, queue: string, options: RegisterOptions): Promise<void> {
  const consumer = new PostgresEventBroker({ connectionString: url, logger: memoryLogger() });
  await consumer.register(
    handler(queue, async () => []),
    options,
  );
  await consumer.start();
  await consumer.stop({ timeoutMs: 1000 });
}

/** A plain event from the test client to `to`. */
export function clientEvent(
  to: string,
  data: Record<string, unknown> = {},
  fields: { subject?: string; source?: string; type?: string; extensions?: Record<string, string> } = {},
): ArvoEvent {
  return createArvoEvent(
    {
      source: fields.source ?? 'com.test.client',
      type: fields.type ?? to,
      subject: fields.subject ?? `subject-${Math.random().toString(36).slice(2)}`,
      to,
      data,
    },
    fields.extensions ?? {},
    { disable: true },
  );
}

/** A hand-written handler (what the broker sees of any Arvo handler). */
export function handler(
  source: string,
  execute: (event: ArvoEvent) => Promise<ArvoEvent[] | { events: ArvoEvent[] }>,
): ArvoEventHandlerLike {
  return { source, execute };
}

/** The reply a service sends back to the caller. */
export function replyTo(
  event: ArvoEvent,
  type: string,
  data: Record<string, unknown> = {},
  to?: string,
  extensions: Record<string, string> = {},
): ArvoEvent {
  return createArvoEvent(
    {
      source: event.to ?? 'com.test.unknown',
      type,
      subject: event.subject,
      to: to ?? event.redirectto ?? event.source,
      data,
      ...(event.traceparent ? { traceparent: event.traceparent } : {}),
    },
    extensions,
    { disable: true },
  );
}

/** A logger that keeps every line (for redaction checks) and prints nothing. */
export function memoryLogger(): Logger & { lines: unknown[][] } {
  const lines: unknown[][] = [];
  const keep = (...args: unknown[]) => {
    lines.push(args);
  };
  return { lines, debug: keep, info: keep, warn: keep, error: keep };
}

/** Rows of pg-boss's job table for `queue`. */
export async function jobsIn(pool: pg.Pool, queue: string, schema = 'pgboss'): Promise<any[]> {
  const { rows } = await pool.query(
    `SELECT id, name, state, data, output, retry_count, retry_limit, start_after, created_on, completed_on,
            source_name, source_id, source_retry_count, source_output
       FROM ${schema}.job WHERE name = $1 ORDER BY created_on, id`,
    [queue],
  );
  return rows;
}

/** A pool on `url` for a test's own queries (see {@link testPool}). */
export function newPool(url: string): pg.Pool {
  return testPool(url, 4);
}

/** A suite's own database and a pool on it for the suite's queries; close with `closeAll(pool, db)`. */
export async function openTestDatabase(label: string): Promise<{ db: TestDatabase; pool: pg.Pool }> {
  const db = await createTestDatabase(label);
  return { db, pool: newPool(db.url) };
}

/** A suite's database, a pool on it, and brokers for its tests: see {@link useTestDatabase}. */
export interface TestSuite {
  readonly db: TestDatabase;
  readonly pool: pg.Pool;
  /** {@link startTestBroker} on the suite's database (unless `options` name another connection). */
  startBroker(
    t: TestContext,
    options?: PostgresEventBrokerOptions,
    setup?: (broker: PostgresEventBroker) => Promise<unknown>,
  ): Promise<PostgresEventBroker>;
}

/**
 * For a suite whose tests set up their own brokers: opens its database and a pool in `before`,
 * closes them in `after`. Read `db` and `pool` from the returned object once `before` has run (in
 * hooks and tests).
 */
export function useTestDatabase(label: string): TestSuite {
  const suite = {
    startBroker: (t, options = {}, setup) =>
      startTestBroker(t, { connectionString: suite.db.url, ...options }, setup),
  } as TestSuite & { db: TestDatabase; pool: pg.Pool };
  before(async () => {
    Object.assign(suite, await openTestDatabase(label));
  });
  after(() => closeAll(suite.pool, suite.db));
  return suite;
}

/**
 * Starts `script` (a file of test/broker) as a worker process on `url` (its `BROKER_DATABASE_URL`);
 * `output()` is what it printed so far.
 */
export function spawnWorker(script: string, url: string): { child: ChildProcess; output: () => string } {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, script)], {
    env: { ...process.env, BROKER_DATABASE_URL: url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += String(chunk);
  });
  return { child, output: () => output };
}
