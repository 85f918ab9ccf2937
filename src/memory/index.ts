// Public API of src/memory.
export { MachineMemoryConflictError, MachineMemoryTableStructureError } from './errors';
export {
  connectPostgresMachineMemory,
  type MemoryMigrateMode,
  type MemorySweepResult,
  memoryMigrationSql,
  PostgresMachineMemory,
  type PostgresMachineMemoryOptions,
  releasePostgresMachineMemory,
} from './memory';
export type { MemoryTables } from './migrations/v1';
export type { IMachineMemory } from './types';
