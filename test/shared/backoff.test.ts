import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Backoff, backoffDelay, retryWithBackoff } from '../../src/shared/backoff';

const backoff: Backoff = { maxAttempts: 6, initialDelayMs: 40, backoffExponent: 2, maxDelayMs: 200 };
/** The exponential ceiling of each wait: 40, 80, 160, then the 200 ms cap. */
const CEILINGS = [40, 80, 160, 200, 200];

describe('backoff', () => {
  it('waits between 0 and the exponential ceiling, capped at maxDelayMs (full jitter)', () => {
    CEILINGS.forEach((ceiling, index) => {
      const attempt = index + 1;
      assert.equal(
        backoffDelay(backoff, attempt, () => 0),
        0,
      );
      assert.equal(
        backoffDelay(backoff, attempt, () => 0.5),
        ceiling / 2,
      );
      const top = backoffDelay(backoff, attempt, () => 1 - Number.EPSILON);
      assert.ok(top < ceiling && top > ceiling - 0.001, `attempt ${attempt}: ${top} vs ${ceiling}`);
    });
  });

  it('spreads the waits over the whole range, never outside it', () => {
    for (const [index, ceiling] of CEILINGS.entries()) {
      const waits = Array.from({ length: 1000 }, () => backoffDelay(backoff, index + 1));
      assert.ok(
        waits.every((wait) => wait >= 0 && wait < ceiling),
        `attempt ${index + 1} left [0, ${ceiling})`,
      );
      // Without jitter every wait would be the ceiling; (3/4)^1000 makes a false failure impossible.
      assert.ok(Math.min(...waits) < ceiling / 4, `attempt ${index + 1}: no short wait`);
      assert.ok(Math.max(...waits) > (ceiling * 3) / 4, `attempt ${index + 1}: no long wait`);
    }
  });

  it('retries until an attempt returns something, at most maxAttempts times', async () => {
    const quick: Backoff = { maxAttempts: 4, initialDelayMs: 5, backoffExponent: 2, maxDelayMs: 10 };
    let calls = 0;
    assert.equal(
      await retryWithBackoff(quick, async () => {
        calls += 1;
        return null;
      }),
      null,
    );
    assert.equal(calls, 4);
    calls = 0;
    assert.equal(
      await retryWithBackoff(quick, async () => {
        calls += 1;
        return calls === 2 ? 'got it' : null;
      }),
      'got it',
    );
    assert.equal(calls, 2);
  });
});
