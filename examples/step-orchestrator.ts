/**
 * A small, readable Arvo orchestrator that runs a list of steps. `arvo-xstate` (the real orchestrator
 * for arvo 2.x) is not on the npm registry, so this one follows Arvo's orchestrator protocol by hand,
 * exactly: validate subject → `lock` → `read` → compute → `write(subject, next, prevFromRead)` → return
 * events → `unlock` in `finally`. It talks to the memory only through {@link IMachineMemory}, so the
 * same workflow runs on an in-process memory, the Postgres memory, or the broker.
 *
 * Event types (`name` = the orchestrator's name, `type` = a service type):
 * - init: `arvo.orc.<name>` with `data.parentSubject$$` (null for a root);
 * - service call: `<type>` (to the service, `redirectto` = orchestrator); reply `evt.<type>.success`
 *   (see {@link serviceReplyType}) or `sys.<type>.error` when the service threw;
 * - child: `arvo.orc.<child>` with a child subject and `data.parentSubject$$` = the parent subject;
 * - completion: `arvo.orc.<name>.done` to the init event's `source` (the parent's orchestrator for a
 *   child, with `subject` = parent subject). A failed workflow completes with the same `.done` type
 *   and `data.status === 'failure'` plus `data.error` (not `sys.…error`), so that a parent can handle
 *   it like any other child completion — it then fails too.
 */
import { context, trace } from '@opentelemetry/api';
import {
  type ArvoEvent,
  ArvoOrchestrationSubject,
  createArvoContract,
  createArvoEvent,
  currentOpenTelemetryHeaders,
  ViolationError,
} from 'arvo-core';
import { ArvoEventHandler, ConfigViolation, ExecutionViolation } from 'arvo-event-handler';
import type { IMachineMemory } from 'arvo-postgres';
import { z } from 'zod';

/** One step of a fixture workflow. */
export type FixtureStep =
  /** Call one service; the handler's source is the event type. */
  | { call: string; data?: Record<string, unknown> }
  /** `count` parallel calls of one service; the step ends when all `count` replies arrived. */
  | { fanOut: string; count: number; data?: Record<string, unknown> }
  /** Start child orchestrator `child` and wait for its `.done`. */
  | { child: string }
  /**
   * Ask the outside world: emit `<ask>` with `domain` set (arvo 3 domained event, e.g. a human
   * approval). The broker hands it to `onDomainedEvent`; the application answers by dispatching
   * `evt.<ask>.success` (or `sys.<ask>.error`) to the orchestrator with the same subject.
   */
  | { ask: string; domain: string; data?: Record<string, unknown> };

export interface OrchestratorFixtureOptions {
  /** Orchestrator name: source and init type `arvo.orc.${name}`, completion type `arvo.orc.${name}.done`. */
  name: string;
  /** Where the workflow state lives. */
  memory: IMachineMemory<Record<string, any>>;
  /** What the workflow does, in order. */
  steps: FixtureStep[];
}

/** Anything with a `source` and an arvo-2.x-style `execute`; an orchestrator also exposes its `memory`, as arvo's do. */
export interface FixtureHandler {
  source: string;
  memory?: IMachineMemory<Record<string, any>>;
  execute(event: ArvoEvent, opts?: { inheritFrom: 'EVENT' | 'CONTEXT' }): Promise<ArvoEvent[]>;
}

/** The state the fixture stores per workflow subject. */
export interface FixtureRecord {
  subject: string;
  /** Source of the orchestrator, `arvo.orc.<name>`. */
  orchestrator: string;
  parentSubject: string | null;
  /** Where the completion goes: the init event's `source`. */
  initiator: string;
  initEventId: string;
  status: 'active' | 'done' | 'failure';
  executionStatus: 'normal' | 'failure';
  /** Index of the current step in `steps`. */
  step: number;
  /** Replies still awaited for the current step. */
  pending: number;
  /** Data of every reply, in arrival order. */
  results: Array<{ type: string; data: Record<string, unknown> }>;
  /** Ids of the events applied to this record; a redelivered id is ignored. */
  consumed: string[];
  /** Ids of the events this workflow emitted. */
  produced: string[];
  error: string | null;
}

