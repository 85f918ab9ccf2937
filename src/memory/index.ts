// Public API of src/memory.
export {
  type ArvoToolsMigrationOptions,
  type ArvoToolsMigrationReport,
  migrateFromArvoTools,
} from './arvo-tools-migration';
export type { ArvoToolsTables } from './arvo-tools-migration-sql';
export type { ArvoToolsMachineMemoryOptions } from './arvo-tools-options';
export {
  ArvoToolsMigrationError,
  MachineMemoryConflictError,
  MachineMemoryTableStructureError,
} from './errors';
export {
  connectPostgresMachineMemory,
  PostgresMachineMemory,
  releasePostgresMachineMemory,
  releasePostgressMachineMemory,
} from './memory';
export type { MemoryTables } from './migrations/v1';
export type { MemoryMigrateMode, PostgresMachineMemoryOptions } from './options';
export { memoryMigrationSql } from './schema';
export type { IMachineMemory, MemorySweepResult } from './types';
