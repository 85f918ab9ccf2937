/**
 * `statementTimeoutMillis` bounds pg-boss's statements too (its pool is the one that inserts and
 * fetches jobs): with another client holding a real lock on the job table, `dispatch` fails after
 * about the timeout instead of waiting for the lock, with a connection string and with a given pool.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { silentLogger } from '../../src/shared/logger';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { clientEvent, handler } from './support';

const TIMEOUT_MS = 200;
const LOCK_HELD_MS = 4_000;

describe('statementTimeoutMillis reaches pg-boss', () => {
  let db: TestDatabase;
  let given: pg.Pool;

  before(async () => {
    db = await createTestDatabase('statement_timeout');
    given = new pg.Pool({ connectionString: db.url, max: 4, statement_timeout: TIMEOUT_MS });
    given.on('error', () => {});
  });
  after(async () => {
    await given.end();
    await db.drop();
  });

  const cases: Array<[string, () => ConstructorParameters<typeof PostgresEventBroker>[0]]> = [
    ['a connection string', () => ({ connectionString: db.url, statementTimeoutMillis: TIMEOUT_MS })],
    ['a given pool', () => ({ pool: given })],
  ];
  for (const [name, connection] of cases) {
    it(`with ${name}: dispatch gives up after the timeout while another client locks the job table`, async () => {
      const queue = `com.timeout.${name.endsWith('pool') ? 'pool' : 'url'}`;
      const broker = new PostgresEventBroker({ ...connection(), logger: silentLogger });
      await broker.register(handler(queue, async () => []));
      await broker.start();
      const locker = new pg.Client({ connectionString: db.url });
      await locker.connect();
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE pgboss.job IN ACCESS EXCLUSIVE MODE');
        const released = new Promise((resolve) => setTimeout(resolve, LOCK_HELD_MS)).then(() =>
          locker.query('ROLLBACK'),
        );
        const started = Date.now();
        await assert.rejects(broker.dispatch(clientEvent(queue)), (error: any) => {
          assert.match(`${error.code} ${error.message} ${error.cause?.message}`, /57014|statement timeout/);
          return true;
        });
        const waited = Date.now() - started;
        assert.ok(
          waited < LOCK_HELD_MS - 1_000,
          `dispatch waited ${waited} ms for a lock held ${LOCK_HELD_MS} ms`,
        );
        await released;
      } finally {
        await locker.end();
        await broker.stop({ timeoutMs: 1000 });
      }
    });
  }
});