/** Why an orchestrator transaction failed (same causes as arvo-xstate's `TransactionViolation`). */
export type TransactionViolationCause =
  | 'LOCK_UNACQUIRED'
  | 'LOCK_FAILURE'
  | 'READ_MACHINE_MEMORY_FAILURE'
  | 'WRITE_MACHINE_MEMORY_FAILURE';

/** Thrown when lock/read/write of the memory failed: the event should be retried later. */
export class TransactionViolation extends ViolationError<'OrchestratorTransaction'> {
  override readonly cause: TransactionViolationCause;

  constructor(cause: TransactionViolationCause, message: string, metadata?: Record<string, any>) {
    super({ type: 'OrchestratorTransaction', message: `[${cause}] ${message}`, metadata });
    // arvo-core is compiled to ES5: its Error subclass returns a plain Error, so restore the prototype
    // for `instanceof TransactionViolation` (and `instanceof ViolationError`) to hold.
    Object.setPrototypeOf(this, new.target.prototype);
    this.cause = cause;
  }
}

/** Source / init type of orchestrator `name`. */
export function orchestratorSource(name: string): string {
  return `arvo.orc.${name}`;
}

/** Completion type of orchestrator `name`. */
export function completionType(name: string): string {
  return `arvo.orc.${name}.done`;
}

/** The type of a successful reply of service `type`. */
export function serviceReplyType(type: string): string {
  return `evt.${type}.success`;
}

const ORCHESTRATOR_VERSION = '1.0.0';

