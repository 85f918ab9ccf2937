import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ArvoEvent } from 'arvo-core';
import type pg from 'pg';
import { PgBoss } from 'pg-boss';
import { HistoryRecorder } from '../../src/broker/history';
import {
  BrokerNotStartedError,
  InternalQueueError,
  InvalidEventError,
  PostgresEventBroker,
  UnroutableEventError,
} from '../../src/broker/index';
import { resolveBrokerOptions } from '../../src/broker/options';
import { deadLetterExpiredJobs } from '../../src/broker/retention';
import { InvalidOptionError } from '../../src/shared/errors';
import { closeAll } from '../support/close';
import type { TestDatabase } from '../support/database';
import { clientEvent, handler, jobsIn, memoryLogger, openTestDatabase, waitFor } from './support';

const TARGET = 'com.sched.target';

/** A broker on `url` whose handler of TARGET records what it receives in `received`. */
async function targetBroker(url: string, received: ArvoEvent[]): Promise<PostgresEventBroker> {
  const broker = new PostgresEventBroker({ connectionString: url, logger: memoryLogger() });
  await broker.register(
    handler(TARGET, async (event) => {
      received.push(event);
      return [];
    }),
  );
  await broker.start();
  return broker;
}

/**
 * Sends the tick of schedule row `(queue, key)` as pg-boss's cron pass does (its send-it worker sends
 * the row's data to the row's queue with the row's options), so a tick is tested without waiting a minute.
 */
async function sendTick(pool: pg.Pool, boss: PgBoss, queue: string, key: string): Promise<string> {
  const { rows } = await pool.query(
    'SELECT data, options FROM pgboss.schedule WHERE name = $1 AND key = $2',
    [queue, key],
  );
  assert.equal(rows.length, 1, `schedule row (${queue}, ${key})`);
  return (await boss.send(queue, rows[0].data, rows[0].options))!;
}

