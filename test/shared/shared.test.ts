import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { memoryComponents } from '../../src/memory/schema';
import { ArvoPostgresError, InvalidOptionError, MigrationIndexError } from '../../src/shared/errors';
import { qualifiedName, validateIdentifier } from '../../src/shared/identifiers';
import { type Logger, writeLog } from '../../src/shared/logger';
import { applyMigrations, createIndexSql } from '../../src/shared/migrations';
import { integerOption, MAX_TIMER_MS, type NumericRange, numberOption } from '../../src/shared/options';
import { startPeriodic } from '../../src/shared/periodic';
import { openPool, resolveConnection } from '../../src/shared/pool';
import { describeError, isSecretKey, redactSecrets } from '../../src/shared/redact';
import { inTransaction, readDatabaseId } from '../../src/shared/transaction';
import { closeAll } from '../support/close';
import { createTestDatabase, type TestDatabase, testPool } from '../support/database';
import { waitFor } from '../support/wait';

describe('identifiers', () => {
  it('accepts plain identifiers and quotes them', () => {
    assert.equal(validateIdentifier('workflow_state', 'tables.state'), 'workflow_state');
    assert.equal(qualifiedName('App', 'state'), '"App".state');
  });

  for (const hostile of ['x"; DROP TABLE t; --', "a'b", 'a b', '1abc', '', 'x'.repeat(64), 'a-b', 'ä']) {
    it(`rejects ${JSON.stringify(hostile.slice(0, 20))} naming the option`, () => {
      assert.throws(
        () => validateIdentifier(hostile, 'tables.state'),
        (error: unknown) => error instanceof InvalidOptionError && error.option === 'tables.state',
      );
    });
  }
});

describe('redaction', () => {
  it('masks passwords in URLs, key/value pairs and authorization headers', () => {
    const text = redactSecrets(
      'connect postgres://app:s3cr3t-pw@db:5432/x failed; password=hunter22 Authorization: Bearer abc.def.ghi123',
    );
    assert.ok(!text.includes('s3cr3t-pw'), text);
    assert.ok(!text.includes('hunter22'), text);
    assert.ok(!text.includes('abc.def.ghi123'), text);
    assert.ok(text.includes('postgres://app:[REDACTED]@db:5432/x'), text);
  });

  it('leaves words alone that merely contain a configured password', () => {
    resolveConnection({ host: 'localhost', password: 'shop' });
    resolveConnection({ connectionString: 'postgres://postgres:postgres@localhost/postgres' });
    const text = 'workshop inventory for com.shop.orders on arvo-postgres';
    assert.equal(describeError(new Error(text)).message, text);
    const lines: unknown[][] = [];
    const logger: Logger = { info: (...args) => lines.push(args), error: (...args) => lines.push(args) };
    writeLog(logger, 'info', text, { nested: { detail: text }, password: 'other', fencing_token: '42' });
    assert.deepEqual(lines, [
      [text, { nested: { detail: text }, password: '[REDACTED]', fencing_token: '42' }],
    ]);
  });

  it('knows secret keys by their last word, not by a substring', () => {
    for (const key of [
      'password',
      'PGPASSWORD',
      'db_pass',
      'clientSecret',
      'api-key',
      'access_token',
      'PWD',
      'sslkey',
      'Authorization',
    ]) {
      assert.ok(isSecretKey(key), key);
    }
    for (const key of ['bypass', 'compass', 'fencing_token', 'secretName', 'passengers', 'keyword', 'host']) {
      assert.ok(!isSecretKey(key), key);
    }
  });
});

describe('connection options', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('shared');
  });
  after(() => closeAll(db));

  it('requires exactly one way to connect', () => {
    assert.throws(() => resolveConnection({}), /connectionString/);
    assert.throws(() => resolveConnection({ connectionString: db.url, host: 'x' }), /only one/);
    assert.throws(() => resolveConnection({ connectionString: 'mysql://x' }), /protocol/);
    assert.throws(
      () => resolveConnection({ connectionString: 'postgres://u:%E0%A4%A@h/db' }),
      (error: unknown) =>
        error instanceof InvalidOptionError &&
        error.option === 'connectionString' &&
        !error.message.includes('%E0'),
    );
    assert.throws(() => resolveConnection({ connectionString: db.url, max: 0 }), /`max`/);
  });

  it('refuses timeouts longer than Node timers and statement_timeout hold', () => {
    for (const option of ['idleTimeoutMillis', 'connectionTimeoutMillis', 'statementTimeoutMillis']) {
      assert.throws(
        () => resolveConnection({ connectionString: db.url, [option]: 3e9 }),
        (error: unknown) =>
          error instanceof InvalidOptionError &&
          error.option === option &&
          error.message.includes(String(MAX_TIMER_MS)),
        option,
      );
      assert.ok(resolveConnection({ connectionString: db.url, [option]: MAX_TIMER_MS }).config, option);
    }
  });

  it('never puts the password of a failed connection into the error', async () => {
    const url = new URL(db.url);
    url.password = 'Wr0ng-Passw0rd';
    url.port = '1';
    const managed = openPool(
      resolveConnection({ connectionString: url.toString(), connectionTimeoutMillis: 2000 }),
      {
        info() {},
        error() {},
      },
    );
    const error = await managed.pool.query('SELECT 1').catch((e: unknown) => e);
    await managed.pool.end();
    assert.ok(error instanceof Error);
    assert.ok(!JSON.stringify(describeError(error)).includes('Wr0ng-Passw0rd'));
  });

  it('identifies the database so broker and memory know when they share one', async () => {
    const a = new pg.Pool({ connectionString: db.url, max: 1 });
    const b = new pg.Pool({ connectionString: db.url, max: 1 });
    const other = new URL(db.url);
    other.pathname = '/postgres';
    const c = new pg.Pool({ connectionString: other.toString(), max: 1 });
    try {
      const [idA, idB, idC] = await Promise.all([readDatabaseId(a), readDatabaseId(b), readDatabaseId(c)]);
      assert.equal(idA, idB);
      assert.notEqual(idA, idC);
    } finally {
      await Promise.all([a.end(), b.end(), c.end()]);
    }
  });
});

