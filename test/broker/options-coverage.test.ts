/**
 * Broker options no other test exercises, each checked by its effect: `queue.partition` (the queue's
 * own job table), `queue.warningQueueSize` (pg-boss's backlog warning reaches the logger),
 * `instanceName` (pg-boss's instance registry) and `telemetry: false` (no spans while a workload runs,
 * next to a broker with telemetry on that produces them).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { closeAll } from '../support/close';
import type { TestDatabase } from '../support/database';
import { recordSpans } from '../support/telemetry';
import { clientEvent, handler, memoryLogger, openTestDatabase, waitFor } from './support';

const exporter = recordSpans();

const PARTITIONED = 'com.opts.partitioned';
const SHARED = 'com.opts.shared';
const BACKLOG = 'com.opts.backlog';
const QUIET = 'com.opts.quiet';
const INSTANCE = `opts-instance-${randomBytes(4).toString('hex')}`;

/** Spans whose queue attribute is `queue`. */
const spansOf = (queue: string) =>
  exporter.getFinishedSpans().filter((span) => span.attributes['messaging.destination.name'] === queue);

describe('broker options: partition, warningQueueSize, instanceName, telemetry', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let broker: PostgresEventBroker;
  let quiet: PostgresEventBroker;
  const logger = memoryLogger();
  const handled = new Map<string, number>();
  const count = (queue: string) => handled.set(queue, (handled.get(queue) ?? 0) + 1);
  let releaseBacklog: () => void = () => {};
  const backlogGate = new Promise<void>((resolve) => {
    releaseBacklog = resolve;
  });

  before(async () => {
    ({ db, pool } = await openTestDatabase('broker_options'));
    broker = new PostgresEventBroker({
      connectionString: db.url,
      logger,
      instanceName: INSTANCE,
      // pg-boss checks queue backlogs in its monitor pass, as often as maintenance here.
      maintenanceIntervalSeconds: 1,
    });
    await broker.register(
      handler(PARTITIONED, async () => {
        count(PARTITIONED);
        return [];
      }),
      { queue: { partition: true } },
    );
    await broker.register(
      handler(SHARED, async () => {
        count(SHARED);
        return [];
      }),
    );
    // One job at a time, held until the test releases it: the rest stay queued.
    await broker.register(
      handler(BACKLOG, async () => {
        await backlogGate;
        count(BACKLOG);
        return [];
      }),
      { queue: { warningQueueSize: 2 }, worker: { batchSize: 1, localConcurrency: 1 } },
    );
    await broker.start();
    quiet = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger(), telemetry: false });
    await quiet.register(
      handler(QUIET, async () => {
        count(QUIET);
        return [];
      }),
    );
    await quiet.start();
  });

  after(async () => {
    releaseBacklog();
    await closeAll(quiet, broker, pool, db);
  });

  it('queue.partition gives the queue its own job table, and its jobs are handled there', async () => {
    const { rows } = await pool.query(
      'SELECT name, partition, table_name FROM pgboss.queue WHERE name = ANY($1) ORDER BY name',
      [[PARTITIONED, SHARED]],
    );
    const partitioned = rows.find((row) => row.name === PARTITIONED);
    const shared = rows.find((row) => row.name === SHARED);
    assert.equal(partitioned.partition, true);
    assert.notEqual(partitioned.table_name, 'job_common');
    assert.equal(shared.partition, false);
    assert.equal(shared.table_name, 'job_common');

    for (let i = 0; i < 3; i += 1) await broker.dispatch(clientEvent(PARTITIONED, { i }));
    await waitFor('the partitioned queue handled', () => handled.get(PARTITIONED) === 3, 30_000);
    const table = `pgboss.${partitioned.table_name}`;
    await waitFor('the partitioned jobs completed', async () => {
      const { rows: states } = await pool.query(`SELECT state FROM ${table} WHERE name = $1`, [PARTITIONED]);
      return states.length === 3 && states.every((row) => row.state === 'completed');
    });
    const { rows: elsewhere } = await pool.query(
      `SELECT count(*)::int AS count FROM pgboss.job WHERE name = $1 AND tableoid <> $2::regclass`,
      [PARTITIONED, table],
    );
    assert.equal(elsewhere[0].count, 0, 'no job of the queue outside its own table');
  });

  it('queue.warningQueueSize: a backlog over it is logged as a warning naming the queue', async () => {
    for (let i = 0; i < 6; i += 1) await broker.dispatch(clientEvent(BACKLOG, { i }));
    const warning = await waitFor(
      'the backlog warning',
      () =>
        logger.lines.find((line) => typeof line[0] === 'string' && line[0].includes(`queue "${BACKLOG}"`)),
      30_000,
    );
    assert.match(
      String(warning[0]),
      /has \d+ jobs in the created or retry state, over its warning threshold of 2/,
    );
    // pg-boss's default threshold is far above these queues' sizes: no warning for them.
    const others = logger.lines.filter(
      (line) => typeof line[0] === 'string' && /queue "com\.opts\.(partitioned|shared)"/.test(line[0]),
    );
    assert.deepEqual(others, []);
    releaseBacklog();
    await waitFor('the backlog drained', () => handled.get(BACKLOG) === 6, 30_000);
  });

  it("instanceName names the broker's pg-boss instance in the instance registry", async () => {
    const { rows } = await pool.query('SELECT name, pid FROM pgboss.instance WHERE name = $1', [INSTANCE]);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].pid, process.pid);
  });

  it('telemetry: false produces no spans while its broker works; the default produces them', async () => {
    for (let i = 0; i < 3; i += 1) {
      await quiet.dispatch(clientEvent(QUIET, { i }));
      await broker.dispatch(clientEvent(SHARED, { i }));
    }
    await waitFor(
      'both workloads handled',
      () => handled.get(QUIET) === 3 && handled.get(SHARED) === 3,
      30_000,
    );
    // The control: with telemetry on, the same kind of workload has producer and consumer spans.
    await waitFor('spans of the broker with telemetry', () => spansOf(SHARED).length >= 6);
    assert.deepEqual(
      spansOf(QUIET).map((span) => span.name),
      [],
    );
  });
});
