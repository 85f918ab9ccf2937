/**
 * Every broker option stored in an `integer` column of pg-boss's queue table: the largest PostgreSQL
 * integer is accepted and works at `start()`/`register`, one more is refused with InvalidOptionError
 * when validated (constructor, register), never by `start()` with a raw 22003.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PostgresEventBroker } from '../../src/broker/index';
import { InvalidOptionError } from '../../src/shared/errors';
import { silentLogger } from '../../src/shared/logger';
import { MAX_PG_INTEGER } from '../../src/shared/options';
import { createTestDatabase, type TestDatabase } from '../support/database';
import { handler } from './support';

/** An option of the per-queue defaults (`defaults.<section>` at the constructor, `<section>` at register). */
function perQueue(
  section: 'worker' | 'queue',
  option: string,
): [string, (value: number) => object, (value: number) => object] {
  return [
    option,
    (v) => ({ defaults: { [section]: { [option]: v } } }),
    (v) => ({ [section]: { [option]: v } }),
  ];
}

/** [option path, options of that value at the constructor, options of that value at register]. */
const INTEGER_OPTIONS: Array<[string, (value: number) => object, ((value: number) => object) | null]> = [
  perQueue('worker', 'retryDelay'),
  perQueue('worker', 'retryDelayMax'),
  perQueue('queue', 'retentionSeconds'),
  perQueue('queue', 'deleteAfterSeconds'),
  perQueue('queue', 'warningQueueSize'),
  ['deadLetterRetentionSeconds', (v) => ({ deadLetterRetentionSeconds: v }), null],
];

describe('broker options stored as PostgreSQL integers', () => {
  let db: TestDatabase;
  const brokers: PostgresEventBroker[] = [];

  before(async () => {
    db = await createTestDatabase('integer_options');
  });
  after(async () => {
    for (const broker of brokers) await broker.stop({ timeoutMs: 1000 });
    await db.drop();
  });

  for (const [option, atConstructor, atRegister] of INTEGER_OPTIONS) {
    it(`${option}: ${MAX_PG_INTEGER} works at start() and register; ${MAX_PG_INTEGER + 1} is refused when validated`, async () => {
      const options = { connectionString: db.url, logger: silentLogger };
      const isOptionError = (error: unknown) =>
        error instanceof InvalidOptionError &&
        error.option.endsWith(option) &&
        /2147483647/.test(error.message);
      assert.throws(
        () => new PostgresEventBroker({ ...options, ...atConstructor(MAX_PG_INTEGER + 1) }),
        isOptionError,
      );

      const broker = new PostgresEventBroker({ ...options, ...atConstructor(MAX_PG_INTEGER) });
      brokers.push(broker);
      const queue = `com.int.${option.toLowerCase()}`;
      await broker.register(handler(queue, async () => []));
      await broker.start();
      if (atRegister) {
        await assert.rejects(
          broker.register(
            handler(`${queue}.more`, async () => []),
            atRegister(MAX_PG_INTEGER + 1),
          ),
          isOptionError,
        );
        await broker.register(
          handler(`${queue}.max`, async () => []),
          atRegister(MAX_PG_INTEGER),
        );
      }
      await broker.stop({ timeoutMs: 1000 });
    });
  }
});
