import { PgBoss } from 'pg-boss';

/**
 * Runs `fn` with a started pg-boss on `schema` that runs no workers, supervision or schedules.
 * `migrate: true` installs or migrates pg-boss's schema; `false` makes `start()` throw when the
 * schema is missing ("pg-boss is not installed") or at another version ("requires migrations").
 */
export async function withPgBoss<T>(
  connectionString: string,
  schema: string,
  migrate: boolean,
  fn: (boss: PgBoss) => Promise<T>,
): Promise<T> {
  const boss = new PgBoss({
    connectionString,
    schema,
    migrate,
    supervise: false,
    schedule: false,
    max: 2,
    application_name: 'arvo-postgres-cli',
  });
  let failure: unknown;
  // Without an `error` listener Node throws on emit('error'); remember it for the caller instead.
  boss.on('error', (error) => {
    failure ??= error;
  });
  try {
    await boss.start();
    const result = await fn(boss);
    if (failure) throw failure;
    return result;
  } finally {
    await boss.stop({ graceful: false, close: true }).catch(() => {});
  }
}
