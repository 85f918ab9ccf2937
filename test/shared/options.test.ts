/**
 * Option tables (`src/shared/options.ts`): one table per options object checks, defaults and refuses
 * unknown keys, every error an `InvalidOptionError` naming the dotted option; the compiler holds each
 * table to its public interface. The tables of the broker, memory and lock are exercised through their
 * public constructors and `resolve…Options`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveBrokerOptions } from '../../src/broker/options';
import { resolveLockOptions } from '../../src/lock/options';
import { resolveMemoryOptions } from '../../src/memory/options';
import { InvalidOptionError } from '../../src/shared/errors';
import { flag, integer, nested, type OptionTable, resolveOptions } from '../../src/shared/options';

interface Sample {
  /** @defaultValue `3` */
  size?: number;
  /** @defaultValue `false` */
  loud?: boolean;
  inner?: { low?: number; high?: number };
}

const INNER = nested(
  { low: integer({ min: 0, max: 100 }, 10), high: integer({ min: 0, max: 100 }, 20) },
  ({ low, high }, option, given) => {
    if (given.high !== undefined && high < low) {
      throw new InvalidOptionError(`${option}.high`, `must be at least low (${low})`);
    }
    return { low, high: Math.max(low, high) };
  },
);

const SAMPLE = {
  size: integer({ min: 1, max: 9 }, 3),
  loud: flag(false),
  inner: INNER,
} satisfies OptionTable<Sample>;

// The compiler refuses a table that drifts from its interface: these lines only typecheck with the errors.
({
  size: integer({ min: 1 }),
  loud: flag(false),
  inner: INNER,
  // @ts-expect-error a table key the interface does not have
  extra: flag(true),
}) satisfies OptionTable<Sample>;
// @ts-expect-error an interface key the table leaves out
({ size: integer({ min: 1 }), loud: flag(false) }) satisfies OptionTable<Sample>;
// @ts-expect-error a check producing another type than the field's
({ size: flag(true), loud: flag(false), inner: INNER }) satisfies OptionTable<Sample>;

/** Asserts `run` throws an InvalidOptionError for `option` whose message matches `message`. */
function refuses(run: () => unknown, option: string, message: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof InvalidOptionError, String(error));
    assert.equal(error.option, option);
    assert.match(error.message, message);
    return true;
  });
}

describe('option tables', () => {
  it('fill in defaults, keep given values, and take a missing one from the base before the default', () => {
    assert.deepEqual(resolveOptions(SAMPLE, undefined, ''), {
      size: 3,
      loud: false,
      inner: { low: 10, high: 20 },
    });
    assert.deepEqual(resolveOptions(SAMPLE, { size: 5, inner: { low: 50 } }, ''), {
      size: 5,
      loud: false,
      inner: { low: 50, high: 50 },
    });
    assert.deepEqual(resolveOptions(SAMPLE, { loud: true }, '', { size: 7 }), {
      size: 7,
      loud: true,
      inner: { low: 10, high: 20 },
    });
  });

  it('refuse unknown keys, wrong types and ranges, and broken rules between options, naming the dotted option', () => {
    refuses(
      () => resolveOptions(SAMPLE, { sise: 2 }, ''),
      'sise',
      /unknown option; expected one of size, loud, inner/,
    );
    refuses(
      () => resolveOptions(SAMPLE, { inner: { lo: 1 } }, 'sample'),
      'sample.inner.lo',
      /unknown option/,
    );
    refuses(() => resolveOptions(SAMPLE, { size: 10 }, ''), 'size', /from 1 to 9, got the number 10/);
    refuses(() => resolveOptions(SAMPLE, { loud: 'yes' }, ''), 'loud', /expected true or false/);
    refuses(() => resolveOptions(SAMPLE, { inner: 3 }, 'sample'), 'sample.inner', /expected an object/);
    refuses(
      () => resolveOptions(SAMPLE, { inner: { low: 30, high: 5 } }, ''),
      'inner.high',
      /at least low \(30\)/,
    );
  });

  it('give the broker, memory and lock their documented defaults', () => {
    const connectionString = 'postgres://user@localhost/db';
    const broker = resolveBrokerOptions({ connectionString });
    assert.equal(broker.worker.expireInSeconds, 300);
    assert.equal(broker.queue.deadLetter, 'arvo.dead-letter');
    assert.deepEqual(broker.lockContention, { minDelayMs: 50, maxDelayMs: 250 });
    assert.equal(broker.connection.config?.max, 10);
    // A queue's dead-letter queue follows the broker's unless `defaults.queue` names one.
    assert.equal(resolveBrokerOptions({ connectionString, deadLetterQueue: 'dlq' }).queue.deadLetter, 'dlq');
    const memory = resolveMemoryOptions({ connectionString });
    assert.equal(memory.lockRetry.maxAttempts, 4);
    assert.equal(memory.sweepIntervalMs, 0);
    assert.equal(
      resolveMemoryOptions({ connectionString, lock: { maxRetries: 0 } }).lockRetry.maxAttempts,
      1,
    );
    assert.equal(resolveLockOptions({ connectionString }).sweepIntervalMs, 60_000);
  });

  it('say which rule between options was broken', () => {
    const connectionString = 'postgres://user@localhost/db';
    refuses(
      () => resolveBrokerOptions({ connectionString, lockContention: { minDelayMs: 300, maxDelayMs: 100 } }),
      'lockContention.maxDelayMs',
      /must be at least minDelayMs \(300\)/,
    );
    // Only `minDelayMs` given: the longest delay follows it up.
    assert.deepEqual(
      resolveBrokerOptions({ connectionString, lockContention: { minDelayMs: 300 } }).lockContention,
      { minDelayMs: 300, maxDelayMs: 300 },
    );
    refuses(
      () => resolveMemoryOptions({ connectionString, lock: { maxRetries: 1, maxAttempts: 2 } }),
      'lock.maxRetries',
      /either `maxRetries` or `maxAttempts`/,
    );
    refuses(
      () => resolveMemoryOptions({ connectionString, lock: { retries: 1 } }),
      'lock.retries',
      /expected one of .*maxRetries/,
    );
    refuses(
      () => resolveMemoryOptions({ connectionString, tables: { state: 'x', lock: 'x' } }),
      'tables.lock',
      /must differ/,
    );
  });
});
