import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PostgresEventBroker } from '../../src/broker/index';
import { clientEvent, handler, memoryLogger, useTestDatabase } from '../broker/support';
import { runCliInProcess } from '../support/cli';

describe('arvo-postgres schedules list', () => {
  const suite = useTestDatabase('cli_schedules');
  let broker: PostgresEventBroker;

  before(async () => {
    broker = new PostgresEventBroker({ connectionString: suite.db.url, logger: memoryLogger() });
    await broker.register(handler('com.cli.sched.target', async () => []));
    await broker.start();
  });

  after(() => broker.stop());

  it('lists every schedule by name with its cron, zone, next run and what it sends, never the event data', async () => {
    const empty = await runCliInProcess(['schedules', 'list', '--url', suite.db.url]);
    assert.deepEqual(empty, { code: 0, output: 'no schedules\n' });
    await broker.schedule(
      'b-report',
      '15 6 * * 1-5',
      {
        type: 'com.cli.report',
        source: 'com.cli.clock',
        to: 'com.cli.sched.target',
        data: { apiKey: 'k-9931' },
      },
      { tz: 'America/New_York' },
    );
    await broker.schedule('a-factory', '*/10 * * * *', async () => clientEvent('com.cli.sched.target'));

    const listed = await runCliInProcess(['schedules', 'list', '--url', suite.db.url]);
    assert.equal(listed.code, 0, listed.output);
    const lines = listed.output.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME\s+CRON\s+TZ\s+NEXT RUN\s+SENDS$/);
    assert.match(lines[1]!, /^a-factory\s+\*\/10 \* \* \* \*\s+UTC\s+\S+:[0-5]0:00\.000Z\s+factory/);
    assert.match(
      lines[2]!,
      /^b-report\s+15 6 \* \* 1-5\s+America\/New_York\s+\S+T1[01]:15:00\.000Z\s+com\.cli\.report to com\.cli\.sched\.target$/,
    );

    const asJson = await runCliInProcess(['schedules', 'list', '--json', '--url', suite.db.url]);
    const parsed = JSON.parse(asJson.output);
    assert.deepEqual(
      parsed.map((entry: Record<string, unknown>) => [entry.name, entry.factory, entry.event]),
      [
        ['a-factory', true, null],
        [
          'b-report',
          false,
          { type: 'com.cli.report', source: 'com.cli.clock', to: 'com.cli.sched.target', subject: null },
        ],
      ],
    );
    assert.deepEqual(
      parsed.map((entry: { nextRunAt: string }) => new Date(entry.nextRunAt).toISOString()),
      (await broker.getSchedules()).map((entry) => entry.nextRunAt?.toISOString()),
      'the CLI and getSchedules() agree',
    );
    assert.ok(!`${listed.output}${asJson.output}`.includes('k-9931'), 'no event data printed');
  });

  it('refuses a missing or unknown subcommand (exit 2) and names a missing pg-boss schema (exit 1)', async () => {
    for (const args of [['schedules'], ['schedules', 'show'], ['schedules', 'list', 'extra']]) {
      const run = await runCliInProcess([...args, '--url', suite.db.url]);
      assert.equal(run.code, 2, run.output);
      assert.match(run.output, /expected the subcommand list/);
    }
    const missing = await runCliInProcess([
      'schedules',
      'list',
      '--url',
      suite.db.url,
      '--pgboss-schema',
      'nope',
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.output, /no pg-boss schema "nope"/);
  });
});
