/**
 * The benchmark's orchestrator and service, built the way users build them so a hop costs what it
 * costs them: an xstate 5 machine run per event, Arvo contracts validating every input and output
 * (`createArvoOrchestratorContract`, `createArvoContract`, `createArvoEventFactory`), the
 * orchestration subject parsed to find the initiator, and the machine's persisted snapshot stored
 * in an arvo-xstate-shaped record `{ subject, parentSubject, status, value, state, consumed,
 * produced, machineDefinition }`. The memory protocol is Arvo's, exactly: validate subject → lock
 * → read → compute → write(subject, next, prev as read) → return events → unlock in `finally`.
 */
import {
  type ArvoEvent,
  ArvoOrchestrationSubject,
  type ArvoOrchestrationSubjectContent,
  createArvoContract,
  createArvoEventFactory,
  createArvoOrchestratorContract,
  createArvoOrchestratorEventFactory,
} from 'arvo-core';
import { ArvoEventHandler, ContractViolation, ExecutionViolation } from 'arvo-event-handler';
import { type AnyMachineSnapshot, createActor, enqueueActions, setup } from 'xstate';
import { z } from 'zod';
import type { IMachineMemory } from '../src/memory/types';
import { runOrchestratorTransaction } from '../test/support/orchestrator';

/** The one service every benchmark workflow calls. */
export const SERVICE_TYPE = 'com.bench.service';
const SERVICE_REPLY = `evt.${SERVICE_TYPE}.success`;
const VERSION = '1.0.0';

const callSchema = z.object({ step: z.number().int().nonnegative(), index: z.number().int().nonnegative() });

/** The service's contract: a call carries its step and index; the reply echoes them. */
export const serviceContract = createArvoContract({
  uri: '#/bench/services/call',
  type: SERVICE_TYPE,
  versions: { [VERSION]: { accepts: callSchema, emits: { [SERVICE_REPLY]: callSchema } } },
});

/** The orchestrator's contract: `arvo.orc.bench` in, `arvo.orc.bench.done` out. */
export const orchestratorContract = createArvoOrchestratorContract({
  uri: '#/bench/orchestrators/steps',
  name: 'bench',
  versions: {
    [VERSION]: {
      init: z.object({}),
      complete: z.object({
        status: z.enum(['success', 'failure']),
        results: z.array(callSchema),
        error: z.string().nullable(),
      }),
    },
  },
});

const serviceVersion = serviceContract.version(VERSION);
const orchestratorVersion = orchestratorContract.version(VERSION);
const orchestratorSource = orchestratorVersion.accepts.type;
const completionType = orchestratorVersion.metadata.completeEventType as string;
const serviceErrorType = serviceVersion.systemError.type;
const callFactory = createArvoEventFactory(serviceVersion);
const completionFactory = createArvoEventFactory(orchestratorVersion);
const initFactory = createArvoOrchestratorEventFactory(orchestratorVersion);

/** arvo-xstate's machine memory record. */
export interface BenchMachineRecord {
  subject: string;
  parentSubject: string | null;
  status: string;
  value: string | Record<string, unknown> | null;
  state: unknown;
  consumed: unknown[];
  produced: unknown[];
  machineDefinition: string | null;
}

type Call = z.infer<typeof callSchema>;
interface MachineContext {
  results: Call[];
  pending: number;
  error: string | null;
}
type MachineEvent =
  | { type: typeof SERVICE_REPLY; data: Call }
  | { type: typeof serviceErrorType; data: { errorMessage: string } };
type Emitted =
  | { type: 'call'; data: Call }
  | { type: 'complete'; data: { status: 'success' | 'failure'; results: Call[]; error: string | null } };

/**
 * The workflow as a state machine: step `i` sends `callsPerStep[i]` calls in parallel and moves on
 * when every reply arrived; a service error ends the workflow as a failure.
 */
function buildMachine(callsPerStep: readonly number[]) {
  const machine = setup({
    types: { context: {} as MachineContext, events: {} as MachineEvent, emitted: {} as Emitted },
    actions: {
      startStep: enqueueActions(({ enqueue }, params: { step: number; calls: number }) => {
        enqueue.assign({ pending: params.calls });
        for (let index = 0; index < params.calls; index += 1) {
          enqueue.emit({ type: 'call', data: { step: params.step, index } });
        }
      }),
      recordReply: enqueueActions(({ enqueue, context, event }) => {
        if (event.type !== SERVICE_REPLY) return;
        enqueue.assign({ results: [...context.results, event.data], pending: context.pending - 1 });
      }),
      recordError: enqueueActions(({ enqueue, event }) => {
        if (event.type === SERVICE_REPLY) return;
        enqueue.assign({ error: event.data.errorMessage, pending: 0 });
      }),
      complete: enqueueActions(({ enqueue, context }) => {
        enqueue.emit({
          type: 'complete',
          data: {
            status: context.error === null ? 'success' : 'failure',
            results: context.results,
            error: context.error,
          },
        });
      }),
    },
    guards: { allReplied: ({ context }) => context.pending === 0 },
  });
  const stepName = (step: number) => (step < callsPerStep.length ? `step${step}` : 'done');
  const states: Record<string, object> = {
    done: { type: 'final', entry: 'complete' },
    failed: { type: 'final', entry: 'complete' },
  };
  callsPerStep.forEach((calls, step) => {
    states[stepName(step)] = {
      entry: { type: 'startStep', params: { step, calls } },
      always: { guard: 'allReplied', target: stepName(step + 1) },
      on: {
        [SERVICE_REPLY]: { actions: 'recordReply' },
        [serviceErrorType]: { target: 'failed', actions: 'recordError' },
      },
    };
  });
  return machine.createMachine({
    id: 'bench',
    context: { results: [], pending: 0, error: null },
    initial: stepName(0),
    states: states as any,
  });
}

