import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { ContractViolation } from 'arvo-event-handler';
import {
  type DeadLetter,
  DeadLetters,
  type JobFailureRecord,
  MAX_FAILURE_HISTORY,
  type PostgresEventBroker,
  queryQueueStats,
} from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { clientEvent, handler, jobsIn, listenToClient, replyTo, useTestDatabase, waitFor } from './support';

const SECRET_URL = 'postgres://app:dlq-s3cr3t-pw@db.internal:5432/app';

/**
 * A handler on `source` that fails with a secret in its error until its event is in `fixed`, then
 * replies; `calls` counts its attempts by event id.
 */
function flakyHandler(source: string) {
  const calls = new Map<string, number>();
  const fixed = new Set<string>();
  const flaky = handler(source, async (event) => {
    calls.set(event.id, (calls.get(event.id) ?? 0) + 1);
    if (!fixed.has(event.id)) throw new Error(`cannot reach ${SECRET_URL} (call ${calls.get(event.id)})`);
    return [replyTo(event, 'evt.flaky.done')];
  });
  return { flaky, calls, fixed };
}

/** A handler on `source` that always fails. */
function failingHandler(source: string) {
  return handler(source, async () => {
    throw new Error('other queue fails too');
  });
}

describe('Dead letters: list, show, replay with history, purge', () => {
  const suite = useTestDatabase('broker_dead_letters');

  /** A broker for one test with `setup`'s registrations: two attempts per round, no delay between them. */
  function startDlqBroker(t: TestContext, setup: (broker: PostgresEventBroker) => Promise<unknown>) {
    return suite.startBroker(
      t,
      { defaults: { worker: { retryLimit: 1, retryDelay: 0, retryBackoff: false } } },
      async (b) => {
        await setup(b);
        await listenToClient(b);
      },
    );
  }

  /**
   * A broker for one test with two queues of their own: `name`, flaky, dead-lettering to the default
   * dead-letter queue, and `name.other`, always failing, with its own `name.other.dead-letter`.
   */
  function startTwoSourceBroker(t: TestContext, name: string) {
    return startDlqBroker(t, async (b) => {
      await b.register(flakyHandler(name).flaky);
      await b.register(failingHandler(`${name}.other`), {
        queue: { deadLetter: `${name}.other.dead-letter` },
      });
    });
  }

  /** Dead letters read standalone, on the suite's pool: what the CLI uses. */
  function standaloneDeadLetters(): DeadLetters {
    return new DeadLetters({ pool: suite.pool, schema: 'pgboss' });
  }

  async function deadLetterOf(eventId: string, minimumHistory = 0): Promise<DeadLetter> {
    const standalone = standaloneDeadLetters();
    return waitFor(
      `dead letter of ${eventId} with ${minimumHistory} earlier failures`,
      async () =>
        (await standalone.list({ limit: 1000 })).find(
          (letter) => letter.event.id === eventId && letter.history.length >= minimumHistory,
        ),
      30_000,
    );
  }

  it('keeps the attempt history when a replayed event fails again, and delivers it once fixed', async (t) => {
    const { flaky, calls, fixed } = flakyHandler('com.dlq.flaky');
    const broker = await startDlqBroker(t, (b) => b.register(flaky));
    const standalone = standaloneDeadLetters();
    const event = clientEvent('com.dlq.flaky', { n: 1 });
    await broker.dispatch(event);

    // Round 1: two attempts, then dead-lettered; the first attempt is in the history.
    const first = await deadLetterOf(event.id);
    assert.equal(first.sourceQueue, 'com.dlq.flaky');
    assert.equal(first.deadLetterQueue, 'arvo.dead-letter');
    assert.equal(first.attempts, 2);
    assert.equal(first.totalAttempts, 2);
    assert.deepEqual(
      first.history.map((entry) => [entry.queue, entry.attempt, entry.kind]),
      [['com.dlq.flaky', 1, 'infrastructure']],
    );
    assert.match(first.error!.message, /call 2/);
    assert.match(first.history[0]!.error.message, /call 1/);
    // Redacted, in the record and in its history.
    assert.ok(!JSON.stringify(first).includes('dlq-s3cr3t-pw'));
    assert.match(first.error!.message, /\[REDACTED\]/);
    assert.equal('stack' in first.error!, false);
    assert.ok(first.firstFailedAt! < first.lastFailedAt!);

    // Round 2: replayed, fails twice more, back in the DLQ with all three earlier failures.
    const replayed = await broker.deadLetters.replay({ ids: [first.id] });
    assert.deepEqual(
      replayed.map((entry) => [entry.deadLetterId, entry.queue]),
      [[first.id, 'com.dlq.flaky']],
    );
    assert.equal(await broker.deadLetters.show(first.id), null, 'the replayed dead letter is gone');
    const second = await deadLetterOf(event.id, 3);
    assert.notEqual(second.id, first.id);
    assert.equal(second.attempts, 2);
    assert.equal(second.totalAttempts, 4);
    assert.deepEqual(
      second.history.map((entry) => entry.attempt),
      [1, 2, 1],
    );
    assert.deepEqual(
      second.history.map((entry) => entry.error.message.match(/call \d/)?.[0]),
      ['call 1', 'call 2', 'call 3'],
    );
    assert.match(second.error!.message, /call 4/);
    assert.equal(second.firstFailedAt!.getTime(), first.firstFailedAt!.getTime());
    assert.equal(calls.get(event.id), 4);
    const record = second.failure as JobFailureRecord;
    assert.equal(record.history?.length, 3);

    // Round 3: fixed; the replay is handled once and nothing is left in the DLQ.
    fixed.add(event.id);
    assert.equal(await broker.redriveDeadLetters({ ids: [second.id] }), 1);
    await waitFor('the fixed event handled', () => calls.get(event.id) === 5, 30_000);
    await waitFor('no dead letter of the event', async () =>
      (await standalone.list()).every((letter) => letter.event.id !== event.id),
    );
    // The handler returned; its job completes when the job's transaction commits, a moment later.
    const completed = async () =>
      (await jobsIn(suite.pool, 'com.dlq.flaky')).filter(
        (row) => row.data.id === event.id && row.state === 'completed',
      ).length;
    await waitFor('the replayed job completed', async () => (await completed()) > 0);
    assert.equal(await completed(), 1);
  });

  it(`keeps only the newest ${MAX_FAILURE_HISTORY} earlier failures in a record's history`, async (t) => {
    const { flaky, calls } = flakyHandler('com.dlq.flaky');
    const broker = await startDlqBroker(t, (b) => b.register(flaky));
    const standalone = standaloneDeadLetters();
    const event = clientEvent('com.dlq.flaky', { n: 'cap' });
    await broker.dispatch(event);
    const letter = await deadLetterOf(event.id);
    // As if it had been replayed many times: a full history of older failures, oldest first.
    const older = Array.from({ length: MAX_FAILURE_HISTORY }, (_, index) => ({
      kind: 'infrastructure',
      queue: 'com.dlq.flaky',
      attempt: 1,
      eventId: event.id,
      eventType: event.type,
      error: { name: 'Error', message: `older failure ${index}` },
      failedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, index)).toISOString(),
    }));
    const { rowCount } = await suite.pool.query(
      `UPDATE pgboss.job SET source_output = jsonb_set(source_output, '{history}', $3::jsonb)
        WHERE name = $1 AND id = $2`,
      [letter.deadLetterQueue, letter.id, JSON.stringify(older)],
    );
    assert.equal(rowCount, 1);
    assert.equal((await standalone.show(letter.id))?.totalAttempts, MAX_FAILURE_HISTORY + 1);

    // Replayed, it fails twice more: 25 older + the dead letter's failure + attempt 1 = 27 earlier
    // failures, of which the record keeps the newest 25.
    await standalone.replay({ ids: [letter.id] });
    const again = await waitFor(
      'the replayed event dead-lettered again',
      async () =>
        (await standalone.list({ sourceQueue: 'com.dlq.flaky', limit: 1000 })).find(
          (entry) => entry.event.id === event.id,
        ),
      30_000,
    );
    assert.equal(again.history.length, MAX_FAILURE_HISTORY);
    assert.equal(again.totalAttempts, MAX_FAILURE_HISTORY + 1);
    const messages = again.history.map((entry) => entry.error.message);
    assert.deepEqual(
      messages.slice(0, MAX_FAILURE_HISTORY - 2),
      older.slice(2).map((entry) => entry.error.message),
      'the two oldest are dropped, the rest kept in order',
    );
    assert.match(
      messages.at(-2)!,
      new RegExp(`call ${calls.get(event.id)! - 2}`),
      "the dead letter's failure",
    );
    assert.match(messages.at(-1)!, new RegExp(`call ${calls.get(event.id)! - 1}`), 'attempt 1 of the replay');
    assert.equal(again.history.at(-1)!.attempt, 1);
    assert.match(again.error!.message, new RegExp(`call ${calls.get(event.id)}`));
    assert.equal(again.firstFailedAt!.toISOString(), older[2]!.failedAt);
    assert.deepEqual(await standalone.purge({ ids: [again.id] }), [again.id]);
  });

  it('lists every dead-letter queue standalone, narrows by queue and source, and shows one', async (t) => {
    // Queues of this test alone, so the narrowed lists hold exactly its dead letters.
    const broker = await startTwoSourceBroker(t, 'com.dlq.listed');
    const standalone = standaloneDeadLetters();
    const flaky = clientEvent('com.dlq.listed', { n: 2 });
    const other = clientEvent('com.dlq.listed.other', { n: 3 });
    await broker.dispatch(flaky);
    await broker.dispatch(other);
    const flakyLetter = await deadLetterOf(flaky.id);
    const otherLetter = await deadLetterOf(other.id);
    assert.equal(otherLetter.deadLetterQueue, 'com.dlq.listed.other.dead-letter');

    const bySource = await standalone.list({ sourceQueue: 'com.dlq.listed.other' });
    assert.deepEqual(
      bySource.map((letter) => letter.id),
      [otherLetter.id],
    );
    const byQueue = await standalone.list({ queue: 'com.dlq.listed.other.dead-letter' });
    assert.deepEqual(
      byQueue.map((letter) => letter.id),
      [otherLetter.id],
    );
    // The broker's own method defaults to its dead-letter queue.
    const brokers = await broker.listDeadLetters();
    assert.ok(brokers.some((letter) => letter.id === flakyLetter.id));
    assert.ok(brokers.every((letter) => letter.deadLetterQueue === 'arvo.dead-letter'));
    assert.equal((await standalone.list({ limit: 1 })).length, 1);

    const shown = await standalone.show(otherLetter.id);
    assert.equal(shown?.id, otherLetter.id);
    assert.match((shown!.failure as JobFailureRecord).error.stack ?? '', /other queue fails too/);
    assert.equal(await standalone.show('00000000-0000-4000-8000-000000000000'), null);
  });

  it("getStats and the broker's dead letters count its dead-letter queues even once no queue names them", async (t) => {
    const broker = await startTwoSourceBroker(t, 'com.dlq.counted');
    const standalone = standaloneDeadLetters();
    const sources = ['com.dlq.counted', 'com.dlq.counted.other'];
    const events = sources.map((source, n) => clientEvent(source, { n }));
    for (const event of events) await broker.dispatch(event);
    for (const event of events) await deadLetterOf(event.id);
    const counts = async () => {
      const stats = await broker.getStats({ queues: sources });
      const listed = await Promise.all(
        sources.map(
          async (sourceQueue) => (await broker.deadLetters.list({ sourceQueue, limit: 1000 })).length,
        ),
      );
      return { stats: stats.map((entry) => entry.deadLettered), listed };
    };
    const named = await counts();
    assert.deepEqual(named.stats, named.listed);
    assert.ok(
      named.listed.every((count) => count > 0),
      `listed ${named.listed}`,
    );
    // Reconfigured queues no longer name the broker's dead-letter queues; their letters still wait there.
    const { rows } = await suite.pool.query<{ name: string; dead_letter: string }>(
      `UPDATE pgboss.queue q SET dead_letter = NULL FROM pgboss.queue old
        WHERE old.name = q.name AND q.dead_letter IS NOT NULL
        RETURNING q.name, old.dead_letter`,
    );
    try {
      assert.deepEqual(await counts(), named);
      // Counting only the queues some queue names would lose them, as would a standalone DeadLetters
      // that knows only the default dead-letter queue.
      const unnamed = await queryQueueStats(suite.pool, 'pgboss', sources, false, []);
      assert.deepEqual(
        unnamed.map((entry) => entry.deadLettered),
        [0, 0],
      );
      assert.equal((await standalone.list({ sourceQueue: 'com.dlq.counted.other' })).length, 0);
    } finally {
      for (const row of rows) {
        await suite.pool.query('UPDATE pgboss.queue SET dead_letter = $2 WHERE name = $1', [
          row.name,
          row.dead_letter,
        ]);
      }
    }
  });

  it('dead-letters at once, with its record, an error whose message holds a NUL character', async (t) => {
    const nul = handler('com.dlq.nul', async () => {
      throw new ContractViolation('bad \u0000 byte');
    });
    const broker = await startDlqBroker(t, (b) => b.register(nul));
    const event = clientEvent('com.dlq.nul');
    await broker.dispatch(event);
    const letter = await deadLetterOf(event.id);
    const failure = letter.failure as JobFailureRecord;
    assert.equal(failure.kind, 'contract');
    assert.equal(failure.eventId, event.id);
    // PostgreSQL cannot store U+0000: it is replaced, the rest of the message kept.
    assert.match(failure.error.message, /bad \uFFFD byte/);
    assert.equal(letter.attempts, 1);
    const [source] = (await jobsIn(suite.pool, 'com.dlq.nul')).filter((job) => job.id === letter.sourceJobId);
    assert.equal(source?.state, 'failed');
  });

  it('replays all of one source queue in one call', async (t) => {
    const { flaky, calls, fixed } = flakyHandler('com.dlq.replayed');
    const broker = await startDlqBroker(t, async (b) => {
      await b.register(flaky);
      await b.register(failingHandler('com.dlq.kept'));
    });
    const standalone = standaloneDeadLetters();
    // A dead letter of another source, which the replay must leave alone.
    const kept = clientEvent('com.dlq.kept');
    await broker.dispatch(kept);
    await deadLetterOf(kept.id);
    const events = [clientEvent('com.dlq.replayed', { n: 4 }), clientEvent('com.dlq.replayed', { n: 5 })];
    for (const event of events) await broker.dispatch(event);
    const letters = await Promise.all(events.map((event) => deadLetterOf(event.id)));
    const waiting = await standalone.list({ sourceQueue: 'com.dlq.replayed', limit: 1000 });
    for (const letter of letters) assert.ok(waiting.some((entry) => entry.id === letter.id));
    for (const letter of waiting) fixed.add(letter.event.id as string);
    const otherBefore = (await standalone.list({ sourceQueue: 'com.dlq.kept' })).length;
    assert.equal(otherBefore, 1);
    const replayed = await standalone.replay({ all: true, sourceQueue: 'com.dlq.replayed' });
    assert.deepEqual(
      replayed.map((entry) => entry.deadLetterId).sort(),
      waiting.map((letter) => letter.id).sort(),
    );
    assert.ok(replayed.every((entry) => entry.queue === 'com.dlq.replayed'));
    assert.equal((await standalone.list({ sourceQueue: 'com.dlq.replayed' })).length, 0);
    // Other sources untouched.
    assert.equal((await standalone.list({ sourceQueue: 'com.dlq.kept' })).length, otherBefore);
    for (const event of events) {
      await waitFor(`replayed ${event.id} handled`, () => calls.get(event.id) === 3, 30_000);
    }
  });

  it('purges by id and by age', async (t) => {
    const broker = await startDlqBroker(t, (b) =>
      b.register(failingHandler('com.dlq.purged'), { queue: { deadLetter: 'com.dlq.purged.dead-letter' } }),
    );
    const standalone = standaloneDeadLetters();
    const events = [clientEvent('com.dlq.purged', { n: 6 }), clientEvent('com.dlq.purged', { n: 7 })];
    for (const event of events) await broker.dispatch(event);
    const [a, b] = await Promise.all(events.map((event) => deadLetterOf(event.id)));
    assert.deepEqual(await standalone.purge({ ids: [a!.id] }), [a!.id]);
    assert.equal(await standalone.show(a!.id), null);
    assert.deepEqual(await standalone.purge({ olderThanMs: 3_600_000 }), [], 'nothing is an hour old');
    const remaining = (await standalone.list({ limit: 1000 })).map((letter) => letter.id);
    assert.ok(remaining.includes(b!.id));
    const purged = await standalone.purge({ olderThanMs: 0, sourceQueue: 'com.dlq.purged' });
    assert.ok(purged.includes(b!.id));
    assert.equal((await standalone.list({ sourceQueue: 'com.dlq.purged' })).length, 0);
  });

  it('rejects bad selections with typed errors naming the option', async () => {
    const standalone = standaloneDeadLetters();
    const pool = suite.pool;
    const invalid = (option: string) => (error: unknown) =>
      error instanceof InvalidOptionError && error.option === option;
    await assert.rejects(standalone.replay({}), invalid('ids'));
    await assert.rejects(standalone.replay({ ids: ['x'], all: true } as never), invalid('ids[0]'));
    await assert.rejects(
      standalone.replay({ ids: ['00000000-0000-4000-8000-000000000000'], all: true }),
      invalid('ids'),
    );
    await assert.rejects(standalone.purge({}), invalid('ids'));
    await assert.rejects(standalone.purge({ ids: ['not-a-uuid'] }), invalid('ids[0]'));
    await assert.rejects(standalone.purge({ olderThanMs: -1 }), invalid('olderThanMs'));
    // Further back than PostgreSQL's interval arithmetic reaches: a typed error, not "interval out of range".
    await assert.rejects(standalone.purge({ olderThanMs: 1e15 }), invalid('olderThanMs'));
    await assert.rejects(standalone.list({ queue: 'bad name!' }), invalid('queue'));
    await assert.rejects(standalone.list({ limit: 0 }), invalid('limit'));
    await assert.rejects(standalone.list({ sourceQeue: 'x' } as never), invalid('filter.sourceQeue'));
    assert.throws(() => new DeadLetters({ pool, schema: 'bad-schema' }), invalid('schema'));
    assert.throws(
      () => new DeadLetters({ pool, deadLetterQueues: 'arvo.dead-letter' as never }),
      invalid('deadLetterQueues'),
    );
    assert.throws(
      () => new DeadLetters({ pool, deadLetterQueues: ['bad name!'] }),
      invalid('deadLetterQueues[0]'),
    );
  });
});