function describeCause(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Trace headers for emitted events: the active span's when asked to inherit the context, else the event's. */
function traceHeaders(
  event: ArvoEvent,
  inheritFrom: 'EVENT' | 'CONTEXT',
): { traceparent?: string; tracestate?: string } {
  if (inheritFrom === 'CONTEXT' && trace.getSpanContext(context.active())) {
    const headers = currentOpenTelemetryHeaders();
    if (headers.traceparent) {
      return {
        traceparent: headers.traceparent,
        ...(headers.tracestate ? { tracestate: headers.tracestate } : {}),
      };
    }
  }
  return {
    ...(event.traceparent ? { traceparent: event.traceparent } : {}),
    ...(event.tracestate ? { tracestate: event.tracestate } : {}),
  };
}

/** What an orchestrator computed from the record it read: the record to store (`null`: none) and its events. */
export interface OrchestratorStep<T> {
  next: T | null;
  events: ArvoEvent[];
  /** Passed to `memory.write` (`{ source, initiator }` for the Postgres memory's columns). */
  metadata?: Record<string, unknown>;
  /** The workflow reached a final state: after the write, the memory's completion hook runs (as arvo 3 does). */
  completed?: boolean;
}

/**
 * Arvo's orchestrator transaction on `subject`: `lock` → `read` → `compute(prev)` →
 * `write(subject, next, prev as read)` → `unlock` in `finally`. A memory failure (or a lock held
 * elsewhere) is thrown as a {@link TransactionViolation}, so the broker retries the event.
 */
export async function runOrchestratorTransaction<T extends Record<string, any>>(
  memory: IMachineMemory<T>,
  subject: string,
  compute: (prev: T | null) => OrchestratorStep<T>,
): Promise<ArvoEvent[]> {
  let locked: boolean;
  try {
    locked = await memory.lock(subject);
  } catch (error) {
    throw new TransactionViolation('LOCK_FAILURE', `lock failed: ${describeCause(error)}`, { subject });
  }
  if (!locked) {
    throw new TransactionViolation('LOCK_UNACQUIRED', 'workflow is locked by another holder', { subject });
  }
  try {
    let prev: T | null;
    try {
      prev = await memory.read(subject);
    } catch (error) {
      throw new TransactionViolation('READ_MACHINE_MEMORY_FAILURE', `read failed: ${describeCause(error)}`, {
        subject,
      });
    }
    const { next, events, metadata, completed } = compute(prev);
    if (next) {
      try {
        await memory.write(subject, next, prev, metadata);
      } catch (error) {
        throw new TransactionViolation(
          'WRITE_MACHINE_MEMORY_FAILURE',
          `write failed: ${describeCause(error)}`,
          {
            subject,
          },
        );
      }
      // The memory decides by its own policy what, if anything, to delete.
      if (completed) await memory.cleanup?.(subject);
    }
    return events;
  } finally {
    // The TTL guarantees progress even when unlock fails.
    await memory.unlock(subject).catch(() => false);
  }
}

/** An orchestrator following the arvo protocol over `options.memory`. */
export function createOrchestratorFixture(options: OrchestratorFixtureOptions): FixtureHandler {
  const { memory, steps } = options;
  const source = orchestratorSource(options.name);
  const doneType = completionType(options.name);

  function emit(
    record: FixtureRecord,
    trigger: ArvoEvent,
    headers: { traceparent?: string; tracestate?: string },
    fields: { type: string; subject: string; to: string; data: Record<string, unknown>; redirectto?: string },
    extensions: Record<string, string> = {},
  ): ArvoEvent {
    const event = createArvoEvent(
      {
        source,
        ...fields,
        ...headers,
        ...(trigger.accesscontrol ? { accesscontrol: trigger.accesscontrol } : {}),
      },
      extensions,
      { disable: true },
    );
    record.produced.push(event.id);
    return event;
  }

  function complete(
    record: FixtureRecord,
    trigger: ArvoEvent,
    headers: { traceparent?: string; tracestate?: string },
  ): ArvoEvent {
    return emit(record, trigger, headers, {
      type: doneType,
      subject: record.parentSubject ?? record.subject,
      to: record.initiator,
      data: { status: record.status, results: record.results, error: record.error },
    });
  }

  /** Emits the events of step `record.step`, or the completion after the last step. */
  function startStep(
    record: FixtureRecord,
    trigger: ArvoEvent,
    headers: { traceparent?: string; tracestate?: string },
  ): ArvoEvent[] {
    const step = steps[record.step];
    if (!step) {
      record.status = 'done';
      record.pending = 0;
      return [complete(record, trigger, headers)];
    }
    if ('call' in step) {
      record.pending = 1;
      return [
        emit(record, trigger, headers, {
          type: step.call,
          subject: record.subject,
          to: step.call,
          redirectto: source,
          data: { ...(step.data ?? {}), step: record.step },
        }),
      ];
    }
    if ('fanOut' in step) {
      record.pending = step.count;
      return Array.from({ length: step.count }, (_, index) =>
        emit(record, trigger, headers, {
          type: step.fanOut,
          subject: record.subject,
          to: step.fanOut,
          redirectto: source,
          data: { ...(step.data ?? {}), step: record.step, index },
        }),
      );
    }
    if ('ask' in step) {
      record.pending = 1;
      return [
        emit(
          record,
          trigger,
          headers,
          {
            type: step.ask,
            subject: record.subject,
            to: step.ask,
            redirectto: source,
            data: { ...(step.data ?? {}), step: record.step },
          },
          // arvo-core 2.x has no `domain` field; it travels as an extension, as arvo 3 serializes it.
          { domain: step.domain },
        ),
      ];
    }
    record.pending = 1;
    const childSource = orchestratorSource(step.child);
    return [
      emit(record, trigger, headers, {
        type: childSource,
        subject: ArvoOrchestrationSubject.from({
          orchestator: childSource,
          version: ORCHESTRATOR_VERSION,
          subject: record.subject,
        }),
        to: childSource,
        data: { parentSubject$$: record.subject },
      }),
    ];
  }

  /** The type of reply the current step waits for. */
  function expectedReply(record: FixtureRecord): { success: string; error: string } | undefined {
    const step = steps[record.step];
    if (!step) return undefined;
    const target =
      'call' in step ? step.call : 'fanOut' in step ? step.fanOut : 'ask' in step ? step.ask : undefined;
    if (target) return { success: serviceReplyType(target), error: `sys.${target}.error` };
    const child = (step as { child: string }).child;
    return { success: completionType(child), error: `sys.${orchestratorSource(child)}.error` };
  }

  /** The next record and the events to emit; `next === null` means: nothing to store. */
  function compute(
    prev: FixtureRecord | null,
    event: ArvoEvent,
    headers: { traceparent?: string; tracestate?: string },
  ): { next: FixtureRecord | null; events: ArvoEvent[] } {
    if (prev?.consumed.includes(event.id)) return { next: null, events: [] };

    if (event.type === source) {
      // A second init for a running workflow is ignored: the first one owns the subject.
      if (prev) return { next: null, events: [] };
      const parentSubject = (event.data as { parentSubject$$?: unknown }).parentSubject$$;
      const record: FixtureRecord = {
        subject: event.subject,
        orchestrator: source,
        parentSubject: typeof parentSubject === 'string' ? parentSubject : null,
        initiator: event.source,
        initEventId: event.id,
        status: 'active',
        executionStatus: 'normal',
        step: 0,
        pending: 0,
        results: [],
        consumed: [event.id],
        produced: [],
        error: null,
      };
      return { next: record, events: startStep(record, event, headers) };
    }

    if (!prev) {
      throw new ExecutionViolation(`No workflow state for subject of event ${event.type} (${event.id})`);
    }
    const record: FixtureRecord = structuredClone(prev);
    record.consumed.push(event.id);
    // Late replies to a finished workflow are consumed without effect.
    if (record.status !== 'active') return { next: record, events: [] };

    const expected = expectedReply(record);
    const data = event.data as Record<string, unknown>;
    const failed =
      event.type === expected?.error ||
      (event.type === expected?.success && event.type.startsWith('arvo.orc.') && data.status === 'failure');
    if (failed) {
      record.status = 'failure';
      record.executionStatus = 'failure';
      record.pending = 0;
      record.error = String(data.errorMessage ?? data.error ?? `${event.type} failed`);
      return { next: record, events: [complete(record, event, headers)] };
    }
    if (event.type !== expected?.success) {
      throw new ConfigViolation(
        `Orchestrator ${source} at step ${record.step} does not expect an event of type ${event.type}`,
      );
    }
    record.results.push({ type: event.type, data });
    record.pending -= 1;
    if (record.pending > 0) return { next: record, events: [] };
    record.step += 1;
    return { next: record, events: startStep(record, event, headers) };
  }

  return {
    source,
    memory,
    async execute(event, opts = { inheritFrom: 'EVENT' }) {
      if (!ArvoOrchestrationSubject.isValid(event.subject)) {
        throw new ExecutionViolation(`Event ${event.id} (${event.type}) has no valid orchestration subject`);
      }
      const owner = ArvoOrchestrationSubject.parse(event.subject).orchestrator.name;
      if (owner !== source) {
        throw new ExecutionViolation(`Subject of event ${event.id} belongs to ${owner}, not ${source}`);
      }
      return runOrchestratorTransaction(memory, event.subject, (prev) => {
        const { next, events } = compute(
          prev as FixtureRecord | null,
          event,
          traceHeaders(event, opts.inheritFrom),
        );
        return {
          next,
          events,
          metadata: next ? { source, initiator: next.initiator } : undefined,
          completed: next !== null && next.status !== 'active' && prev?.status === 'active',
        };
      });
    },
  };
}

const anyObject = z.object({}).passthrough();

/**
 * A real `ArvoEventHandler` for service `type` (e.g. `com.calc.add`). It replies
 * `evt.<type>.success` with `{ service, input }` to the caller (`redirectto ?? source`) on the same
 * subject; `data.fail === true` makes it throw a plain `Error`, which arvo turns into a returned
 * `sys.<type>.error` event to the caller.
 */
export function createServiceFixture(type: string, options: { delayMs?: number } = {}): FixtureHandler {
  const replyType = serviceReplyType(type);
  const contract = createArvoContract({
    uri: `#/test/services/${type}`,
    type,
    versions: { '1.0.0': { accepts: anyObject, emits: { [replyType]: anyObject } } },
  });
  return new ArvoEventHandler({
    contract,
    executionunits: 1,
    handler: {
      '1.0.0': async ({ event }: { event: ArvoEvent }) => {
        if (options.delayMs) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
        const input = event.data as Record<string, unknown>;
        if (input.fail === true) throw new Error(`${type} failed on request`);
        return { type: replyType, data: { service: type, input } };
      },
    } as any,
  }) as FixtureHandler;
}

/** A valid init event for orchestrator `name` from `initiator` (default `com.test.client`), as a root. */
export function createInitEvent(
  name: string,
  options: { initiator?: string; data?: Record<string, unknown> } = {},
): ArvoEvent {
  const type = orchestratorSource(name);
  const initiator = options.initiator ?? 'com.test.client';
  return createArvoEvent(
    {
      type,
      source: initiator,
      to: type,
      subject: ArvoOrchestrationSubject.new({
        orchestator: type,
        version: ORCHESTRATOR_VERSION,
        initiator,
      }),
      data: { ...(options.data ?? {}), parentSubject$$: null },
    },
    {},
    { disable: true },
  );
}
