import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PostgresEventBroker } from '../../src/broker/index';
import type { Logger } from '../../src/shared/logger';
import { closeAll } from '../support/close';
import { createTestDatabase, type TestDatabase } from '../support/database';

// Not through ./support: it registers a context manager for the whole process, which is what this file varies.
function warnings(): Logger & { warned: string[] } {
  const warned: string[] = [];
  return { warned, info() {}, warn: (message: string) => warned.push(message), error() {} };
}

describe('PostgresEventBroker: a missing OpenTelemetry context manager', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('broker_context_manager');
  });
  after(() => closeAll(db));

  async function startAndStop(logger: Logger): Promise<void> {
    const broker = new PostgresEventBroker({ connectionString: db.url, logger });
    await broker.start();
    await broker.stop();
  }

  it('says nothing when a context manager is registered', async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    try {
      const logger = warnings();
      await startAndStop(logger);
      assert.deepEqual(logger.warned, []);
    } finally {
      context.disable();
    }
  });

  it('warns once per process, naming what to register, when none is', async () => {
    const first = warnings();
    await startAndStop(first);
    assert.equal(first.warned.length, 1, first.warned.join('\n'));
    assert.match(first.warned[0]!, /no OpenTelemetry context manager is registered/);
    assert.match(first.warned[0]!, /AsyncLocalStorageContextManager/);
    assert.match(first.warned[0]!, /@opentelemetry\/context-async-hooks/);
    const second = warnings();
    await startAndStop(second);
    assert.deepEqual(second.warned, []);
  });
});
