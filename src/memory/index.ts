// Public API of src/memory.
export type { ArvoToolsMachineMemoryOptions } from './arvo-tools-options';
export { MachineMemoryConflictError, MachineMemoryTableStructureError } from './errors';
export {
  connectPostgresMachineMemory,
  type MemoryMigrateMode,
  type MemorySweepResult,
  memoryMigrationSql,
  PostgresMachineMemory,
  type PostgresMachineMemoryOptions,
  releasePostgresMachineMemory,
  releasePostgressMachineMemory,
} from './memory';
export type { MemoryTables } from './migrations/v1';
export type { IMachineMemory } from './types';
