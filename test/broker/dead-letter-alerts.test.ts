import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JobFailureRecord } from '../../src/broker/dead-letters';
import { abandonedQueue, clientEvent, handler, memoryLogger, useTestDatabase, waitFor } from './support';

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
});
