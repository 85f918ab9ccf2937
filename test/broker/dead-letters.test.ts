import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ContractViolation } from 'arvo-event-handler';
import type pg from 'pg';
import {
  type DeadLetter,
  DeadLetters,
  type JobFailureRecord,
  MAX_FAILURE_HISTORY,
  PostgresEventBroker,
  queryQueueStats,
} from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { closeAll } from '../support/close';
import type { TestDatabase } from '../support/database';
import { clientEvent, handler, jobsIn, memoryLogger, openTestDatabase, replyTo, waitFor } from './support';

const SECRET_URL = 'postgres://app:dlq-s3cr3t-pw@db.internal:5432/app';

describe('Dead letters: list, show, replay with history, purge', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let broker: PostgresEventBroker;
  /** Standalone, on its own pool: what the CLI uses. */
  let standalone: DeadLetters;
  const calls = new Map<string, number>();
  const fixed = new Set<string>();

  before(async () => {
    ({ db, pool } = await openTestDatabase('broker_dead_letters'));
    broker = new PostgresEventBroker({
      connectionString: db.url,
      logger: memoryLogger(),
      // Two attempts per round, no delay between them.
      defaults: { worker: { retryLimit: 1, retryDelay: 0, retryBackoff: false } },
    });
    await broker.register(
      handler('com.dlq.flaky', async (event) => {
        calls.set(event.id, (calls.get(event.id) ?? 0) + 1);
        if (!fixed.has(event.id)) throw new Error(`cannot reach ${SECRET_URL} (call ${calls.get(event.id)})`);
        return [replyTo(event, 'evt.flaky.done')];
      }),
    );
    await broker.register(
      handler('com.dlq.other', async () => {
        throw new Error('other queue fails too');
      }),
      { queue: { deadLetter: 'com.dlq.other.dead-letter' } },
    );
    await broker.register(
      handler('com.dlq.nul', async () => {
        throw new ContractViolation('bad \u0000 byte');
      }),
    );
    await broker.onWorkflowComplete({ source: 'com.test.client', listener: async () => {} });
    await broker.start();
    standalone = new DeadLetters({ pool, schema: 'pgboss' });
  });

  after(() => closeAll(broker, pool, db));

  async function deadLetterOf(eventId: string, minimumHistory = 0): Promise<DeadLetter> {
    return waitFor(
      `dead letter of ${eventId} with ${minimumHistory} earlier failures`,
      async () =>
        (await standalone.list({ limit: 1000 })).find(
          (letter) => letter.event.id === eventId && letter.history.length >= minimumHistory,
        ),
      30_000,
    );
  }

  it('keeps the attempt history when a replayed event fails again, and delivers it once fixed', async () => {
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
      (await jobsIn(pool, 'com.dlq.flaky')).filter(
        (row) => row.data.id === event.id && row.state === 'completed',
      ).length;
    await waitFor('the replayed job completed', async () => (await completed()) > 0);
    assert.equal(await completed(), 1);
  });

  it(`keeps only the newest ${MAX_FAILURE_HISTORY} earlier failures in a record's history`, async () => {
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
    const { rowCount } = await pool.query(
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

  it('lists every dead-letter queue standalone, narrows by queue and source, and shows one', async () => {
    const flaky = clientEvent('com.dlq.flaky', { n: 2 });
    const other = clientEvent('com.dlq.other', { n: 3 });
    await broker.dispatch(flaky);
    await broker.dispatch(other);
    const flakyLetter = await deadLetterOf(flaky.id);
    const otherLetter = await deadLetterOf(other.id);
    assert.equal(otherLetter.deadLetterQueue, 'com.dlq.other.dead-letter');

    const bySource = await standalone.list({ sourceQueue: 'com.dlq.other' });
    assert.deepEqual(
      bySource.map((letter) => letter.id),
      [otherLetter.id],
    );
    const byQueue = await standalone.list({ queue: 'com.dlq.other.dead-letter' });
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

  it("getStats and the broker's dead letters count its dead-letter queues even once no queue names them", async () => {
    const events = [clientEvent('com.dlq.flaky', { n: 8 }), clientEvent('com.dlq.other', { n: 9 })];
    for (const event of events) await broker.dispatch(event);
    for (const event of events) await deadLetterOf(event.id);
    const sources = ['com.dlq.flaky', 'com.dlq.other'];
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
    const { rows } = await pool.query<{ name: string; dead_letter: string }>(
      `UPDATE pgboss.queue q SET dead_letter = NULL FROM pgboss.queue old
        WHERE old.name = q.name AND q.dead_letter IS NOT NULL
        RETURNING q.name, old.dead_letter`,
    );
    try {
      assert.deepEqual(await counts(), named);
      // Counting only the queues some queue names would lose them, as would a standalone DeadLetters
      // that knows only the default dead-letter queue.
      const unnamed = await queryQueueStats(pool, 'pgboss', sources, false, []);
      assert.deepEqual(
        unnamed.map((entry) => entry.deadLettered),
        [0, 0],
      );
      assert.equal((await standalone.list({ sourceQueue: 'com.dlq.other' })).length, 0);
    } finally {
      for (const row of rows) {
        await pool.query('UPDATE pgboss.queue SET dead_letter = $2 WHERE name = $1', [
          row.name,
          row.dead_letter,
        ]);
      }
    }
  });

  it('dead-letters at once, with its record, an error whose message holds a NUL character', async () => {
    const event = clientEvent('com.dlq.nul');
    await broker.dispatch(event);
    const letter = await deadLetterOf(event.id);
    const failure = letter.failure as JobFailureRecord;
    assert.equal(failure.kind, 'contract');
    assert.equal(failure.eventId, event.id);
    // PostgreSQL cannot store U+0000: it is replaced, the rest of the message kept.
    assert.match(failure.error.message, /bad \uFFFD byte/);
    assert.equal(letter.attempts, 1);
    const [source] = (await jobsIn(pool, 'com.dlq.nul')).filter((job) => job.id === letter.sourceJobId);
    assert.equal(source?.state, 'failed');
  });

  it('replays all of one source queue in one call', async () => {
    const events = [clientEvent('com.dlq.flaky', { n: 4 }), clientEvent('com.dlq.flaky', { n: 5 })];
    for (const event of events) await broker.dispatch(event);
    const letters = await Promise.all(events.map((event) => deadLetterOf(event.id)));
    const waiting = await standalone.list({ sourceQueue: 'com.dlq.flaky', limit: 1000 });
    for (const letter of letters) assert.ok(waiting.some((entry) => entry.id === letter.id));
    // Fix everything waiting from that queue (an earlier test left one there too).
    for (const letter of waiting) fixed.add(letter.event.id as string);
    const otherBefore = (await standalone.list({ sourceQueue: 'com.dlq.other' })).length;
    const replayed = await standalone.replay({ all: true, sourceQueue: 'com.dlq.flaky' });
    assert.deepEqual(
      replayed.map((entry) => entry.deadLetterId).sort(),
      waiting.map((letter) => letter.id).sort(),
    );
    assert.ok(replayed.every((entry) => entry.queue === 'com.dlq.flaky'));
    assert.equal((await standalone.list({ sourceQueue: 'com.dlq.flaky' })).length, 0);
    // Other sources untouched.
    assert.equal((await standalone.list({ sourceQueue: 'com.dlq.other' })).length, otherBefore);
    for (const event of events) {
      await waitFor(`replayed ${event.id} handled`, () => calls.get(event.id) === 3, 30_000);
    }
  });

  it('purges by id and by age', async () => {
    const events = [clientEvent('com.dlq.other', { n: 6 }), clientEvent('com.dlq.other', { n: 7 })];
    for (const event of events) await broker.dispatch(event);
    const [a, b] = await Promise.all(events.map((event) => deadLetterOf(event.id)));
    assert.deepEqual(await standalone.purge({ ids: [a!.id] }), [a!.id]);
    assert.equal(await standalone.show(a!.id), null);
    assert.deepEqual(await standalone.purge({ olderThanMs: 3_600_000 }), [], 'nothing is an hour old');
    const remaining = (await standalone.list({ limit: 1000 })).map((letter) => letter.id);
    assert.ok(remaining.includes(b!.id));
    const purged = await standalone.purge({ olderThanMs: 0, sourceQueue: 'com.dlq.other' });
    assert.ok(purged.includes(b!.id));
    assert.equal((await standalone.list({ sourceQueue: 'com.dlq.other' })).length, 0);
  });

  it('rejects bad selections with typed errors naming the option', async () => {
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
