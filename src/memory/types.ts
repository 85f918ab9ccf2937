/**
 * The machine-memory contract Arvo orchestrators call for every event (lock → read → write → unlock).
 * Declared here because `arvo-xstate` is not on the registry; structural typing makes it compatible
 * with `arvo-xstate` 2.x's and arvo 3.x's `IMachineMemory`.
 */
export interface IMachineMemory<T extends Record<string, any>> {
  /** The stored record of workflow `id`, or `null` when there is none. */
  read(id: string): Promise<T | null>;
  /**
   * Stores `data`. `prevData === null` creates the record; otherwise it replaces the record `read`
   * returned as `prevData`, failing when someone else wrote in between.
   */
  write(id: string, data: T, prevData: T | null, metadata?: unknown): Promise<void>;
  /** Takes the workflow's lock; `false` when another holder has it. */
  lock(id: string): Promise<boolean>;
  /** Releases the lock this memory holds for `id`; `false` when it held none. */
  unlock(id: string): Promise<boolean>;
  /**
   * arvo 3: called by the orchestrator when workflow `id` reached a final state. A hook: the memory
   * decides by its own policy whether anything is deleted.
   */
  cleanup?(id: string): Promise<void>;
}

/** Result of {@link PostgresMachineMemory.sweep}. */
export interface MemorySweepResult {
  /** Workflow trees deleted because their root finished before the retention. */
  finishedTrees: number;
  /** Workflow trees deleted because nothing in them was written for too long. */
  abandonedTrees: number;
  /** Records deleted in total. */
  deletedRecords: number;
  /** Expired lock rows deleted. */
  expiredLocks: number;
}
