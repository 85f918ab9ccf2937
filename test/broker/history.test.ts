import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PgBoss } from 'pg-boss';
import { HistoryRecorder } from '../../src/broker/history';
import { PostgresEventBroker } from '../../src/broker/index';
import { resolveBrokerOptions } from '../../src/broker/options';
import { deadLetterExpiredJobs } from '../../src/broker/retention';
import { InvalidOptionError } from '../../src/shared/errors';
import { createTestDatabase } from '../support/database';
import { TransactionViolation } from '../support/orchestrator';
import { recordStatements, statementShapes } from '../support/statements';
import { clientEvent, handler, jobsIn, memoryLogger, newPool, useTestDatabase, waitFor } from './support';

const SECRET_URL = 'postgres://app:s3cr3t-history-pw@db.internal:5432/app';

describe('PostgresEventBroker: the event history', () => {
  const suite = useTestDatabase('broker_history');

  async function historyOf(eventId: string): Promise<any[]> {
    const { rows } = await suite.pool.query(
      'SELECT * FROM public.arvo_event_history WHERE event_id = $1 ORDER BY id',
      [eventId],
    );
    return rows;
  }

  it('records a handled event with the ids it produced, by one insert inside the job transaction', async () => {
    const brokerPool = newPool(suite.db.url);
    const statements = recordStatements(brokerPool);
    const boss = new PgBoss({ connectionString: suite.db.url });
    boss.on('error', () => {});
    await boss.start();
    await boss.createQueue('com.hist.sink');
    const broker = new PostgresEventBroker({ pool: brokerPool, logger: memoryLogger() });
    const produced: string[] = [];
    await broker.register(
      handler('com.hist.fanout', async (event) => {
        statements.reset();
        const output = clientEvent(
          'com.hist.sink',
          {},
          { source: 'com.hist.fanout', subject: event.subject },
        );
        produced.push(output.id);
        return [output];
      }),
    );
    // A handler that writes nothing: the history opens the transaction its completion then joins.
    await broker.register(
      handler('com.hist.quiet', async () => {
        statements.reset();
        return [];
      }),
    );
    await broker.start();
    try {
      // The first job looks its destination up; the second shows the steady state.
      const warmUp = clientEvent('com.hist.fanout');
      await broker.dispatch(warmUp);
      await waitFor('warm-up handled', async () => (await historyOf(warmUp.id)).length > 0);
      produced.length = 0;
      const event = clientEvent('com.hist.fanout', {}, { subject: 'order-4711' });
      await broker.dispatch(event);
      const [row] = await waitFor('history of the handled event', async () => {
        const rows = await historyOf(event.id);
        return rows.length > 0 ? rows : undefined;
      });
      assert.equal(row.subject, 'order-4711');
      assert.equal(row.outcome, 'handled');
      assert.equal(row.queue, 'com.hist.fanout');
      assert.equal(row.event_type, event.type);
      assert.equal(row.source, event.source);
      assert.equal(row.destination, 'com.hist.fanout');
      assert.equal(row.attempt, 1);
      assert.deepEqual(row.produced, produced);
      assert.equal(row.error, null);
      assert.equal(row.payload, null, 'payloads are opt-in');
      assert.ok(row.ended_at.getTime() >= row.started_at.getTime());
      assert.equal(row.duration_ms, row.ended_at.getTime() - row.started_at.getTime());
      assert.deepEqual(statementShapes(statements.texts), [
        'BEGIN',
        'complete',
        'insert',
        'history',
        'COMMIT',
      ]);

      const quiet = clientEvent('com.hist.quiet');
      await broker.dispatch(quiet);
      await waitFor('history of the quiet event', async () => (await historyOf(quiet.id)).length > 0);
      assert.deepEqual(statementShapes(statements.texts), ['BEGIN', 'complete', 'history', 'COMMIT']);
    } finally {
      await broker.stop({ timeoutMs: 2000 });
      await boss.stop({ graceful: false });
      await brokerPool.end();
    }
  });

  it('records failed attempts and the dead-lettering with the redacted error, each with its settle', async () => {
    const brokerPool = newPool(suite.db.url);
    const statements = recordStatements(brokerPool);
    const broker = new PostgresEventBroker({
      pool: brokerPool,
      logger: memoryLogger(),
      defaults: { worker: { retryLimit: 1, retryDelay: 1, retryBackoff: false } },
    });
    await broker.register(
      handler('com.hist.failing', async () => {
        statements.reset();
        throw new Error(`cannot reach ${SECRET_URL}`);
      }),
    );
    await broker.start();
    try {
      const event = clientEvent('com.hist.failing');
      await broker.dispatch(event);
      const rows = await waitFor(
        'two attempts in the history',
        async () => {
          const found = await historyOf(event.id);
          return found.length === 2 ? found : undefined;
        },
        30_000,
      );
      assert.deepEqual(
        rows.map((row) => [row.outcome, row.attempt]),
        [
          ['failed', 1],
          ['dead-lettered', 2],
        ],
      );
      for (const row of rows) {
        assert.equal(row.error.kind, 'infrastructure');
        assert.match(row.error.message, /cannot reach/);
        assert.ok(!JSON.stringify(row).includes('s3cr3t-history-pw'), 'the error is redacted');
        assert.equal(row.error.stack, undefined, 'a summary, not the stack');
      }
      // The history row rides the transaction of the settle: one commit, not two.
      const shape = statementShapes(statements.texts);
      assert.equal(shape.length, 4, statements.texts.join('\n---\n'));
      assert.deepEqual([shape[0], shape[1], shape[3]], ['BEGIN', 'history', 'COMMIT']);
    } finally {
      await broker.stop({ timeoutMs: 2000 });
      await brokerPool.end();
    }
  });

  it('records lock contention as rescheduled and keeps payloads only when asked, capped', async () => {
    const broker = new PostgresEventBroker({
      connectionString: suite.db.url,
      logger: memoryLogger(),
      lockContention: { minDelayMs: 10, maxDelayMs: 20 },
      history: { payloads: true, maxPayloadBytes: 64 },
    });
    let calls = 0;
    await broker.register(
      handler('com.hist.contended', async () => {
        calls += 1;
        if (calls === 1) throw new TransactionViolation('LOCK_UNACQUIRED', 'held elsewhere');
        return [];
      }),
    );
    await broker.start();
    try {
      const small = clientEvent('com.hist.contended', { password: 'hunter2-history', n: 1 });
      await broker.dispatch(small);
      const rows = await waitFor('rescheduled, then handled', async () => {
        const found = await historyOf(small.id);
        return found.length === 2 ? found : undefined;
      });
      assert.deepEqual(
        rows.map((row) => row.outcome),
        ['rescheduled', 'handled'],
      );
      assert.deepEqual(rows[1].payload, { password: '[REDACTED]', n: 1 });
      const big = clientEvent('com.hist.contended', { text: 'x'.repeat(500) });
      await broker.dispatch(big);
      const [row] = await waitFor('the big event handled', async () => {
        const found = await historyOf(big.id);
        return found.length === 1 ? found : undefined;
      });
      const bytes = Buffer.byteLength(JSON.stringify(big.data));
      assert.deepEqual(row.payload, { omitted: 'over history.maxPayloadBytes', bytes });
    } finally {
      await broker.stop({ timeoutMs: 2000 });
    }
  });

  it('records an event that waited past its retention as expired, in the sweep transaction', async () => {
    const boss = new PgBoss({ connectionString: suite.db.url });
    boss.on('error', () => {});
    await boss.start();
    try {
      await boss.createQueue('arvo.dead-letter');
      await boss.createQueue('com.hist.stale', { deadLetter: 'arvo.dead-letter', retentionSeconds: 1 });
      const event = clientEvent('com.hist.stale', {}, { subject: 'stale-subject' });
      await boss.send('com.hist.stale', event.toJSON());
      await suite.pool.query(
        `UPDATE pgboss.job SET created_on = now() - interval '1 hour', start_after = now() - interval '1 hour' WHERE name = 'com.hist.stale'`,
      );
      const history = await HistoryRecorder.start(
        suite.pool,
        resolveBrokerOptions({ connectionString: suite.db.url }),
      );
      assert.equal(await deadLetterExpiredJobs(suite.pool, 'pgboss', history), 1);
      const [row] = await historyOf(event.id);
      assert.equal(row.outcome, 'expired');
      assert.equal(row.subject, 'stale-subject');
      assert.equal(row.error.kind, 'expired');
      assert.ok(row.duration_ms >= 3_600_000, 'the time it waited');
      assert.equal(
        (await jobsIn(suite.pool, 'arvo.dead-letter')).filter((job) => job.data.id === event.id).length,
        1,
      );
    } finally {
      await boss.stop({ graceful: false });
    }
  });

  it('deletes entries past history.maxAgeSeconds, oldest first, and validates the option', async () => {
    const options = resolveBrokerOptions({
      connectionString: suite.db.url,
      history: { maxAgeSeconds: 3600 },
    });
    const history = await HistoryRecorder.start(suite.pool, options);
    await suite.pool.query('DELETE FROM arvo_event_history');
    // 2,500 entries two hours old (over two sweep batches), then 10 recent ones.
    await suite.pool.query(`INSERT INTO arvo_event_history
        (subject, event_id, queue, attempt, outcome, started_at, ended_at, duration_ms)
      SELECT 's-' || i, gen_random_uuid()::text, 'q', 1, 'handled',
        now() - interval '2 hours' + i * interval '1 ms', now() - interval '2 hours', 0
      FROM generate_series(1, 2500) AS i`);
    await suite.pool.query(`INSERT INTO arvo_event_history
        (subject, event_id, queue, attempt, outcome, started_at, ended_at, duration_ms)
      SELECT 'recent', gen_random_uuid()::text, 'q', 1, 'handled', now(), now(), 0 FROM generate_series(1, 10)`);
    assert.equal(await history.sweep(suite.pool), 2500);
    const { rows } = await suite.pool.query('SELECT DISTINCT subject FROM arvo_event_history');
    assert.deepEqual(
      rows.map((row) => row.subject),
      ['recent'],
    );
    assert.throws(
      () => resolveBrokerOptions({ connectionString: suite.db.url, history: { maxAgeSeconds: 0 } }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'history.maxAgeSeconds',
    );
    assert.throws(
      () => resolveBrokerOptions({ connectionString: suite.db.url, history: { table: 'bad name' } }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'history.table',
    );
  });

  it('with history: false, creates no table and writes nothing', async () => {
    const other = await createTestDatabase('broker_history_off');
    const broker = new PostgresEventBroker({
      connectionString: other.url,
      logger: memoryLogger(),
      history: false,
    });
    await broker.register(handler('com.hist.off', async () => []));
    await broker.start();
    const otherPool = newPool(other.url);
    try {
      const event = clientEvent('com.hist.off');
      await broker.dispatch(event);
      await waitFor('handled', async () =>
        (await jobsIn(otherPool, 'com.hist.off')).some((job) => job.state === 'completed'),
      );
      const { rows } = await otherPool.query(`SELECT to_regclass('public.arvo_event_history') AS found`);
      assert.equal(rows[0].found, null);
    } finally {
      await broker.stop({ timeoutMs: 2000 });
      await otherPool.end();
      await other.drop();
    }
  });

  it('with migrate: false, refuses to start on a history table of an older layout, naming what is missing', async () => {
    const other = await createTestDatabase('broker_history_v1');
    const otherPool = newPool(other.url);
    try {
      // Everything else in place (pg-boss, the queue control table), the history still at version 1.
      const migrated = new PostgresEventBroker({ connectionString: other.url, logger: memoryLogger() });
      await migrated.start();
      await migrated.stop({ timeoutMs: 2000 });
      await otherPool.query('ALTER TABLE public.arvo_event_history DROP COLUMN root_subject');
      const broker = new PostgresEventBroker({
        connectionString: other.url,
        logger: memoryLogger(),
        migrate: false,
      });
      await assert.rejects(broker.start(), (error: any) => {
        assert.equal(error.code, 'MIGRATION_MISSING');
        assert.match(error.message, /column public\.arvo_event_history\.root_subject is missing/);
        return true;
      });
      // With the history off, the table is none of its business.
      const off = new PostgresEventBroker({
        connectionString: other.url,
        logger: memoryLogger(),
        migrate: false,
        history: false,
      });
      await off.start();
      await off.stop({ timeoutMs: 2000 });
    } finally {
      await otherPool.end();
      await other.drop();
    }
  });
});
