import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ArvoEvent } from 'arvo-core';
import {
  InvalidBatchEventError,
  InvalidEventError,
  MAX_DISPATCH_BATCH,
  UnroutableEventError,
} from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { clientEvent, handler, jobsIn, replyTo, useTestDatabase, waitFor } from './support';

/** What one test's recording handlers saw: when each event reached them (by id and by label), in order. */
function recorder() {
  const handledAt = new Map<string, number>();
  const handledOrder: string[] = [];
  const handledByLabel = new Map<string, number>();
  const record = async (event: ArvoEvent): Promise<ArvoEvent[]> => {
    handledAt.set(event.id, Date.now());
    handledOrder.push(String(event.data.label ?? ''));
    handledByLabel.set(String(event.data.label ?? ''), Date.now());
    return [];
  };
  return {
    handledAt,
    handledOrder,
    handledByLabel,
    record,
    sink: (source: string) => handler(source, record),
  };
}

/** Delayed dispatch, priorities and batches, with the default polling settings. */
describe('PostgresEventBroker: delayed dispatch, priorities, dispatchMany', () => {
  const suite = useTestDatabase('broker_delivery');

  it('delivers an event dispatched with startAfter (seconds or a Date) no earlier than it, and within 5 s of it', async (t) => {
    const { handledAt, sink } = recorder();
    const broker = await suite.startBroker(t, {}, (b) => b.register(sink('com.test.sink')));
    const inSeconds = clientEvent('com.test.sink', { label: 'seconds' });
    const atDate = clientEvent('com.test.sink', { label: 'date' });
    const sentAt = Date.now();
    await broker.dispatch(inSeconds, { startAfter: 2 });
    await broker.dispatch(atDate, { startAfter: new Date(sentAt + 3000) });
    await waitFor(
      'both delayed events',
      () => handledAt.has(inSeconds.id) && handledAt.has(atDate.id),
      30_000,
    );
    const seconds = handledAt.get(inSeconds.id)! - sentAt;
    const date = handledAt.get(atDate.id)! - sentAt;
    // 100 ms of slack for the two clocks (client and database) reading "now" a moment apart.
    assert.ok(seconds >= 1900 && seconds <= 7000, `delivered after ${seconds} ms, expected 2-7 s`);
    assert.ok(date >= 2900 && date <= 8000, `delivered after ${date} ms, expected 3-8 s`);
  });

  it("delivers a handler's output later when it carries the `startafter` extension", async (t) => {
    const { handledByLabel, sink } = recorder();
    // Emits a reminder 2 s later through the `startafter` extension.
    const reminder = handler('com.test.reminder', async (event) => [
      replyTo(event, 'evt.reminder.due', { label: 'reminder' }, 'com.test.sink', { startafter: 2 } as any),
    ]);
    const broker = await suite.startBroker(t, {}, async (b) => {
      await b.register(sink('com.test.sink'));
      await b.register(reminder);
    });
    const sentAt = Date.now();
    await broker.dispatch(clientEvent('com.test.reminder'));
    const deliveredAt = await waitFor('the reminder', () => handledByLabel.get('reminder'), 30_000);
    const elapsed = deliveredAt - sentAt;
    assert.ok(elapsed >= 1900 && elapsed <= 9000, `reminder after ${elapsed} ms, expected 2-9 s`);
  });

  it('dead-letters an output whose `startafter` extension is malformed, and refuses such an event at dispatch', async (t) => {
    const badReminder = handler('com.test.badreminder', async (event) => [
      replyTo(event, 'evt.reminder.due', {}, 'com.test.sink', { startafter: 'next tuesday' }),
    ]);
    const broker = await suite.startBroker(t, {}, async (b) => {
      await b.register(recorder().sink('com.test.sink'));
      await b.register(badReminder);
    });
    const event = clientEvent('com.test.badreminder');
    await broker.dispatch(event);
    const [deadLetter] = await waitFor('the dead letter', async () => {
      const found = await broker.listDeadLetters({ queue: 'arvo.dead-letter' });
      return found.filter((letter) => letter.sourceQueue === 'com.test.badreminder').length > 0 && found;
    });
    assert.match(JSON.stringify(deadLetter), /startafter/);
    const bad = clientEvent('com.test.sink', {}, { extensions: { priority: 'high' } });
    await assert.rejects(broker.dispatch(bad), InvalidEventError);
  });

  it('fetches jobs of higher priority first within a queue', async (t) => {
    const { handledOrder, record } = recorder();
    let releaseGate: (() => void) | undefined;
    // Registered before the broker: released first, so its stop finds no handler waiting.
    t.after(() => releaseGate?.());
    // One job at a time: a gate holds the first so that later ones queue up behind it.
    const rankedHandler = handler('com.test.ranked', async (event) => {
      if (event.data.label === 'gate') await new Promise<void>((resolve) => (releaseGate = resolve));
      return record(event);
    });
    const broker = await suite.startBroker(t, {}, (b) =>
      b.register(rankedHandler, { worker: { batchSize: 1, localConcurrency: 1 } }),
    );
    await broker.dispatch(clientEvent('com.test.ranked', { label: 'gate' }));
    await waitFor('the gate to hold the worker', () => releaseGate);
    for (const label of ['low-1', 'low-2']) {
      await broker.dispatch(clientEvent('com.test.ranked', { label }), { priority: -1 });
    }
    await broker.dispatch(clientEvent('com.test.ranked', { label: 'default' }));
    await broker.dispatch(clientEvent('com.test.ranked', { label: 'urgent' }), { priority: 10 });
    releaseGate!();
    await waitFor(
      'all ranked events',
      () => handledOrder.includes('low-2') && handledOrder.includes('low-1'),
    );
    const ranked = handledOrder.filter((label) =>
      ['gate', 'urgent', 'default', 'low-1', 'low-2'].includes(label),
    );
    assert.deepEqual(ranked, ['gate', 'urgent', 'default', 'low-1', 'low-2']);
  });

  it('refuses invalid dispatch options naming them', async (t) => {
    const broker = await suite.startBroker(t, {}, (b) => b.register(recorder().sink('com.test.sink')));
    const event = clientEvent('com.test.sink');
    for (const options of [
      { startAfter: -1 },
      { startAfter: new Date('not a date') },
      { startAfter: '2026-01-01' },
      { priority: 1.5 },
      { later: true },
    ]) {
      await assert.rejects(
        broker.dispatch(event, options as any),
        InvalidOptionError,
        JSON.stringify(options),
      );
    }
    assert.equal((await jobsIn(suite.pool, 'com.test.sink')).filter((job) => job.id === event.id).length, 0);
  });

  it('dispatchMany enqueues every event of a batch in one transaction, returns their ids in order, and is idempotent', async (t) => {
    const { handledAt, sink } = recorder();
    const broker = await suite.startBroker(t, {}, async (b) => {
      await b.register(sink('com.test.sink'));
      await b.register(sink('com.test.other'));
    });
    const events = [
      clientEvent('com.test.sink', { label: 'batch-1' }),
      clientEvent('com.test.other', { label: 'batch-2' }),
      clientEvent('com.test.sink', { label: 'batch-3' }),
    ];
    const ids = await broker.dispatchMany(events, { priority: 3 });
    assert.deepEqual(
      ids,
      events.map((event) => event.id),
    );
    assert.deepEqual(await broker.dispatchMany(events), ids);
    await waitFor('the batch', () => events.every((event) => handledAt.has(event.id)));
    const { rows } = await suite.pool.query(
      'SELECT id, name, priority FROM pgboss.job WHERE id = ANY($1::uuid[]) ORDER BY name, id',
      [ids],
    );
    assert.equal(rows.length, 3);
    assert.deepEqual(new Set(rows.map((row) => row.priority)), new Set([3]));
  });

  it('dispatchMany refuses the whole batch for one invalid or unroutable event, naming its index', async (t) => {
    const broker = await suite.startBroker(t, {}, (b) => b.register(recorder().sink('com.test.sink')));
    const good = clientEvent('com.test.sink', { label: 'never' });
    await assert.rejects(broker.dispatchMany([good, { id: 'not-an-event' } as any]), (error: unknown) => {
      assert.ok(error instanceof InvalidBatchEventError);
      assert.equal(error.index, 1);
      assert.match(error.message, /events\[1\]/);
      return true;
    });
    await assert.rejects(
      broker.dispatchMany([good, good, clientEvent('com.nobody.home')]),
      (error: unknown) => {
        assert.ok(error instanceof InvalidBatchEventError);
        assert.equal(error.index, 2);
        assert.ok(error.cause instanceof UnroutableEventError);
        return true;
      },
    );
    const { rows } = await suite.pool.query('SELECT 1 FROM pgboss.job WHERE id = $1', [good.id]);
    assert.equal(rows.length, 0, 'nothing of a refused batch is enqueued');
    await assert.rejects(broker.dispatchMany([]), InvalidOptionError);
    const tooMany = Array.from({ length: MAX_DISPATCH_BATCH + 1 }, () => good);
    await assert.rejects(broker.dispatchMany(tooMany), InvalidOptionError);
  });
});