describe('PostgresEventBroker: schedules (no waiting for ticks)', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let broker: PostgresEventBroker;
  let boss: PgBoss;
  const received: ArvoEvent[] = [];

  before(async () => {
    ({ db, pool } = await openTestDatabase('broker_schedules'));
    broker = await targetBroker(db.url, received);
    boss = new PgBoss({ connectionString: db.url, schedule: false, supervise: false });
    boss.on('error', () => {});
    await boss.start();
  });

  after(async () => {
    await boss.stop({ graceful: false, close: true });
    await closeAll(broker, pool, db);
  });

  it('a template tick becomes one new event routed to its `to`; getSchedules lists it without its data', async () => {
    await broker.schedule(
      'nightly-report',
      '0 3 * * *',
      { type: 'com.sched.report', source: 'com.sched.clock', to: TARGET, data: { token: 'tick-secret-42' } },
      { tz: 'Europe/Paris' },
    );
    const [listed] = await broker.getSchedules();
    assert.equal(listed?.name, 'nightly-report');
    assert.deepEqual([listed?.cron, listed?.tz, listed?.factory], ['0 3 * * *', 'Europe/Paris', false]);
    assert.deepEqual(listed?.event, {
      type: 'com.sched.report',
      source: 'com.sched.clock',
      to: TARGET,
      subject: null,
    });
    // 03:00 in Paris is 01:00 or 02:00 UTC, within the next day.
    const next = listed!.nextRunAt!;
    assert.ok([1, 2].includes(next.getUTCHours()) && next.getUTCMinutes() === 0, next.toISOString());
    assert.ok(next.getTime() > Date.now() && next.getTime() - Date.now() <= 86_400_000);
    assert.ok(!JSON.stringify(listed).includes('tick-secret-42'), 'no event data in the listing');

    await sendTick(pool, boss, 'arvo.schedules', 'nightly-report');
    await sendTick(pool, boss, 'arvo.schedules', 'nightly-report');
    await waitFor('two ticks delivered', () => received.length === 2);
    const [first, second] = received;
    assert.deepEqual(first?.data, { token: 'tick-secret-42' });
    assert.equal(first?.type, 'com.sched.report');
    assert.notEqual(first?.id, second?.id, 'a new event per tick');
    assert.notEqual(first?.subject, second?.subject, 'a new subject per tick when the template has none');
    const history = await pool.query(
      `SELECT count(*)::int AS n FROM arvo_event_history WHERE queue = 'arvo.schedules' AND outcome = 'handled'`,
    );
    assert.equal(history.rows[0].n, 2, 'each tick is a hop in the history');

    received.length = 0;
  });

  it('a factory tick waits for a process that has the factory; unschedule removes the schedule everywhere', async () => {
    const calls: string[] = [];
    const factoryBroker = await targetBroker(db.url, received);
    await factoryBroker.schedule('hourly-factory', '0 * * * *', async ({ schedule }) => {
      calls.push(schedule);
      return clientEvent(TARGET, { n: calls.length });
    });
    const listed = (await broker.getSchedules()).find((schedule) => schedule.name === 'hourly-factory');
    assert.deepEqual([listed?.factory, listed?.event], [true, null], 'listed by every broker');
    await sendTick(pool, boss, 'arvo.schedules.hourly-factory', '');
    await waitFor('factory tick delivered', () => received.length === 1);
    assert.deepEqual([calls, received[0]?.data], [['hourly-factory'], { n: 1 }]);

    // The only process with the factory stops: the next tick waits in its queue, not consumed by
    // `broker` (which has no factory), until a process with the factory starts.
    await factoryBroker.stop();
    const waiting = await sendTick(pool, boss, 'arvo.schedules.hourly-factory', '');
    await sleep(3000);
    const [job] = (await jobsIn(pool, 'arvo.schedules.hourly-factory')).filter((row) => row.id === waiting);
    assert.equal(job?.state, 'created', 'waits for a process with the factory');
    assert.equal(received.length, 1);
    // Not lost either when none comes back: pg-boss's retention never deletes a waiting tick (its
    // keep_until is out of reach); the expiry sweep dead-letters it after the queue's retentionSeconds.
    const stale = await sendTick(pool, boss, 'arvo.schedules.hourly-factory', '');
    const kept = await pool.query(
      `UPDATE pgboss.job SET created_on = now() - interval '2 days', start_after = now() - interval '2 days'
        WHERE id = $1 RETURNING keep_until > now() + interval '10 years' AS out_of_reach`,
      [stale],
    );
    assert.equal(kept.rows[0].out_of_reach, true);
    const history = await HistoryRecorder.start(pool, resolveBrokerOptions({ connectionString: db.url }));
    assert.equal(await deadLetterExpiredJobs(pool, 'pgboss', history), 1);
    const [letter] = await broker.listDeadLetters();
    assert.deepEqual(
      [letter?.sourceQueue, letter?.failure?.kind, letter?.failure?.eventType],
      ['arvo.schedules.hourly-factory', 'expired', 'arvo.schedule.tick'],
    );
    const restarted = await targetBroker(db.url, received);
    await restarted.schedule('hourly-factory', '0 * * * *', async () => clientEvent(TARGET, { n: 2 }));
    await waitFor('waiting tick delivered once the factory is back', () => received.length === 2);
    assert.deepEqual(received[1]?.data, { n: 2 });

    // Replaced by a template: one schedule, in the shared queue.
    await restarted.schedule('hourly-factory', '30 * * * *', {
      type: 'com.sched.hourly',
      source: 'com.sched.clock',
      to: TARGET,
    });
    const rows = await pool.query(
      `SELECT name, key FROM pgboss.schedule WHERE key = 'hourly-factory' OR name LIKE 'arvo.schedules.%'`,
    );
    assert.deepEqual(rows.rows, [{ name: 'arvo.schedules', key: 'hourly-factory' }]);

    await broker.unschedule('hourly-factory');
    await broker.unschedule('nightly-report');
    await broker.unschedule('never-scheduled');
    assert.deepEqual(await restarted.getSchedules(), []);
    await restarted.stop();
    received.length = 0;
  });

  it('refuses bad input at schedule() with typed errors, and writes nothing', async () => {
    const template = { type: 'com.sched.x', source: 'com.sched.clock', to: TARGET };
    const refused: Array<[unknown[], (error: unknown) => boolean]> = [
      [['bad name!', '* * * * *', template], (e) => e instanceof InvalidOptionError && e.option === 'name'],
      [['', '* * * * *', template], (e) => e instanceof InvalidOptionError && e.option === 'name'],
      [['ok', 'not a cron', template], (e) => e instanceof InvalidOptionError && e.option === 'cron'],
      [['ok', '61 * * * *', template], (e) => e instanceof InvalidOptionError && e.option === 'cron'],
      [['ok', '', template], (e) => e instanceof InvalidOptionError && e.option === 'cron'],
      [
        ['ok', '* * * * *', template, { tz: 'Mars/Olympus' }],
        (e) => e instanceof InvalidOptionError && e.option === 'options.tz',
      ],
      [
        ['ok', '* * * * *', template, { timezone: 'UTC' }],
        (e) => e instanceof InvalidOptionError && e.option === 'options.timezone',
      ],
      [
        ['ok', '* * * * *', { ...template, id: 'x' }],
        (e) => e instanceof InvalidOptionError && e.option === 'event.id',
      ],
      [['ok', '* * * * *', 'com.sched.x'], (e) => e instanceof InvalidOptionError && e.option === 'event'],
      [['ok', '* * * * *', { ...template, type: 'NoDots' }], (e) => e instanceof InvalidEventError],
      [
        ['ok', '* * * * *', { ...template, to: 'com.sched.nobody' }],
        (e) => e instanceof UnroutableEventError,
      ],
      // Without `to`, createArvoEvent addresses the event to its type: no queue com.sched.x.
      [['ok', '* * * * *', { ...template, to: undefined }], (e) => e instanceof UnroutableEventError],
      [['ok', '* * * * *', { ...template, to: 'arvo.dead-letter' }], (e) => e instanceof InternalQueueError],
      [['ok', '* * * * *', { ...template, to: 'arvo.schedules' }], (e) => e instanceof InternalQueueError],
    ];
    for (const [args, check] of refused) {
      await assert.rejects(
        broker.schedule(...(args as Parameters<PostgresEventBroker['schedule']>)),
        check,
        JSON.stringify(args),
      );
    }
    assert.deepEqual(await broker.getSchedules(), []);
    await assert.rejects(
      new PostgresEventBroker({ connectionString: db.url }).schedule('x', '* * * * *', template),
      BrokerNotStartedError,
    );
  });
});

