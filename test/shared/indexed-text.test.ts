/**
 * MAX_INDEXED_TEXT_BYTES at its boundary, with incompressible (random base64url) text: the largest
 * subject travels end to end (dispatched to a queue with the longest name the broker accepts,
 * delivered; written, locked and read by the memory; a lock key), one byte more is refused with a
 * typed error that names the limit, and the limit is the real one: pg-boss's group-key index refuses
 * one byte more with 54000.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import type pg from 'pg';
import { InvalidEventError, PostgresEventBroker } from '../../src/broker/index';
import { PostgresLock } from '../../src/lock/index';
import { connectPostgresMachineMemory, type PostgresMachineMemory } from '../../src/memory/index';
import { ArvoPostgresError } from '../../src/shared/errors';
import { MAX_INDEXED_TEXT_BYTES } from '../../src/shared/indexed-text';
import { silentLogger } from '../../src/shared/logger';
import { clientEvent, handler, newPool, waitFor } from '../broker/support';
import { closeAll } from '../support/close';
import { createTestDatabase, type TestDatabase } from '../support/database';

/** Random text of exactly `bytes` UTF-8 bytes that no compression shrinks (base64url survives URI encoding). */
function incompressible(bytes: number): string {
  return randomBytes(bytes).toString('base64url').slice(0, bytes);
}

// The longest queue name the broker accepts: the group-key index row holds it beside the subject.
const QUEUE = `com.${'q'.repeat(196)}`;
const EMITTER = 'com.limit.emitter';
const LIMIT_MESSAGE = new RegExp(`over the limit of ${MAX_INDEXED_TEXT_BYTES} bytes.*MAX_INDEXED_TEXT_BYTES`);

