import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobFailureRecord } from '../../src/broker/dead-letters';
import {
  abandonedQueue,
  clientEvent,
  handler,
  memoryLogger,
  spawnWorker,
  useTestDatabase,
  waitFor,
} from './support';

/** A handler whose every output is not an event: its jobs are dead-lettered at once. */
function badOutput(source: string) {
  return handler(source, async () => [{ not: 'an event' } as never]);
}

describe('PostgresEventBroker: dead-letter alerts', () => {
  const suite = useTestDatabase('broker_dead_letter_alerts');

  it('calls onDeadLetter once per dead letter after its commit (policy, exhausted retries, expiry), and counts them', async (t) => {
    const logger = memoryLogger();
    /** Every call of the listener, with whether its dead letter was already visible (committed). */
    const calls: Array<{ record: JobFailureRecord; visible: boolean }> = [];
    const broker = await suite.startBroker(t, { logger, maintenanceIntervalSeconds: 1 }, async (b) => {
      // Retries exhausted (pg-boss moves the last failed attempt), and dead-lettered at once (a bad output).
      await b.register(
        handler('com.alert.flaky', async () => {
          throw new Error('always fails');
        }),
        { worker: { retryLimit: 1, retryDelay: 0 } },
      );
      await b.register(badOutput('com.alert.bad'));
      b.onDeadLetter(async (record) => {
        // Seen from another connection: the move committed before the listener ran.
        const letters = await b.deadLetters.list({ sourceQueue: record.queue });
        calls.push({ record, visible: letters.some((letter) => letter.event.id === record.eventId) });
      });
      b.onDeadLetter(() => {
        throw new Error('a broken listener');
      });
    });
    // A queue nobody serves any more, with a 2 s retention: the expiry sweep dead-letters its events.
    await abandonedQueue(suite.db.url, 'com.alert.away', { queue: { retentionSeconds: 2 } });

    const flaky = [clientEvent('com.alert.flaky'), clientEvent('com.alert.flaky')];
    const bad = [clientEvent('com.alert.bad')];
    const expired = [clientEvent('com.alert.away')];
    for (const event of [...flaky, ...bad, ...expired]) await broker.dispatch(event);
    const all = [...flaky, ...bad, ...expired].map((event) => event.id).sort();
    await waitFor(
      'a listener call per dead letter',
      async () => calls.length >= all.length || undefined,
      60_000,
    );
    // Nothing is reported twice, even after further sweeps and polls.
    await sleep(3000);
    assert.deepEqual(calls.map((call) => call.record.eventId).sort(), all);
    assert.ok(
      calls.every((call) => call.visible),
      'each dead letter was committed before its call',
    );
    const kinds = Object.fromEntries(calls.map((call) => [call.record.queue, call.record.kind]));
    assert.deepEqual(kinds, {
      'com.alert.flaky': 'infrastructure',
      'com.alert.bad': 'invalidEvent',
      'com.alert.away': 'expired',
    });
    // The broken listener was logged, and changed nothing.
    assert.ok(logger.lines.some((line) => String(line[0]).includes('an onDeadLetter listener failed')));

    const metrics = await broker.getMetrics();
    assert.match(
      metrics,
      /arvo_postgres_jobs_dead_lettered_total\{queue="com\.alert\.flaky",kind="infrastructure"\} 2/,
    );
    assert.match(
      metrics,
      /arvo_postgres_jobs_dead_lettered_total\{queue="com\.alert\.away",kind="expired"\} 1/,
    );
    const stats = await broker.getStats({ queues: ['com.alert.flaky', 'com.alert.bad', 'com.alert.away'] });
    assert.deepEqual(
      stats.map((queue) => [queue.name, queue.deadLettered, queue.deadLetteredRecently]),
      [
        ['com.alert.flaky', 2, 2],
        ['com.alert.bad', 1, 1],
        ['com.alert.away', 1, 1],
      ],
    );
    assert.match(metrics, /arvo_postgres_queue_dead_lettered_recent\{queue="com\.alert\.flaky"\} 2/);
  });

  it('counts a dead letter as recent for 15 minutes only: the gauge falls back to 0 while the letter stays', async (t) => {
    const broker = await suite.startBroker(t, {}, (b) => b.register(badOutput('com.alert.old')));
    await broker.dispatch(clientEvent('com.alert.old'));
    await waitFor(
      'the dead letter',
      async () => (await broker.deadLetters.list({ sourceQueue: 'com.alert.old' }))[0],
    );
    await suite.pool.query(
      `UPDATE pgboss.job SET created_on = now() - interval '16 minutes' WHERE source_name = 'com.alert.old'`,
    );
    const [bad] = await broker.getStats({ queues: ['com.alert.old'] });
    assert.deepEqual([bad?.deadLettered, bad?.deadLetteredRecently], [1, 0]);
  });

  it("reports a dead letter pg-boss made when a killed worker's claim expired: once across two listening processes, none while nobody listens", async (t) => {
    // A broker without a listener: its maintenance runs every second, and pg-boss's monitor in it
    // fails the expired claim; the dead letter must wait for a listener, not be marked reported.
    const quiet = await suite.startBroker(t, { maintenanceIntervalSeconds: 1 });
    const worker = spawnWorker('dead-letter-worker.ts', suite.db.url);
    const exited = new Promise((resolve) => worker.child.once('exit', resolve));
    t.after(async () => {
      worker.child.kill('SIGKILL');
      await exited;
    });
    await waitFor('the worker ready', async () => worker.output().includes('ready') || undefined, 60_000);
    const event = clientEvent('com.alert.crash');
    await quiet.dispatch(event);
    await waitFor(
      'the handler running',
      async () => worker.output().includes('handling') || undefined,
      60_000,
    );
    worker.child.kill('SIGKILL');
    await exited;
    await waitFor(
      'the dead letter pg-boss made',
      async () => (await quiet.deadLetters.list({ sourceQueue: 'com.alert.crash' }))[0],
      60_000,
    );
    await sleep(2500); // Sweeps of the quiet broker pass.

    const calls: Array<{ listener: string; record: JobFailureRecord }> = [];
    for (const listener of ['a', 'b']) {
      await suite.startBroker(t, { maintenanceIntervalSeconds: 1 }, async (b) =>
        b.onDeadLetter((record) => {
          calls.push({ listener, record });
        }),
      );
    }
    await waitFor('a report', async () => calls[0], 60_000);
    await sleep(4000); // Further sweeps of both report nothing more.
    assert.equal(calls.length, 1, `reported once in total, got ${JSON.stringify(calls)}`);
    const [call] = calls;
    assert.deepEqual(
      [call?.record.kind, call?.record.queue, call?.record.eventId, call?.record.attempt],
      ['timeout', 'com.alert.crash', event.id, 1],
    );
    assert.match(call?.record.error.message ?? '', /job timed out/);
    // The dead letter now holds that record, as any the broker made.
    const [letter] = await quiet.deadLetters.list({ sourceQueue: 'com.alert.crash' });
    assert.equal((letter?.failure as JobFailureRecord | null)?.kind, 'timeout');
  });

  it('reports once a dead letter whose settle the broker left to pg-boss, with the stored record unmarked', async (t) => {
    const calls: JobFailureRecord[] = [];
    const broker = await suite.startBroker(t, { maintenanceIntervalSeconds: 1 }, async (b) => {
      await b.register(badOutput('com.alert.left'));
      b.onDeadLetter((record) => {
        calls.push(record);
      });
    });
    // The broker's own settle (history row and dead letter in one transaction) fails, and not for a
    // lost connection: it hands the dead-letter result to pg-boss, which settles it without the history.
    await suite.pool.query(
      `ALTER TABLE public.arvo_event_history ADD CONSTRAINT refuse_left
         CHECK (queue <> 'com.alert.left' OR outcome <> 'dead-lettered') NOT VALID`,
    );
    t.after(() => suite.pool.query('ALTER TABLE public.arvo_event_history DROP CONSTRAINT refuse_left'));
    const event = clientEvent('com.alert.left');
    await broker.dispatch(event);
    await waitFor('a report', async () => calls[0], 60_000);
    await sleep(3000);
    assert.deepEqual(
      calls.map((record) => [record.kind, record.queue, record.eventId]),
      [['invalidEvent', 'com.alert.left', event.id]],
    );
    const [letter] = await broker.deadLetters.list({ sourceQueue: 'com.alert.left' });
    assert.equal((letter?.failure as JobFailureRecord | null)?.kind, 'invalidEvent');
    assert.ok(
      letter?.failure && !('unreported' in letter.failure),
      'the mark is gone from the stored record',
    );
  });
});
