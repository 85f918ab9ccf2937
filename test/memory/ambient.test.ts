import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { ArvoOrchestrationSubject } from 'arvo-core';
import {
  connectPostgresMachineMemory,
  type PostgresMachineMemory,
  releasePostgresMachineMemory,
} from '../../src/memory/index';
import { type AmbientTransaction, runInAmbientTransaction } from '../../src/shared/transaction';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { memoryForTest } from '../support/memory';

let db: TestDatabase;

/**
 * The memories of one test, closed when it ends: `memory`, which the test drives, and `observer`,
 * which sees only committed state and tries a lock once.
 */
async function memories(t: TestContext) {
  return {
    memory: await memoryForTest(t, { connectionString: db.url }),
    observer: await memoryForTest(t, { connectionString: db.url, lock: { maxAttempts: 1 } }),
  };
}

/** A hand-made ambient transaction over one real connection of `memory`'s pool, settled by the test. */
async function openTransaction(memory: PostgresMachineMemory, databaseId = memory.databaseId) {
  const client = await memory.pool.connect();
  await client.query('BEGIN');
  const callbacks: Array<() => void | Promise<void>> = [];
  const tx: AmbientTransaction = {
    databaseId,
    query: (text, values) => client.query(text, values),
    onSettled: (callback) => {
      callbacks.push(callback);
    },
  };
  return {
    tx,
    callbacks,
    async settle(outcome: 'COMMIT' | 'ROLLBACK') {
      try {
        await client.query(outcome);
      } finally {
        client.release();
      }
      for (const callback of callbacks) await callback();
    },
  };
}

function newSubject(): string {
  return ArvoOrchestrationSubject.new({
    orchestator: 'arvo.orc.ambient',
    version: '1.0.0',
    initiator: 'com.test.client',
  });
}

/** One orchestrator cycle of `memory` in `tx`: lock, read, write `{ subject, step }` over the read record, unlock. */
function stepInTransaction(
  memory: PostgresMachineMemory,
  tx: AmbientTransaction,
  subject: string,
  step: number,
): Promise<unknown> {
  return runInAmbientTransaction(tx, async () => {
    assert.equal(await memory.lock(subject), true);
    const prev = await memory.read(subject);
    await memory.write(subject, { subject, step }, prev);
    assert.equal(await memory.unlock(subject), true);
    return prev;
  });
}

before(async () => {
  db = await createTestDatabase('memory_ambient');
});
after(() => db.drop());

