/**
 * `@arvo-tools/postgres`'s memory options (`{ version: 1, config, migrate, tables }`): each key reaches
 * the option it stands for, one deprecation warning names the replacements, errors name the key as
 * written, and the misspelled `releasePostgressMachineMemory` closes a memory.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArvoOrchestrationSubject } from 'arvo-core';
import type pg from 'pg';
import {
  type ArvoToolsMachineMemoryOptions,
  connectPostgresMachineMemory,
  MachineMemoryTableStructureError,
  type PostgresMachineMemory,
  releasePostgressMachineMemory,
} from '../../src/memory/index';
import { ArvoPostgresError, InvalidOptionError } from '../../src/shared/errors';
import { useMemoryDatabase } from '../support/memory';
import { recordSpans } from '../support/telemetry';

const exporter = recordSpans();
const warnings: Error[] = [];
process.on('warning', (warning) => warnings.push(warning));

const suite = useMemoryDatabase('memory_arvo_tools_options');

/** Connects with the old shape: `config` over `{ connectionString }`, tables of their own. */
async function connectOld(
  options: Omit<Partial<ArvoToolsMachineMemoryOptions>, 'config'> & {
    config?: ArvoToolsMachineMemoryOptions['config'];
  } = {},
): Promise<PostgresMachineMemory> {
  const memory = await connectPostgresMachineMemory({
    version: 1,
    migrate: 'if_tables_dont_exist',
    ...options,
    config: { connectionString: suite.db.url, max: 3, ...options.config },
  });
  return suite.track(memory);
}

function newSubject(): string {
  return ArvoOrchestrationSubject.new({
    orchestator: 'arvo.orc.legacy',
    version: '1.0.0',
    initiator: 'com.test.client',
  });
}

