import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  createPostgresLock,
  type LockHandle,
  LockUnavailableError,
  PostgresLock,
} from '../../src/lock/index';
import { ArvoPostgresError, InvalidOptionError } from '../../src/shared/errors';
import { closeDuringSweep } from '../support/blocking';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { recordStatements } from '../support/statements';
import { waitFor } from '../support/wait';

let db: TestDatabase;
const opened: PostgresLock[] = [];

async function openLock(options: Record<string, unknown> = {}): Promise<PostgresLock> {
  const lock = await createPostgresLock({ connectionString: db.url, sweepIntervalMs: 0, ...options });
  opened.push(lock);
  return lock;
}

before(async () => {
  db = await createTestDatabase('lock');
});
after(async () => {
  await Promise.all(opened.map((lock) => lock.close()));
  await db.drop();
});

describe('PostgresLock', () => {
  it('creates its table idempotently, also from several processes at once', async () => {
    const locks = await Promise.all([1, 2, 3].map(() => openLock({ schema: 'locks_a', table: 'my_locks' })));
    await locks[0]!.migrate();
    const { rows } = await locks[0]!.pool.query(
      `SELECT column_name, data_type, is_nullable FROM information_schema.columns
       WHERE table_schema = 'locks_a' AND table_name = 'my_locks' ORDER BY ordinal_position`,
    );
    assert.deepEqual(
      rows.map((r) => [r.column_name, r.data_type, r.is_nullable]),
      [
        ['key', 'text', 'NO'],
        ['owner', 'text', 'NO'],
        ['fencing_token', 'bigint', 'NO'],
        ['acquired_at', 'timestamp with time zone', 'NO'],
        ['expires_at', 'timestamp with time zone', 'NO'],
      ],
    );
    const index = await locks[0]!.pool.query(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = 'locks_a' AND tablename = 'my_locks' AND indexdef LIKE '%(expires_at)%'`,
    );
    assert.equal(index.rowCount, 1);
  });

  it('gives a lock to one owner at a time and only to a caller with its owner and token', async () => {
    const lock = await openLock();
    const key = `subject-${'x'.repeat(320)}`;
    const first = await lock.acquire(key, { ttlMs: 30_000 });
    assert.ok(first);
    assert.equal(first.key, key);
    assert.ok(first.expiresAt.getTime() > Date.now() + 20_000);
    assert.equal(await lock.acquire(key), null);
    assert.equal(await lock.release({ ...first, owner: 'someone-else' }), false);
    assert.equal(await lock.release({ ...first, fencingToken: first.fencingToken + 1n }), false);
    assert.equal(await lock.release(first), true);
    assert.equal(await lock.release(first), false, 'second release of the same handle');
    const second = await lock.acquire(key);
    assert.ok(second);
    assert.ok(second.fencingToken > first.fencingToken);
    assert.notEqual(second.owner, first.owner);
    await lock.release(second);
  });

  it('lets exactly one of 10 concurrent clients win', async () => {
    const clients = await Promise.all(Array.from({ length: 10 }, () => openLock({ max: 1 })));
    const key = 'contended';
    const results = await Promise.all(clients.map((client) => client.acquire(key, { ttlMs: 30_000 })));
    const winners = results.filter((r): r is LockHandle => r !== null);
    assert.equal(winners.length, 1);
    assert.equal((await clients[0]!.inspect(key))?.owner, winners[0]!.owner);
    await Promise.all(clients.map((client) => client.close()));
  });

  it('after a TTL takeover a stale holder can neither release nor renew the new lock', async () => {
    const a = await openLock();
    const b = await openLock();
    const key = 'takeover';
    const stale = await a.acquire(key, { ttlMs: 150 });
    assert.ok(stale);
    assert.equal(await b.acquire(key, { ttlMs: 30_000 }), null, 'live lock is not taken over');
    const fresh = await waitFor('the expired lock is taken over', () => b.acquire(key, { ttlMs: 30_000 }));
    assert.ok(fresh.fencingToken > stale.fencingToken);
    assert.equal(await a.release(stale), false);
    assert.equal(await a.renew(stale, 60_000), null);
    const live = await b.inspect(key);
    assert.equal(live?.owner, fresh.owner);
    assert.equal(live?.expiresAt.getTime(), fresh.expiresAt.getTime());
    assert.equal(await b.release(fresh), true);
  });

  it('renews a held lock and refuses to renew an expired one', async () => {
    const lock = await openLock();
    const handle = await lock.acquire('renew-me', { ttlMs: 10_000 });
    assert.ok(handle);
    const renewed = await lock.renew(handle, 60_000);
    assert.ok(renewed);
    assert.equal(renewed.fencingToken, handle.fencingToken);
    assert.ok(renewed.expiresAt.getTime() - handle.expiresAt.getTime() > 40_000);

    const short = await lock.acquire('expires', { ttlMs: 100 });
    assert.ok(short);
    await waitFor('the short lock expired', async () => (await lock.inspect('expires')) === null);
    assert.equal(await lock.renew(short, 60_000), null, 'an expired lock is lost even if nobody took it');
    await assert.rejects(lock.renew(handle, 0), InvalidOptionError);
  });

  it('withLock releases in finally and reports a held lock as LockUnavailableError', async () => {
    const lock = await openLock();
    let seen: LockHandle | undefined;
    await assert.rejects(
      lock.withLock('with', async (handle) => {
        seen = handle;
        assert.equal((await lock.inspect('with'))?.owner, handle.owner);
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.ok(seen);
    assert.equal(await lock.inspect('with'), null);

    const held = await lock.acquire('with');
    assert.ok(held);
    await assert.rejects(
      lock.withLock('with', async () => 'never', { maxAttempts: 2, initialDelayMs: 5 }),
      (error: unknown) =>
        error instanceof LockUnavailableError && error.key === 'with' && error.attempts === 2,
    );
    assert.equal(await lock.withLock('free', async () => 42), 42);
  });

  it('waits with backoff without holding a connection: a pool of 2 keeps serving', async () => {
    const holder = await openLock();
    const waiter = await openLock({ max: 2 });
    const held = await holder.acquire('busy', { ttlMs: 60_000 });
    assert.ok(held);
    const started = Date.now();
    let inside = 0;
    const waits = Array.from({ length: 6 }, (_, index) =>
      waiter.withLock(
        'busy',
        async () => {
          inside += 1;
          assert.equal(inside, 1, 'one holder at a time');
          await new Promise((resolve) => setTimeout(resolve, 5));
          inside -= 1;
          return index;
        },
        { maxAttempts: 1000, initialDelayMs: 10, backoffExponent: 1.5, maxDelayMs: 50 },
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    // With connections held while sleeping, these would wait behind six waiters on two connections.
    const probes = await Promise.race([
      Promise.all(Array.from({ length: 20 }, () => waiter.pool.query('SELECT 1 AS one'))),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error('pool starved by waiters')), 10_000),
      ),
    ]);
    assert.equal(probes.length, 20);
    assert.equal(await holder.release(held), true);
    assert.deepEqual((await Promise.all(waits)).sort(), [0, 1, 2, 3, 4, 5]);
    assert.ok(Date.now() - started < 30_000);
  });

  it('gives up after maxAttempts, one statement per attempt', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    const statements = recordStatements(pool);
    try {
      const lock = await openLock({ connectionString: undefined, pool });
      assert.ok(await lock.acquire('giveup', { ttlMs: 60_000 }));
      statements.reset();
      const result = await lock.acquireWithRetry('giveup', {
        maxAttempts: 4,
        initialDelayMs: 40,
        backoffExponent: 2,
        maxDelayMs: 1000,
      });
      assert.equal(result, null);
      // The waits between them are jittered (bounds: test/shared/backoff.test.ts).
      assert.equal(statements.count, 4);
    } finally {
      await pool.end();
    }
  });

  it('sweeps expired rows only, and fencing tokens keep growing across deleted rows', async () => {
    const lock = await openLock({ table: 'sweep_locks' });
    const live = await lock.acquire('live', { ttlMs: 60_000 });
    const gone = await lock.acquire('gone', { ttlMs: 50 });
    assert.ok(live && gone);
    await waitFor('the short lock expired', async () => (await lock.inspect('gone')) === null);
    assert.equal(await lock.sweepExpired(), 1);
    const { rows } = await lock.pool.query('SELECT key FROM public.sweep_locks ORDER BY key');
    assert.deepEqual(
      rows.map((r) => r.key),
      ['live'],
    );
    const again = await lock.acquire('gone');
    assert.ok(again);
    assert.ok(again.fencingToken > gone.fencingToken && again.fencingToken > live.fencingToken);
  });

  it('runs the periodic sweep on its own', async () => {
    const lock = await openLock({ table: 'auto_sweep', sweepIntervalMs: 100 });
    assert.ok(await lock.acquire('short', { ttlMs: 50 }));
    await waitFor('the periodic sweep deleted the expired row', async () => {
      const { rowCount } = await lock.pool.query('SELECT 1 FROM public.auto_sweep');
      return rowCount === 0;
    });
  });

  it('close() waits for a sweep in progress, which stops after its current batch', async () => {
    const migrated = await openLock({ table: 'close_sweep' });
    await migrated.pool.query(
      `INSERT INTO public.close_sweep (key, owner, acquired_at, expires_at)
       SELECT 'k' || i, 'gone', now() - interval '2 hours', now() - interval '1 hour' FROM generate_series(1, 3000) i`,
    );
    await closeDuringSweep(db.url, {
      table: 'close_sweep',
      sweepFragment: 'SKIP LOCKED',
      open: (pool) => createPostgresLock({ pool, table: 'close_sweep', migrate: false, sweepIntervalMs: 50 }),
      remaining: 2000,
      batch: '1000 rows',
    });
  });

  it('rejects hostile schema and table names before running anything', async () => {
    for (const [option, value] of [
      ['table', 'x"; DROP TABLE public.arvo_lock; --'],
      ['schema', "public'; SELECT pg_sleep(10); --"],
      ['table', 'a'.repeat(64)],
    ] as const) {
      assert.throws(
        () => new PostgresLock({ connectionString: db.url, [option]: value }),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
      );
    }
    const quoted = await openLock({ schema: 'Mixed_Case', table: 'Locks' });
    assert.ok(await quoted.acquire('k'));
    const { rowCount } = await quoted.pool.query('SELECT 1 FROM "Mixed_Case"."Locks"');
    assert.equal(rowCount, 1);
  });

  it('keeps index names of 63-character tables within the limit and distinct', async () => {
    const a = await openLock({ table: `${'l'.repeat(62)}a` });
    const b = await openLock({ table: `${'l'.repeat(62)}b` });
    assert.ok(await a.acquire('k'));
    assert.ok(await b.acquire('k'));
    const { rows } = await a.pool.query(
      `SELECT indexname FROM pg_indexes WHERE tablename LIKE 'llll%' AND indexdef LIKE '%(expires_at)%'`,
    );
    assert.equal(new Set(rows.map((r) => r.indexname)).size, 2);
    assert.ok(rows.every((r) => r.indexname.length <= 63));
  });

  it('validates options naming the offending option', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ defaults: { ttlMs: 0 } }, 'defaults.ttlMs'],
      [{ defaults: { maxAttempts: 1.5 } }, 'defaults.maxAttempts'],
      [{ defaults: { backoffExponent: 0.5 } }, 'defaults.backoffExponent'],
      [{ defaults: { retries: 3 } }, 'defaults.retries'],
      [{ sweepIntervalMs: -1 }, 'sweepIntervalMs'],
      // Longer than a Node timer holds: it would fire every millisecond.
      [{ sweepIntervalMs: 3e9 }, 'sweepIntervalMs'],
      [{ migrate: 'yes' }, 'migrate'],
      [{ tabel: 'x' }, 'tabel'],
      // A logger without info()/error() would swallow every warning.
      [{ logger: {} }, 'logger'],
    ];
    for (const [options, option] of cases) {
      assert.throws(
        () => new PostgresLock({ connectionString: db.url, ...options }),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
  });

  it('rejects bad keys and handles with typed errors', async () => {
    const lock = await openLock();
    for (const key of ['', 'a\u0000b', 42]) {
      await assert.rejects(
        lock.acquire(key as string),
        (error: unknown) => error instanceof ArvoPostgresError && error.code === 'INVALID_LOCK_KEY',
        JSON.stringify(key),
      );
    }
    // Not a handle acquire() returned: a typed error, not a TypeError, and nothing released.
    const held = await lock.acquire('handle-check', { ttlMs: 10_000 });
    assert.ok(held);
    for (const handle of [undefined, null, { key: 'handle-check' }, { ...held, fencingToken: 1 }]) {
      await assert.rejects(
        lock.release(handle as never),
        (error: unknown) => error instanceof ArvoPostgresError && error.code === 'INVALID_LOCK_HANDLE',
      );
      await assert.rejects(
        lock.renew(handle as never),
        (error: unknown) => error instanceof ArvoPostgresError && error.code === 'INVALID_LOCK_HANDLE',
      );
    }
    assert.equal((await lock.inspect('handle-check'))?.owner, held.owner);
    // One attempt takes only a TTL: retry settings there would be silently ignored.
    await assert.rejects(
      lock.acquire('options-check', { maxAttempts: 3 } as never),
      (error: unknown) =>
        error instanceof InvalidOptionError && error.option === 'acquire.options.maxAttempts',
    );
    assert.equal(await lock.inspect('options-check'), null);
  });

  it('never puts the password into errors or log lines', async () => {
    const url = new URL(db.url);
    url.password = 'Sup3r-S3cret-Lock';
    const lines: string[] = [];
    const logger = {
      info: (...args: unknown[]) => lines.push(JSON.stringify(args)),
      error: (...args: unknown[]) => lines.push(JSON.stringify(args)),
    };
    const error = await createPostgresLock({
      connectionString: url.toString(),
      logger,
      connectionTimeoutMillis: 5_000,
    }).catch((e: unknown) => e);
    assert.ok(error instanceof Error);
    const text = `${error.message}\n${error.stack}\n${lines.join('\n')}`;
    assert.ok(!text.includes('Sup3r-S3cret-Lock'), text);
  });

  it('works on a pool it does not own and leaves that pool open on close', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    try {
      const lock = await createPostgresLock({ pool, table: 'shared_pool_locks', sweepIntervalMs: 0 });
      assert.ok(await lock.acquire('k'));
      await lock.close();
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM public.shared_pool_locks');
      assert.equal(rows[0].n, 1);
    } finally {
      await pool.end();
    }
  });
});