/** The input an event brings to the machine, validated against the contract that defines it. */
function validatedInput(event: ArvoEvent): MachineEvent | null {
  const schema =
    event.type === orchestratorSource
      ? orchestratorVersion.accepts.schema
      : event.type === SERVICE_REPLY
        ? serviceVersion.emits[SERVICE_REPLY]
        : event.type === serviceErrorType
          ? serviceVersion.systemError.schema
          : undefined;
  if (!schema) throw new ContractViolation(`Orchestrator ${orchestratorSource} accepts no ${event.type}`);
  const parsed = schema.safeParse(event.data);
  if (!parsed.success) {
    throw new ContractViolation(
      `Event ${event.id} (${event.type}) breaks its contract: ${parsed.error.message}`,
    );
  }
  return event.type === orchestratorSource ? null : ({ type: event.type, data: parsed.data } as MachineEvent);
}

/** Anything with a `source` and an arvo-2.x-style `execute`. */
export interface BenchHandler {
  source: string;
  execute(event: ArvoEvent, opts?: { inheritFrom: 'EVENT' | 'CONTEXT' }): Promise<ArvoEvent[]>;
}

/**
 * The orchestrator over `memory`. `onApplied` hears each event whose transition was computed (after
 * the lock was taken), for counting executions.
 */
export function createBenchOrchestrator(options: {
  memory: IMachineMemory<BenchMachineRecord>;
  callsPerStep: readonly number[];
  onApplied?: (event: ArvoEvent) => void;
}): BenchHandler {
  const { memory, onApplied } = options;
  const machine = buildMachine(options.callsPerStep);
  const machineDefinition = JSON.stringify(machine.config);

  /** Runs the machine on `input` from `prev`'s snapshot; the next record and the events it emits. */
  function compute(
    event: ArvoEvent,
    subject: ArvoOrchestrationSubjectContent,
    prev: BenchMachineRecord | null,
  ): { next: BenchMachineRecord | null; events: ArvoEvent[] } {
    const input = validatedInput(event);
    if (input === null && prev) return { next: null, events: [] }; // a second init: the first owns the subject
    if (input !== null && !prev) {
      throw new ExecutionViolation(`No workflow state for subject of event ${event.type} (${event.id})`);
    }
    const parentSubject =
      input === null ? ((event.data as { parentSubject$$?: string | null }).parentSubject$$ ?? null) : null;
    const emitted: Emitted[] = [];
    const actor = createActor(machine, prev ? { snapshot: prev.state as AnyMachineSnapshot } : {});
    actor.on('*', (item) => emitted.push(item as Emitted));
    actor.start();
    if (input) actor.send(input);
    const snapshot = actor.getSnapshot();
    const headers = {
      ...(event.traceparent ? { traceparent: event.traceparent } : {}),
      ...(event.tracestate ? { tracestate: event.tracestate } : {}),
    };
    const events = emitted.map((item) =>
      item.type === 'call'
        ? callFactory.accepts({
            source: orchestratorSource,
            subject: event.subject,
            to: SERVICE_TYPE,
            redirectto: orchestratorSource,
            data: item.data,
            ...headers,
          })
        : completionFactory.emits({
            type: completionType,
            source: orchestratorSource,
            subject: prev?.parentSubject ?? parentSubject ?? event.subject,
            to: subject.meta?.redirectto ?? subject.execution.initiator,
            data: item.data,
            ...headers,
          } as any),
    );
    const state = actor.getPersistedSnapshot();
    actor.stop();
    return {
      next: {
        subject: event.subject,
        parentSubject: prev?.parentSubject ?? parentSubject,
        status: snapshot.status,
        value: snapshot.value as BenchMachineRecord['value'],
        state,
        consumed: [event.toJSON()],
        produced: events.map((produced) => produced.toJSON()),
        machineDefinition,
      },
      events,
    };
  }

  return {
    source: orchestratorSource,
    async execute(event) {
      // Parsed once: isValid() parses (inflates) the subject too, so isValid + parse paid it twice a hop.
      let subject: ArvoOrchestrationSubjectContent;
      try {
        subject = ArvoOrchestrationSubject.parse(event.subject);
      } catch {
        throw new ExecutionViolation(`Event ${event.id} (${event.type}) has no valid orchestration subject`);
      }
      return runOrchestratorTransaction(memory, event.subject, (prev) => {
        const step = compute(event, subject, prev);
        onApplied?.(event);
        return { ...step, metadata: { source: orchestratorSource, initiator: subject.execution.initiator } };
      });
    },
  };
}

/** The service: an `ArvoEventHandler` on {@link serviceContract}; `onExecuted` hears each call it ran. */
export function createBenchService(options: { onExecuted?: (event: ArvoEvent) => void } = {}): BenchHandler {
  return new ArvoEventHandler({
    contract: serviceContract,
    executionunits: 1,
    handler: {
      [VERSION]: async ({ event }: { event: ArvoEvent<Call> }) => {
        options.onExecuted?.(event);
        return { type: SERVICE_REPLY, data: event.data };
      },
    } as any,
  }) as BenchHandler;
}

/** A root init event for the benchmark orchestrator, sent by `initiator`. */
export function createBenchInit(initiator: string): ArvoEvent {
  return initFactory.init({ source: initiator, data: { parentSubject$$: null } });
}

/** Hops of one workflow: the init, one call and one reply per call, and the completion. */
export function hopsPerWorkflow(callsPerStep: readonly number[]): number {
  return 2 + 2 * callsPerStep.reduce((sum, calls) => sum + calls, 0);
}
