import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { PostgresEventBroker } from '../../src/broker/index';
import { clientEvent, handler, memoryLogger, waitFor } from '../broker/support';
import { createTestDatabase, type TestDatabase, testPool } from '../support/database';
import { cli, root } from './run-cli';

describe('arvo-postgres CLI: the first hour of an operator (subprocess)', { timeout: 180_000 }, () => {
  let db: TestDatabase;
  let bare: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    [db, bare] = await Promise.all([createTestDatabase('cli_usability'), createTestDatabase('cli_bare')]);
    pool = testPool(db.url, 2);
  });

  after(async () => {
    await pool?.end();
    await db?.drop();
    await bare?.drop();
  });

  it('--version prints the package version', async () => {
    const { version } = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8'));
    for (const flag of ['--version', '-v']) {
      const result = await cli([flag]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${version}\n`);
    }
  });

  it('suggests the command meant by a typo', async () => {
    for (const [typo, meant] of [
      ['stat', 'stats'],
      ['dql', 'dlq'],
      ['doctr', 'doctor'],
      ['migrat', 'migrate'],
    ]) {
      const result = await cli([typo!]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, new RegExp(`unknown command "${typo}" \\(did you mean "${meant}"\\?\\)`));
    }
    const far = await cli(['xyzzy']);
    assert.doesNotMatch(far.stderr, /did you mean/);
  });

  it('stats and dlq on a database without pg-boss, or with a wrong --pgboss-schema, say what is missing', async () => {
    for (const args of [['stats'], ['dlq', 'list']]) {
      const result = await cli([...args, '--url', bare.url]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /no pg-boss schema "pgboss" in this database/);
      // (`arvo-\S+`: the test server's password is "postgres", masked wherever it appears.)
      assert.match(result.stderr, /start a broker on it once, or run `arvo-\S+ migrate`/);
      assert.doesNotMatch(result.stderr, /does not exist/);
    }
    assert.equal((await cli(['migrate', '--url', db.url])).code, 0);
    for (const args of [['stats'], ['dlq', 'purge', '--older-than', '1w']]) {
      const result = await cli([...args, '--url', db.url, '--pgboss-schema', 'pg_boss']);
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /no pg-boss schema "pg_boss" in this database\. pg-boss is installed in "pgboss": pass --pgboss-schema pgboss/,
      );
    }
  });

  it('stats --queue with an unknown queue says so, with the closest name', async () => {
    const broker = new PostgresEventBroker({ connectionString: db.url, logger: memoryLogger() });
    await broker.register(handler('com.usability.orders', async () => []));
    await broker.start();
    await broker.stop();
    const result = await cli(['stats', '--queue', 'com.usability.order', '--url', db.url]);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(
      result.stderr,
      /no queue "com\.usability\.order" in pg-boss schema "pgboss" \(did you mean "com\.usability\.orders"\?\)/,
    );
    const known = await cli(['stats', '--queue', 'com.usability.orders', '--url', db.url]);
    assert.equal(known.code, 0, known.stderr);
    assert.match(known.stdout, /^com\.usability\.orders +0 /m);
  });

  it('dlq list shows the failure kind; --dry-run replays and purges nothing but says what it would do', async () => {
    const broker = new PostgresEventBroker({
      connectionString: db.url,
      logger: memoryLogger(),
      defaults: { worker: { retryLimit: 0 } },
    });
    await broker.register(
      handler('com.usability.fail', async () => {
        throw new Error('carrier down');
      }),
    );
    await broker.start();
    try {
      await broker.dispatch(clientEvent('com.usability.fail'));
      await broker.dispatch(clientEvent('com.usability.fail'));
      await waitFor('two dead letters', async () => (await broker.deadLetters.list()).length === 2, 30_000);
    } finally {
      await broker.stop();
    }
    const env = { DATABASE_URL: db.url };
    const list = await cli(['dlq', 'list'], env);
    assert.match(list.stdout, /^ID +SOURCE QUEUE +ATTEMPTS +FIRST FAILURE +LAST FAILURE +KIND +ERROR$/m);
    assert.equal(
      (list.stdout.match(/ com\.usability\.fail +1 +.* infrastructure +Error: carrier down$/gm) ?? []).length,
      2,
    );

    const replay = await cli(['dlq', 'replay', '--all', '--dry-run'], env);
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /^dry run, would have replayed 2 dead letters\n/);
    const purge = await cli(['dlq', 'purge', '--older-than', '0s', '--dry-run', '--json'], env);
    assert.equal(purge.code, 0, purge.stderr);
    const purged = JSON.parse(purge.stdout);
    assert.equal(purged.dryRun, true);
    assert.equal(purged.purged.length, 2);
    const countOf = async (sql: string) => Number((await pool.query(sql)).rows[0].count);
    assert.equal(await countOf(`SELECT count(*) FROM pgboss.job WHERE name = 'arvo.dead-letter'`), 2);
    assert.equal(
      await countOf(
        `SELECT count(*) FROM pgboss.job WHERE name = 'com.usability.fail' AND state = 'created'`,
      ),
      0,
    );

    // Without --dry-run the same commands do it.
    const real = await cli(['dlq', 'purge', '--older-than', '0s'], env);
    assert.equal(real.stdout, 'purged 2 dead letters\n');
    assert.equal(
      (await cli(['dlq', 'replay', 'x', '--dry-run', '--limit', '1', '--older-than', '1w'], env)).code,
      2,
    );
  });

  it('durations accept weeks', async () => {
    const ok = await cli(['dlq', 'purge', '--older-than', '2w'], { DATABASE_URL: db.url });
    assert.equal(ok.code, 0, ok.stderr);
    const bad = await cli(['dlq', 'purge', '--older-than', '2y'], { DATABASE_URL: db.url });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /7d or 2w/);
  });

  it('stats --watch on a terminal redraws in place', async () => {
    // `script` gives the CLI a pseudo-terminal; Ctrl-C typed into it interrupts the watch. `exec`
    // makes the CLI the shell itself: dash (CI's /bin/sh) would otherwise exit 130 on the Ctrl-C.
    const command = `exec ${process.execPath} --import tsx src/cli/main.ts stats --watch 0.3`;
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: db.url },
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await waitFor('three frames', () => (output.match(/QUEUE /g) ?? []).length >= 3, 30_000);
    child.stdin.write('\x03');
    assert.equal(await exited, 0);
    const frames = output.split('\x1b[H\x1b[2J').slice(1);
    assert.ok(frames.length >= 3, JSON.stringify(output));
    for (const frame of frames) assert.match(frame, /^\d{4}-\d\d-\d\dT[\d:.]+Z\r?\nQUEUE /);
  });
});
