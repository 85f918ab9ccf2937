/**
 * One fetch per notification: an event reaching an idle queue is fetched by one of its fetch loops,
 * not by all `localConcurrency` of them; a burst still has every loop fetching.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { notifyChannelSql } from 'pg-boss/dist/plans.js';
import { quoteIdentifier } from '../../src/shared/identifiers';
import { clientEvent, handler, useTestDatabase, waitFor } from './support';

/** pg-boss's fetch (`fetchNextJob`) as PostgreSQL receives it: the queue's name is in its text. */
const FETCH = /^\s*WITH\s[\s\S]*?\bnext AS \(\s*SELECT j\.id[\s\S]*?WHERE j\.name = '(com\.wake\.[\w.]+)'/;

/**
 * A backstop poll far beyond each test's duration, so every fetch counted is one a NOTIFY or a
 * full batch caused. The other worker options keep their defaults (two fetch loops, batches of 10).
 */
const NO_POLL = { pollingIntervalSeconds: 600 };

describe('fetch loops woken by NOTIFY', () => {
  const suite = useTestDatabase('broker_fetch_wake');
  const fetches = { sent: new Map<string, number>(), inFlight: 0 };
  const query = pg.Client.prototype.query;

  before(() => {
    // Every client of the process, pg-boss's own pool (which fetches) included.
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const [config] = args;
      const text = typeof config === 'string' ? config : String((config as { text?: unknown })?.text);
      const queue = FETCH.exec(text)?.[1];
      const callback = args.at(-1);
      // pg's pool passes a callback: the fetch is answered when it is called.
      if (queue && typeof callback === 'function') {
        fetches.sent.set(queue, (fetches.sent.get(queue) ?? 0) + 1);
        fetches.inFlight += 1;
        args[args.length - 1] = (...results: unknown[]) => {
          fetches.inFlight -= 1;
          return callback(...results);
        };
      }
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query;
  });

  after(() => {
    pg.Client.prototype.query = query;
  });

  it('fetches once per event that reaches an idle queue', async (t) => {
    const queue = 'com.wake.idle';
    const handled: string[] = [];
    const broker = await suite.startBroker(t, {}, (broker) =>
      broker.register(
        handler(queue, async (event) => {
          handled.push(event.id);
          return [];
        }),
        { worker: NO_POLL },
      ),
    );
    const settled = async (count: number) => {
      const { rows } = await suite.pool.query(
        `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'`,
        [queue],
      );
      return rows[0].n === count && fetches.inFlight === 0;
    };
    await waitFor('the first fetches of both loops', () => (fetches.sent.get(queue) ?? 0) >= 2 && settled(0));

    const before = fetches.sent.get(queue) ?? 0;
    const events = 10;
    for (let i = 1; i <= events; i++) {
      await broker.dispatch(clientEvent(queue));
      await waitFor(`event ${i} handled and every fetch answered`, () => handled.length === i && settled(i));
    }
    const perEvent = ((fetches.sent.get(queue) ?? 0) - before) / events;
    // pg-boss alone wakes both loops on each NOTIFY: 2 fetches per event, one of them empty.
    assert.ok(perEvent <= 1.2, `fetches per event while idle: ${perEvent}`);
  });

  it('has every loop fetching when a burst fills their batches', async (t) => {
    const queue = 'com.wake.burst';
    let running = 0;
    let mostAtOnce = 0;
    let handled = 0;
    const broker = await suite.startBroker(t, {}, (broker) =>
      broker.register(
        handler(queue, async () => {
          running += 1;
          mostAtOnce = Math.max(mostAtOnce, running);
          // Long enough for the other loop's fetch to land while this batch runs, on a loaded machine.
          await new Promise((resolve) => setTimeout(resolve, 1000));
          running -= 1;
          handled += 1;
          return [];
        }),
        { worker: NO_POLL },
      ),
    );
    await waitFor(
      'the first fetches of both loops',
      () => (fetches.sent.get(queue) ?? 0) >= 2 && fetches.inFlight === 0,
    );

    // One insert, one NOTIFY: the loop it wakes finds a full batch, and the full batch wakes the other.
    const events = 60;
    const started = Date.now();
    await broker.dispatchMany(Array.from({ length: events }, () => clientEvent(queue)));
    await waitFor(`${events} events handled`, () => handled === events);
    assert.equal(mostAtOnce, 20, 'two loops ran a full batch of 10 at once');
    // Three rounds of two batches take 3 s; a loop left asleep would wait for its 600 s poll.
    assert.ok(Date.now() - started < 15_000, `drained in ${Date.now() - started} ms`);
  });

  it('has a busy loop fetch right after its batch when an event arrives meanwhile', async (t) => {
    const queue = 'com.wake.busy';
    const started: string[] = [];
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const broker = await suite.startBroker(t, {}, (broker) =>
      broker.register(
        handler(queue, async (event) => {
          started.push(event.id);
          if (started.length <= 2) await released;
          return [];
        }),
        { worker: NO_POLL },
      ),
    );
    const listener = new pg.Client({ connectionString: suite.db.url });
    await listener.connect();
    t.after(() => listener.end());
    const notified: string[] = [];
    listener.on('notification', ({ payload }) => notified.push(String(payload)));
    const { rows } = await listener.query(`SELECT ${notifyChannelSql('pgboss')} AS channel`);
    await listener.query(`LISTEN ${quoteIdentifier(rows[0].channel)}`);

    // Two events held by their handlers: each loop is busy with one.
    for (const count of [1, 2]) {
      await broker.dispatch(clientEvent(queue));
      await waitFor(`handler ${count} started`, () => started.length === count);
    }
    const last = clientEvent(queue);
    await broker.dispatch(last);
    await waitFor(
      'the NOTIFY of the third event',
      () => notified.filter((name) => name === queue).length === 3,
    );
    // pg-boss's listener hears it on its own connection: give it that moment before the loops go idle.
    await new Promise((resolve) => setTimeout(resolve, 300));
    release();
    // Asleep after their batches, the loops would fetch it at their 600 s poll.
    await waitFor('the third event handled after the batches', () => started.includes(last.id), 10_000);
  });
});