describe('inTransaction', () => {
  let db: TestDatabase;
  let admin: pg.Pool;
  before(async () => {
    db = await createTestDatabase('shared_transaction');
    admin = testPool(db.url, 2);
  });
  after(() => closeAll(admin, db));

  // A checked-out client whose connection breaks between statements emits 'error'; pg's pool listens
  // only while the client is idle, so unheard it would end the process (and this test run with it).
  it('survives the connection breaking between statements: rejects, rolls nothing back into the pool', async () => {
    const pool = testPool(db.url, 1);
    try {
      await pool.query('CREATE TABLE marks (id int)');
      await assert.rejects(
        inTransaction(pool, async (client) => {
          await client.query('INSERT INTO marks VALUES (1)');
          const { rows } = await client.query('SELECT pg_backend_pid() AS pid');
          await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
          // The termination reaches the idle client as an 'error' event before the next statement.
          await new Promise((resolve) => setTimeout(resolve, 300));
          await client.query('INSERT INTO marks VALUES (2)');
        }),
      );
      // The broken connection was dropped: the pool's one connection works, and nothing was committed.
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM marks');
      assert.equal(rows[0].n, 0);
    } finally {
      await pool.end();
    }
  });
});

describe('migration indexes', () => {
  let db: TestDatabase;
  let admin: pg.Pool;
  before(async () => {
    db = await createTestDatabase('shared_indexes');
    admin = testPool(db.url, 2);
  });
  after(() => closeAll(admin, db));

  it('refuses a migration whose index name is taken by another table of the schema, applying nothing', async () => {
    // `wf`'s index on (status, updated_at) and `wf_status`'s on (updated_at) are both named
    // wf_status_updated_at_idx: CREATE INDEX IF NOT EXISTS would leave wf_status without its index.
    for (const { component, migrations } of memoryComponents('coll', {
      state: 'wf',
      lock: 'wf_lock',
      history: 'wf_history',
    })) {
      await applyMigrations(admin, { schema: 'coll', component, migrations });
    }
    const [state] = memoryComponents('coll', {
      state: 'wf_status',
      lock: 'wf_status_lock',
      history: 'wf_status_history',
    });
    await assert.rejects(
      applyMigrations(admin, { schema: 'coll', component: state!.component, migrations: state!.migrations }),
      (error: unknown) =>
        error instanceof MigrationIndexError &&
        error.code === 'MIGRATION_INDEX_CONFLICT' &&
        error.problems.length === 1 &&
        error.problems[0]!.includes(
          'index coll.wf_status_updated_at_idx should be on coll.wf_status (updated_at) but is on coll.wf (status, updated_at)',
        ),
    );
    const { rows } = await admin.query(
      `SELECT to_regclass('coll.wf_status') IS NULL AS no_table,
         NOT EXISTS (SELECT 1 FROM coll.arvo_postgres_migrations WHERE component = 'memory:wf_status') AS unrecorded`,
    );
    assert.deepEqual(rows[0], { no_table: true, unrecorded: true }, 'the failed migration applied nothing');
  });

  it('refuses a migration whose index name is taken by a relation that is not an index', async () => {
    await admin.query('CREATE SCHEMA taken; CREATE TABLE taken.t_a_idx (id int)');
    const index = { name: 't_a_idx', table: 't', columns: ['a'] };
    const migrations = [
      {
        version: 1,
        description: 'create t',
        statements: ['CREATE TABLE taken.t (a int)', createIndexSql('taken', index)],
        indexes: [index],
      },
    ];
    await assert.rejects(
      applyMigrations(admin, { schema: 'taken', component: 'test:t', migrations }),
      (error: unknown) =>
        error instanceof MigrationIndexError &&
        /index taken\.t_a_idx on taken\.t \(a\) does not exist/.test(error.message),
    );
  });

  it('quotes every identifier of an index', () => {
    assert.equal(
      createIndexSql('App', { name: 'State_x_idx', table: 'State', columns: ['a', 'Mixed Case'] }),
      'CREATE INDEX IF NOT EXISTS "State_x_idx" ON "App"."State" (a, "Mixed Case")',
    );
  });

  it('creates exactly the indexes the migrations list as data', async () => {
    // A mixed-case state table (quoted names) and a 60-character lock table (hashed index name).
    const tables = { state: 'Workflow_State', lock: `lock_${'x'.repeat(55)}`, history: 'Workflow_History' };
    const components = memoryComponents('Idx', tables);
    for (const { component, migrations } of components) {
      await applyMigrations(admin, { schema: 'Idx', component, migrations });
    }
    const { rows } = await admin.query(
      `SELECT t.relname::text AS table, i.relname::text AS name,
          array_agg(a.attname::text ORDER BY k.ord) AS columns
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
        WHERE n.nspname = $1 AND NOT x.indisprimary AND NOT x.indisunique AND x.indpred IS NULL
        GROUP BY t.relname, i.relname`,
      ['Idx'],
    );
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    const expected = components.flatMap(({ migrations }) => migrations.flatMap((m) => m.indexes));
    assert.equal(expected.length, 9);
    assert.deepEqual(rows.sort(byName), expected.map((index) => ({ ...index })).sort(byName));
    // Besides the nine, only the primary keys: state, lock, history and arvo_postgres_migrations.
    const { rows: all } = await admin.query(
      `SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = 'Idx'`,
    );
    assert.equal(all[0].n, 9 + 3 + 1);
  });
});