describe('MAX_INDEXED_TEXT_BYTES: the largest subject works end to end, one byte more is refused', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let broker: PostgresEventBroker;
  let memory: PostgresMachineMemory;
  let lock: PostgresLock;
  const received: ArvoEvent[] = [];

  before(async () => {
    db = await createTestDatabase('indexed_text');
    pool = newPool(db.url);
    broker = new PostgresEventBroker({ connectionString: db.url, logger: silentLogger });
    await broker.register(
      handler(QUEUE, async (event) => {
        received.push(event);
        return [];
      }),
    );
    // Emits an event to the long queue with the subject named in the data.
    await broker.register(
      handler(EMITTER, async (event) => [
        clientEvent(
          QUEUE,
          {},
          { subject: (event.data as { subject: string }).subject, type: 'com.limit.output' },
        ),
      ]),
    );
    await broker.start();
    memory = await connectPostgresMachineMemory({ connectionString: db.url, logger: silentLogger });
    lock = new PostgresLock({ connectionString: db.url, logger: silentLogger, sweepIntervalMs: 0 });
    await lock.start();
  });

  after(() => closeAll(broker, memory, lock, pool, db));

  it('is the real constraint: pg-boss group-key index takes the limit and refuses one byte more (54000)', async () => {
    assert.equal(QUEUE.length, 200);
    const id = await broker.dispatch(clientEvent(QUEUE, {}, { type: 'com.limit.probe' }));
    await waitFor('the probe job completed', async () => {
      const { rows } = await pool.query(`SELECT state FROM pgboss.job WHERE id = $1`, [id]);
      return rows[0]?.state === 'completed';
    });
    // An active job's group key is in index job_i7 (name, group_id): set one by hand, in a rolled-back transaction.
    const activate = async (groupId: string) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(`UPDATE pgboss.job SET state = 'active', group_id = $2 WHERE id = $1`, [
          id,
          groupId,
        ]);
      } finally {
        await client.query('ROLLBACK');
        client.release();
      }
    };
    await activate(incompressible(MAX_INDEXED_TEXT_BYTES));
    await assert.rejects(activate(incompressible(MAX_INDEXED_TEXT_BYTES + 1)), (error: any) => {
      assert.equal(error.code, '54000');
      assert.match(error.message, /index row size 2712 exceeds .* maximum 2704 for index "job_common_i7"/);
      return true;
    });
  });

  it('dispatches and delivers an event with the largest subject; one byte more is refused', async () => {
    const subject = incompressible(MAX_INDEXED_TEXT_BYTES);
    const event = clientEvent(QUEUE, {}, { subject, type: 'com.limit.probe' });
    assert.equal(Buffer.byteLength(event.subject), MAX_INDEXED_TEXT_BYTES);
    await broker.dispatch(event);
    const delivered = await waitFor('delivery', () => received.find((entry) => entry.id === event.id));
    assert.equal(delivered.subject, subject);

    await assert.rejects(
      broker.dispatch(
        clientEvent(
          QUEUE,
          {},
          { subject: incompressible(MAX_INDEXED_TEXT_BYTES + 1), type: 'com.limit.probe' },
        ),
      ),
      (error: unknown) =>
        error instanceof InvalidEventError &&
        error.code === 'INVALID_EVENT' &&
        LIMIT_MESSAGE.test(error.message) &&
        error.message.includes(`${MAX_INDEXED_TEXT_BYTES + 1} bytes`),
    );
  });

  it('delivers a handler output with the largest subject; dead-letters one byte more as invalidEvent at once', async () => {
    const largest = incompressible(MAX_INDEXED_TEXT_BYTES);
    await broker.dispatch(clientEvent(EMITTER, { subject: largest }));
    await waitFor('delivery of the output', () => received.find((entry) => entry.subject === largest));

    const jobId = await broker.dispatch(
      clientEvent(EMITTER, { subject: incompressible(MAX_INDEXED_TEXT_BYTES + 1) }),
    );
    const dead = await waitFor(
      'the dead letter',
      async () =>
        (
          await pool.query(
            `SELECT source_output, source_retry_count FROM pgboss.job WHERE name = 'arvo.dead-letter' AND source_id = $1`,
            [jobId],
          )
        ).rows[0],
      30_000,
    );
    assert.equal(dead.source_output.kind, 'invalidEvent');
    assert.equal(dead.source_retry_count, 0, 'dead-lettered at once, not retried');
    assert.match(dead.source_output.error.message, LIMIT_MESSAGE);
    const { rows: jammed } = await pool.query(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state <> 'completed'`,
      [QUEUE],
    );
    assert.equal(jammed[0].n, 0, 'nothing waits in the queue');
  });

  it('memory write, lock and read take the largest subject and refuse one byte more by name', async () => {
    const subject = incompressible(MAX_INDEXED_TEXT_BYTES);
    const data = { subject, parentSubject: null, status: incompressible(MAX_INDEXED_TEXT_BYTES) };
    await memory.write(subject, data, null);
    assert.equal(await memory.lock(subject), true);
    assert.deepEqual(await memory.read(subject), data);
    assert.equal(await memory.unlock(subject), true);
    // A child whose parent subject is the largest.
    const child = incompressible(40);
    await memory.write(child, { subject: child, parentSubject: subject }, null);
    assert.equal(await memory.getRootSubject(child), subject);

    const tooLong = incompressible(MAX_INDEXED_TEXT_BYTES + 1);
    const refused = (error: unknown) =>
      error instanceof ArvoPostgresError &&
      error.code === 'INVALID_ARGUMENT' &&
      LIMIT_MESSAGE.test(error.message);
    await assert.rejects(memory.write(tooLong, { subject: tooLong }, null), refused);
    await assert.rejects(memory.lock(tooLong), refused);
    await assert.rejects(memory.read(tooLong), refused);
    const other = incompressible(40);
    await assert.rejects(memory.write(other, { subject: other, parentSubject: tooLong }, null), refused);
    await assert.rejects(memory.write(other, { subject: other, status: tooLong }, null), refused);
  });

  it('PostgresLock takes the largest key and refuses one byte more by name', async () => {
    const key = incompressible(MAX_INDEXED_TEXT_BYTES);
    const handle = await lock.acquire(key);
    assert.ok(handle);
    assert.equal(await lock.release(handle), true);
    await assert.rejects(
      lock.acquire(incompressible(MAX_INDEXED_TEXT_BYTES + 1)),
      (error: unknown) =>
        error instanceof ArvoPostgresError &&
        error.code === 'INVALID_LOCK_KEY' &&
        LIMIT_MESSAGE.test(error.message),
    );
  });
});
