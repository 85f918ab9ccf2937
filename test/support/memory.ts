import { after, before, type TestContext } from 'node:test';
import type pg from 'pg';
import {
  connectPostgresMachineMemory,
  type PostgresMachineMemory,
  type PostgresMachineMemoryOptions,
  releasePostgresMachineMemory,
} from '../../src/memory/index';
import { closeAll } from './close';
import { createTestDatabase, type TestDatabase, testPool } from './database';

/** A machine memory connected with `options`, closed when test `t` ends. */
export async function memoryForTest<T extends Record<string, any> = Record<string, any>>(
  t: TestContext,
  options: PostgresMachineMemoryOptions,
): Promise<PostgresMachineMemory<T>> {
  const memory = await connectPostgresMachineMemory<T>(options);
  t.after(() => releasePostgresMachineMemory(memory));
  return memory;
}

/**
 * For a memory suite: its database and an admin pool, opened in `before`; `track` keeps a memory
 * the suite connected, released in `after` before the pool and the database are closed. Read `db`
 * and `admin` once `before` has run.
 */
export function useMemoryDatabase(label: string): {
  readonly db: TestDatabase;
  readonly admin: pg.Pool;
  track(memory: PostgresMachineMemory): PostgresMachineMemory;
} {
  const opened: PostgresMachineMemory[] = [];
  const suite = {
    track: (memory: PostgresMachineMemory) => {
      opened.push(memory);
      return memory;
    },
  } as { db: TestDatabase; admin: pg.Pool; track(memory: PostgresMachineMemory): PostgresMachineMemory };
  before(async () => {
    suite.db = await createTestDatabase(label);
    suite.admin = testPool(suite.db.url, 2);
  });
  after(async () => {
    await Promise.all(opened.map((memory) => releasePostgresMachineMemory(memory)));
    await closeAll(suite.admin, suite.db);
  });
  return suite;
}