describe('numeric options', () => {
  it('integerOption refuses a fraction also when given a range that allows fractions', () => {
    const range: NumericRange = { min: 0, max: 10, fractional: true };
    assert.throws(
      () => integerOption(1.5, 'retries', range, 0),
      (error: unknown) =>
        error instanceof InvalidOptionError && error.option === 'retries' && /integer/.test(error.message),
    );
    assert.equal(integerOption(7, 'retries', range, 0), 7);
    assert.equal(numberOption(1.5, 'factor', range, 0), 1.5);
  });
});

describe('startPeriodic', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** `startPeriodic` over `body` (given the number of its run), counting the runs and keeping what it logs. */
  function counted(intervalMs: number, body: (run: number) => Promise<void>, failure = 'the task failed') {
    const seen = { runs: 0, warnings: [] as string[] };
    const logger: Logger = {
      debug() {},
      info() {},
      warn: (message: string) => seen.warnings.push(message),
      error() {},
    };
    const task = startPeriodic(intervalMs, () => body(++seen.runs), logger, failure);
    return { task, seen };
  }

  it('never overlaps a slow run, logs failures and stops', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let release: () => void = () => {};
    const { task, seen } = counted(
      10,
      async (run) => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          if (run === 1) await new Promise<void>((resolve) => (release = resolve));
          if (run === 2) throw new Error('sweep broke');
        } finally {
          inFlight -= 1;
        }
      },
      'the sweep failed',
    );
    try {
      await waitFor('the first run started', () => seen.runs >= 1, 20_000, 5);
      await sleep(100);
      assert.equal(seen.runs, 1, 'no run starts while the first one is still going');
      release();
      await waitFor('two more runs', () => seen.runs >= 3, 20_000, 5);
      assert.equal(maxInFlight, 1);
      assert.deepEqual(seen.warnings, ['the sweep failed']);
    } finally {
      await task.stop();
    }
    await sleep(30);
    const stoppedAt = seen.runs;
    await sleep(100);
    assert.equal(seen.runs, stoppedAt, 'no run after stop');
  });

  it('stop() resolves only once the run in progress has finished, and no run follows', async () => {
    let release: () => void = () => {};
    const { task, seen } = counted(10, () => new Promise<void>((resolve) => (release = resolve)));
    await waitFor('the first run started', () => seen.runs >= 1, 20_000, 5);
    let stopped = false;
    const stopping = task.stop().then(() => {
      stopped = true;
    });
    await sleep(100);
    assert.equal(stopped, false, 'stop() waits for the run in progress');
    release();
    await stopping;
    await sleep(100);
    assert.equal(seen.runs, 1, 'no run after stop');
  });

  it('logs a task that throws synchronously and keeps running it', async () => {
    const { task, seen } = counted(10, (run) => {
      if (run === 1) throw new Error('thrown before any promise');
      return Promise.resolve();
    });
    try {
      await waitFor('runs after the synchronous throw', () => seen.runs >= 3, 20_000, 5);
      assert.deepEqual(seen.warnings, ['the task failed']);
    } finally {
      await task.stop();
    }
  });

  it('refuses an interval Node timers cannot hold', () => {
    assert.throws(
      () => startPeriodic(3e9, async () => {}, { debug() {}, info() {}, warn() {}, error() {} }, 'unused'),
      (error: unknown) => error instanceof ArvoPostgresError && error.code === 'INVALID_INTERVAL',
    );
  });

  it('does nothing with an interval of 0', async () => {
    const { task, seen } = counted(0, async () => {});
    await sleep(50);
    await task.stop();
    assert.equal(seen.runs, 0);
  });
});
