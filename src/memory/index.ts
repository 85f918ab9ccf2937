// Public API of src/memory.
export type { IMachineMemory } from './types';