describe('@arvo-tools/postgres memory options', () => {
  it('warns once per process, naming the new options', async () => {
    await connectOld();
    await connectOld();
    const deprecations = warnings.filter((w) => w.name === 'DeprecationWarning');
    assert.equal(deprecations.length, 1);
    const [warning] = deprecations as Array<Error & { code?: string }>;
    assert.equal(warning!.code, 'ARVO_POSTGRES_ARVO_TOOLS_OPTIONS');
    for (const replacement of [
      'config.lockConfig.{maxRetries, initialDelayMs, backoffExponent, ttlMs} -> lock.{maxRetries, initialDelayMs, backoffExponent, ttlMs}',
      'config.enableCleanup -> cleanup.onCompletion',
      'config.enableOtel -> enableOtel',
      'config.queryTimeoutMillis -> statementTimeoutMillis',
      "'if_tables_dont_exist' -> 'create_if_not_exists'",
      "'dangerousely_force_migration' -> 'drop_and_recreate'",
      'docs/migrating-from-arvo-tools.md',
    ]) {
      assert.ok(warning!.message.includes(replacement), `${replacement} in: ${warning!.message}`);
    }
  });

  it('maps the connection settings: connectionString or host/port/user/password/database, pool sizes and timeouts', async () => {
    const url = new URL(suite.db.url);
    const memory = await connectOld({
      config: {
        connectionString: undefined,
        host: url.hostname,
        port: Number(url.port),
        user: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
        database: url.pathname.slice(1),
        max: 2,
        idleTimeoutMillis: 4321,
        connectionTimeoutMillis: 5432,
        statementTimeoutMillis: 6543,
      },
    });
    const { options } = memory.pool as pg.Pool & { options: Record<string, unknown> };
    assert.equal(options.max, 2);
    assert.equal(options.idleTimeoutMillis, 4321);
    assert.equal(options.connectionTimeoutMillis, 5432);
    const { rows } = await memory.pool.query('SHOW statement_timeout');
    assert.equal(rows[0].statement_timeout, '6543ms');
    assert.equal((await memory.pool.query('SELECT current_database() AS db')).rows[0].db, suite.db.name);

    // queryTimeoutMillis (client side there) becomes the server's statement_timeout; the tighter
    // of the two wins, and 0 (no timeout) never wins over a bound.
    for (const [config, expected] of [
      [{ queryTimeoutMillis: 7000 }, '7s'],
      [{ queryTimeoutMillis: 7000, statementTimeoutMillis: 8000 }, '7s'],
      [{ queryTimeoutMillis: 9000, statementTimeoutMillis: 8000 }, '8s'],
      [{ queryTimeoutMillis: 0, statementTimeoutMillis: 8000 }, '8s'],
      [{ queryTimeoutMillis: 7000, statementTimeoutMillis: 0 }, '7s'],
    ] as const) {
      const timed = await connectOld({ config });
      const shown = (await timed.pool.query('SHOW statement_timeout')).rows[0].statement_timeout;
      assert.equal(shown, expected, JSON.stringify(config));
    }
  });

  it('maps lockConfig to lock: ttlMs, maxRetries, initialDelayMs and backoffExponent', async () => {
    const memory = await connectOld({
      config: { lockConfig: { ttlMs: 45_000, maxRetries: 2, initialDelayMs: 200, backoffExponent: 3 } },
    });
    const subject = newSubject();
    assert.equal(await memory.lock(subject), true);
    const { rows } = await suite.admin.query(
      `SELECT extract(epoch FROM expires_at - acquired_at) * 1000 AS ttl FROM public.arvo_workflow_lock WHERE key = $1`,
      [subject],
    );
    assert.equal(Number(rows[0].ttl), 45_000);

    // Held by the first memory: 1 + maxRetries attempts, waiting 200 ms, then 200 × 3 ms.
    const contender = await connectOld({
      config: { lockConfig: { maxRetries: 2, initialDelayMs: 200, backoffExponent: 3 } },
    });
    let attempts = 0;
    const query = contender.pool.query.bind(contender.pool) as (...args: unknown[]) => unknown;
    (contender.pool as { query: unknown }).query = (...args: unknown[]) => {
      if (String((args[0] as { name?: string }).name).includes('lock_read')) attempts++;
      return query(...args);
    };
    // Waits are jittered below their ceiling (src/shared/backoff.ts): pinned at the ceiling here.
    const random = Math.random;
    Math.random = () => 1 - 1e-9;
    const started = Date.now();
    try {
      assert.equal(await contender.lock(subject), false);
    } finally {
      Math.random = random;
    }
    const elapsed = Date.now() - started;
    assert.equal(attempts, 3);
    assert.ok(elapsed >= 790, `waited ${elapsed} ms, expected 200 + 600`);
    await memory.unlock(subject);
  });

  it('maps enableCleanup to cleanup.onCompletion (the cleanup hook deletes only then)', async () => {
    const keeping = await connectOld();
    const cleaning = await connectOld({ config: { enableCleanup: true } });
    const subject = newSubject();
    await keeping.write(subject, { subject, parentSubject: null, status: 'done' }, null);
    await keeping.cleanup(subject);
    assert.notEqual(await keeping.read(subject), null, 'default: kept');
    await cleaning.cleanup(subject);
    assert.equal(await keeping.read(subject), null, 'enableCleanup: deleted');
  });

  it('maps enableOtel', async () => {
    const traced = await connectOld({ config: { enableOtel: true } });
    const quiet = await connectOld({ config: { enableOtel: false } });
    exporter.reset();
    await quiet.read(newSubject());
    assert.equal(exporter.getFinishedSpans().length, 0);
    await traced.read(newSubject());
    assert.deepEqual(
      exporter.getFinishedSpans().map((span) => span.name),
      ['arvo-postgres.memory.read'],
    );
  });

  it("maps migrate: 'noop' by default, 'if_tables_dont_exist', 'dangerousely_force_migration'", async () => {
    const tables = { state: 'legacy_state', lock: 'legacy_lock', hierarchy: 'legacy_hierarchy' };
    // Default noop, as in @arvo-tools/postgres: missing tables are reported, not created.
    await assert.rejects(
      connectPostgresMachineMemory({ version: 1, config: { connectionString: suite.db.url }, tables }),
      (error: unknown) =>
        error instanceof MachineMemoryTableStructureError &&
        /legacy_state does not exist/.test(error.message),
    );
    const created = await connectOld({ tables, migrate: 'if_tables_dont_exist' });
    assert.deepEqual(
      { ...created.tables },
      { state: 'legacy_state', lock: 'legacy_lock', history: 'arvo_event_history' },
    );
    const subject = newSubject();
    await created.write(subject, { subject }, null);
    await connectOld({ tables, migrate: 'noop' });
    assert.deepEqual(await created.read(subject), { subject }, 'noop keeps the data');
    await connectOld({ tables, migrate: 'dangerousely_force_migration' });
    assert.equal(await created.read(subject), null, 'force migration recreated the tables');
    const { rows } = await suite.admin.query(`SELECT to_regclass('public.legacy_hierarchy') AS t`);
    assert.equal(rows[0].t, null, 'no hierarchy table: the state table holds the hierarchy');
  });

  it('refuses bad values and unknown keys, naming the option as written', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ version: 2, config: { connectionString: suite.db.url } }, 'version'],
      [{ version: 1 }, 'config'],
      [{ version: 1, config: { connectionString: suite.db.url, poolSize: 3 } }, 'config.poolSize'],
      [
        { version: 1, config: { connectionString: suite.db.url, lockConfig: { retries: 1 } } },
        'config.lockConfig.retries',
      ],
      [
        { version: 1, config: { connectionString: suite.db.url }, migrate: 'create_if_not_exists' },
        'migrate',
      ],
      [
        { version: 1, config: { connectionString: suite.db.url }, connectionString: suite.db.url },
        'connectionString',
      ],
      [
        { version: 1, config: { connectionString: suite.db.url, lockConfig: { ttlMs: -5 } } },
        'config.lockConfig.ttlMs',
      ],
      [
        { version: 1, config: { connectionString: suite.db.url, lockConfig: { maxRetries: 1.5 } } },
        'config.lockConfig.maxRetries',
      ],
      [
        { version: 1, config: { connectionString: suite.db.url, enableCleanup: 'yes' } },
        'config.enableCleanup',
      ],
      [
        { version: 1, config: { connectionString: suite.db.url, queryTimeoutMillis: -1 } },
        'config.queryTimeoutMillis',
      ],
      [{ version: 1, config: { connectionString: suite.db.url, max: 0 } }, 'config.max'],
      [{ version: 1, config: { connectionString: suite.db.url }, tables: { state: 'a b' } }, 'tables.state'],
    ];
    for (const [options, option] of cases) {
      await assert.rejects(
        connectPostgresMachineMemory(options as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
  });

  it('exports the misspelled releasePostgressMachineMemory, which closes the memory', async () => {
    const memory = await connectPostgresMachineMemory({
      version: 1,
      config: { connectionString: suite.db.url },
      migrate: 'if_tables_dont_exist',
    });
    await releasePostgressMachineMemory(memory);
    await assert.rejects(
      memory.read(newSubject()),
      (error: unknown) => error instanceof ArvoPostgresError && error.code === 'MEMORY_CLOSED',
    );
  });
});