describe('PostgresMachineMemory in an ambient transaction', () => {
  it('writes through the transaction and releases the lock only after it committed', async (t) => {
    const { memory, observer } = await memories(t);
    const subject = newSubject();
    const transaction = await openTransaction(memory);
    await runInAmbientTransaction(transaction.tx, async () => {
      assert.equal(await memory.lock(subject), true);
      assert.equal(await memory.read(subject), null);
      await memory.write(subject, { subject, status: 'active', step: 1 }, null);
      assert.equal(await memory.unlock(subject), true);
    });
    assert.equal(await observer.read(subject), null, 'uncommitted state is invisible');
    assert.equal(await observer.lock(subject), false, 'the lock is held until the transaction settles');

    await transaction.settle('COMMIT');
    assert.deepEqual(await observer.read(subject), { subject, status: 'active', step: 1 });
    assert.equal(await observer.lock(subject), true);
    assert.equal(await observer.unlock(subject), true);
  });

  it('loses the write with a rollback and still releases the lock', async (t) => {
    const { memory, observer } = await memories(t);
    const subject = newSubject();
    await memory.write(subject, { subject, step: 0 }, null);
    const transaction = await openTransaction(memory);
    await stepInTransaction(memory, transaction.tx, subject, 1);
    await transaction.settle('ROLLBACK');
    assert.deepEqual(await observer.read(subject), { subject, step: 0 });
    assert.equal(await observer.lock(subject), true);
    await observer.unlock(subject);
    // The memory's next CAS starts from what is committed.
    const prev = await memory.read(subject);
    await memory.write(subject, { subject, step: 1 }, prev);
    assert.deepEqual(await observer.read(subject), { subject, step: 1 });
  });

  it('a lock waiting for the deferred unlock reads, with it, the state that transaction committed', async (t) => {
    const { memory } = await memories(t);
    const waiter = await connectPostgresMachineMemory({
      connectionString: db.url,
      lock: { maxAttempts: 1000, initialDelayMs: 5, backoffExponent: 1, maxDelayMs: 5 },
    });
    try {
      const subject = newSubject();
      await memory.write(subject, { subject, step: 0 }, null);
      const transaction = await openTransaction(memory);
      assert.deepEqual(await stepInTransaction(memory, transaction.tx, subject, 1), { subject, step: 0 });
      const locking = waiter.lock(subject);
      await transaction.settle('COMMIT');
      assert.equal(await locking, true);
      const current = await waiter.read(subject);
      assert.deepEqual(current, { subject, step: 1 });
      await waiter.write(subject, { subject, step: 2 }, current);
      assert.equal(await waiter.unlock(subject), true);
    } finally {
      await releasePostgresMachineMemory(waiter);
    }
  });

  it('the completion hook and deleteWorkflow delete inside the transaction (no wait on its row locks)', async (t) => {
    const { memory, observer } = await memories(t);
    const cleaning = await connectPostgresMachineMemory({
      connectionString: db.url,
      cleanup: { onCompletion: false },
      statementTimeoutMillis: 5_000,
    });
    const completing = await connectPostgresMachineMemory({
      connectionString: db.url,
      cleanup: { onCompletion: true },
      statementTimeoutMillis: 5_000,
    });
    try {
      for (const [outcome, kept] of [
        ['ROLLBACK', true],
        ['COMMIT', false],
      ] as const) {
        const finished = newSubject();
        const deleted = newSubject();
        await memory.write(finished, { subject: finished, status: 'active' }, null);
        await memory.write(deleted, { subject: deleted, status: 'active' }, null);
        const transaction = await openTransaction(memory);
        await runInAmbientTransaction(transaction.tx, async () => {
          // arvo 3's last step: write the final state, then call the hook, both in the job (the
          // write goes through a memory without the policy, so that only the hook deletes).
          const prev = await cleaning.read(finished);
          await cleaning.write(finished, { subject: finished, status: 'done' }, prev);
          await completing.cleanup(finished);
          const other = await cleaning.read(deleted);
          await cleaning.write(deleted, { subject: deleted, status: 'done' }, other);
          await cleaning.cleanup(deleted);
          assert.equal(await cleaning.deleteWorkflow(deleted), 1);
        });
        assert.notEqual(await observer.read(finished), null, 'uncommitted deletion is invisible');
        await transaction.settle(outcome);
        assert.equal((await observer.read(finished)) !== null, kept, `${outcome}: ${finished}`);
        assert.equal((await observer.read(deleted)) !== null, kept, `${outcome}: ${deleted}`);
      }
    } finally {
      await releasePostgresMachineMemory(cleaning);
      await releasePostgresMachineMemory(completing);
    }
  });

  it("inside a job the lock is the transaction's: no lock row, and it excludes lock rows both ways", async (t) => {
    const { memory, observer } = await memories(t);
    const once = await memoryForTest(t, { connectionString: db.url, lock: { maxAttempts: 1 } });
    const subject = newSubject();
    const xid = async (tx: AmbientTransaction) =>
      (await tx.query('SELECT txid_current_if_assigned()::text AS x')).rows[0].x;
    const lockRows = async () =>
      (
        await observer.pool.query('SELECT count(*)::int AS n FROM public.arvo_workflow_lock WHERE key = $1', [
          subject,
        ])
      ).rows[0].n;

    // A lock row held outside any job keeps a job out.
    assert.equal(await observer.lock(subject), true);
    const refused = await openTransaction(once);
    await runInAmbientTransaction(refused.tx, async () => {
      assert.equal(await once.lock(subject), false, 'a live lock row keeps the job out');
    });
    await refused.settle('ROLLBACK');
    await observer.write(subject, { subject, step: 1 }, null);
    assert.equal(await observer.unlock(subject), true);

    // The job's lock: no row, no commit, and it keeps lock rows (and other jobs) out until it commits.
    const first = await openTransaction(memory);
    const second = await openTransaction(once);
    await runInAmbientTransaction(first.tx, async () => {
      assert.equal(await memory.lock(subject), true);
      assert.deepEqual(
        await memory.read(subject),
        { subject, step: 1 },
        'the record the lock row holder committed',
      );
      assert.equal(await xid(first.tx), null, 'the lock wrote nothing: no commit of its own');
      assert.equal(await lockRows(), 0, 'no lock row');
      await memory.write(subject, { subject, step: 2 }, { subject, step: 1 });
      assert.equal(await memory.unlock(subject), true);
    });
    assert.equal(await observer.lock(subject), false, 'a lock row is refused while the job holds the lock');
    await runInAmbientTransaction(second.tx, async () => {
      assert.equal(await once.lock(subject), false, 'another job is refused too');
    });
    await second.settle('ROLLBACK');
    await first.settle('COMMIT');
    assert.equal(await observer.lock(subject), true, 'free once the job committed');
    assert.deepEqual(await observer.read(subject), { subject, step: 2 });
    assert.equal(await observer.unlock(subject), true);
  });

  it('inside a job every read goes through its transaction, never waiting for a pool connection', async (t) => {
    // One connection, held by the job's transaction: a read on the pool would wait for it forever.
    const memory = await memoryForTest(t, {
      connectionString: db.url,
      max: 1,
      connectionTimeoutMillis: 3000,
    });
    const [subject, other] = [newSubject(), newSubject()];
    await memory.write(subject, { subject, step: 0 }, null);
    const transaction = await openTransaction(memory);
    try {
      await runInAmbientTransaction(transaction.tx, async () => {
        assert.equal(await memory.lock(subject), true);
        // A change of the state table after the lock: the record read with the lock is not served.
        await memory.write(other, { subject: other, step: 0 }, null);
        assert.deepEqual(await memory.read(subject), { subject, step: 0 });
        assert.equal(await memory.unlock(subject), true);
      });
    } finally {
      await transaction.settle('COMMIT');
    }
  });

  it('ignores an ambient transaction of another database', async (t) => {
    const { memory, observer } = await memories(t);
    const subject = newSubject();
    const transaction = await openTransaction(memory, 'some-other-cluster/other-db');
    try {
      await runInAmbientTransaction(transaction.tx, async () => {
        assert.equal(await memory.lock(subject), true);
        await memory.write(subject, { subject, step: 1 }, null);
        assert.equal(await memory.unlock(subject), true);
      });
      assert.equal(transaction.callbacks.length, 0);
      assert.deepEqual(
        await observer.read(subject),
        { subject, step: 1 },
        'written through the pool at once',
      );
      assert.equal(await observer.lock(subject), true, 'released at once');
      await observer.unlock(subject);
    } finally {
      await transaction.settle('ROLLBACK');
    }
    assert.deepEqual(await observer.read(subject), { subject, step: 1 });
  });
});