describe('PostgresEventBroker: schedules firing (waits for pg-boss cron ticks: 1-4 minutes)', {
  timeout: 360_000,
}, () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  const brokers: PostgresEventBroker[] = [];

  before(async () => {
    ({ db, pool } = await openTestDatabase('broker_schedules_firing'));
  });

  after(() => closeAll(...brokers, pool, db));

  it('fires once per tick across two brokers, for a schedule a stopped broker created; an unscheduled one never fires', async () => {
    const template = (type: string) => ({ type, source: 'com.sched.clock', to: TARGET });
    // Created by a broker that then stops: the schedule lives in the database, not in a process.
    const creator = await targetBroker(db.url, []);
    await creator.schedule('every-minute', '* * * * *', template('com.sched.minute'));
    await creator.schedule('removed', '* * * * *', template('com.sched.removed'));
    await creator.unschedule('removed');
    await creator.stop();

    const received: ArvoEvent[] = [];
    const [first, second] = await Promise.all([
      targetBroker(db.url, received),
      targetBroker(db.url, received),
    ]);
    brokers.push(first!, second!);
    await first!.schedule('factory-minute', '* * * * *', async () =>
      clientEvent(TARGET, {}, { type: 'com.sched.factory' }),
    );
    const count = (type: string) => received.filter((event) => event.type === type).length;
    await waitFor(
      'two ticks of each schedule',
      () => count('com.sched.minute') >= 2 && count('com.sched.factory') >= 2,
      240_000,
      500,
    );
    // No new ticks from here; then every tick filed so far must have become exactly one event.
    await first!.unschedule('every-minute');
    await first!.unschedule('factory-minute');
    const filed = async (queue: string, key: string) =>
      (
        await pool.query(
          `SELECT data->>'slot' AS slot, state FROM pgboss.job
            WHERE name = '__pgboss__send-it' AND data->>'name' = $1 AND data->>'key' = $2`,
          [queue, key],
        )
      ).rows as Array<{ slot: string; state: string }>;
    const settled = async () => {
      const ticks = [
        ...(await filed('arvo.schedules', 'every-minute')),
        ...(await filed('arvo.schedules.factory-minute', '')),
      ];
      const open = await pool.query(
        `SELECT count(*)::int AS n FROM pgboss.job
          WHERE name IN ('arvo.schedules', 'arvo.schedules.factory-minute', $1) AND state <> 'completed'`,
        [TARGET],
      );
      return ticks.every((tick) => tick.state === 'completed') && open.rows[0].n === 0;
    };
    await waitFor('every filed tick handled', settled, 60_000, 500);
    const kept = await pool.query(
      `SELECT bool_and(keep_until > now() + interval '10 years') AS out_of_reach, count(*)::int AS n
         FROM pgboss.job WHERE name IN ('arvo.schedules', 'arvo.schedules.factory-minute')`,
    );
    assert.deepEqual(kept.rows[0], {
      out_of_reach: true,
      n: count('com.sched.minute') + count('com.sched.factory'),
    });
    await sleep(1000);
    for (const [queue, key, type] of [
      ['arvo.schedules', 'every-minute', 'com.sched.minute'],
      ['arvo.schedules.factory-minute', '', 'com.sched.factory'],
    ] as const) {
      const slots = (await filed(queue, key)).map((tick) => tick.slot);
      assert.equal(new Set(slots).size, slots.length, `${key || queue}: one tick per minute slot`);
      assert.equal(count(type), slots.length, `${key || queue}: one event per tick (${slots.join(', ')})`);
    }
    assert.equal(count('com.sched.removed'), 0);
    assert.deepEqual(await filed('arvo.schedules', 'removed'), []);
  });
});
