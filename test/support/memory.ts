import type { TestContext } from 'node:test';
import {
  connectPostgresMachineMemory,
  type PostgresMachineMemory,
  type PostgresMachineMemoryOptions,
  releasePostgresMachineMemory,
} from '../../src/memory/index';

/** A machine memory connected with `options`, closed when test `t` ends. */
export async function memoryForTest<T extends Record<string, any> = Record<string, any>>(
  t: TestContext,
  options: PostgresMachineMemoryOptions,
): Promise<PostgresMachineMemory<T>> {
  const memory = await connectPostgresMachineMemory<T>(options);
  t.after(() => releasePostgresMachineMemory(memory));
  return memory;
}
