/**
 * Type-level test, compiled by `npm run typecheck` (and, against the packed package, by
 * test/package.test.ts): the memory plugs into an Arvo orchestrator without a type argument.
 * `MachineMemoryRecord` is arvo-xstate 2's record, field for field (arvo-xstate is not on the registry).
 */
import type { ArvoEvent } from 'arvo-core';
import type { Snapshot } from 'xstate';
import { connectPostgresMachineMemory, type IMachineMemory } from '../../src/index';

type MachineMemoryRecord = {
  subject: string;
  parentSubject: string | null;
  status: string;
  value: string | Record<string, any> | null;
  state: Snapshot<any>;
  consumed: ArvoEvent[];
  produced: ArvoEvent[];
  machineDefinition: string | null;
};

// What `createArvoOrchestrator` asks for.
declare function createArvoOrchestrator(param: {
  memory: IMachineMemory<MachineMemoryRecord>;
  executionunits: number;
  machines: unknown[];
}): unknown;

export async function plugsIntoAnOrchestrator(connectionString: string): Promise<void> {
  const memory = await connectPostgresMachineMemory({ connectionString });
  const asMemory: IMachineMemory<MachineMemoryRecord> = memory;
  createArvoOrchestrator({ memory, executionunits: 0.1, machines: [] });
  // A type argument still gives typed records.
  const typed = await connectPostgresMachineMemory<MachineMemoryRecord>({ connectionString });
  const record = await typed.read('subject');
  const status: string | undefined = record?.status;
  void [asMemory, status];
}
