import { setMaxListeners } from 'node:events';
import { SpanKind } from '@opentelemetry/api';
import type { ArvoEvent } from 'arvo-core';
import { writeLog } from '../shared/logger';
import { describeError } from '../shared/redact';
import { withSpan } from '../shared/telemetry';
import { runInAmbientTransaction } from '../shared/transaction';
import {
  BatchRolledBackError,
  BrokerStoppingError,
  HandlerTimeoutError,
  InvalidEventError,
  UnclaimedReplyError,
} from './errors';
import { decodeEvent, type StoredEvent, serializeEvent } from './event-codec';
import { JobBatch } from './job-batch';
import type { FetchedJob, JobInsert, JobResult } from './pgboss';
import type { Destination, Queues } from './queues';
import type { Replies } from './replies';
import type { Settlement } from './settle';
import { contextFromTraceHeaders, messagingAttributes } from './tracing';
import {
  type BrokerRuntime,
  type HandlerNotFoundListener,
  type Registration,
  subjectConcurrencyOf,
} from './types';

/** A handler's output on its way out: the event and its stored form. */
interface Output {
  event: ArvoEvent;
  stored: StoredEvent;
}

type RoutedOutput = Output & Destination;

/**
 * Consumes the registrations' queues, one hop per job: decode → deliver → enqueue → complete →
 * commit → after-commit, each job's work atomic within its fetched batch's one transaction
 * ({@link JobBatch}; docs/design.md, "One transaction per hop, one commit per batch"); failures
 * go to {@link Settlement}.
 */
export class Consumer {
  readonly #runtime: BrokerRuntime;
  readonly #queues: Queues;
  readonly #replies: Replies;
  readonly #settlement: Settlement;
  readonly #notFoundListeners: readonly HandlerNotFoundListener[];
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Aborted at the `stop()` deadline: the hops still running hand their jobs back. */
  readonly #stopping = new AbortController();

  constructor(
    runtime: BrokerRuntime,
    parts: {
      queues: Queues;
      replies: Replies;
      settlement: Settlement;
      notFoundListeners: readonly HandlerNotFoundListener[];
    },
  ) {
    // Every job in flight listens for the stop, one listener each, removed when it settles: more than
    // Node's default of 10 is the normal case (10 per fetch × 2 fetch loops per queue), not a leak.
    setMaxListeners(0, this.#stopping.signal);
    this.#runtime = runtime;
    this.#queues = parts.queues;
    this.#replies = parts.replies;
    this.#settlement = parts.settlement;
    this.#notFoundListeners = parts.notFoundListeners;
  }

  /** Starts the worker of `registration`'s queue. */
  async start(registration: Registration): Promise<void> {
    registration.workerId = await this.#runtime.boss.work(
      registration.queue,
      registration.workerOptions,
      subjectConcurrencyOf(registration),
      (jobs) => {
        const batch = new JobBatch(this.#runtime, registration.queue, jobs.length, (error) =>
          this.#logCallbackError(error),
        );
        return this.#track(
          Promise.all(
            jobs.map((job) =>
              this.#runtime.metrics.timeHandler(job.name, () => this.#process(registration, job, batch)),
            ),
          ),
        );
      },
    );
  }

  /**
   * The `stop()` deadline: every hop still running (or fetched from now on) hands its job back to its
   * queue and its transaction takes no further statement (docs/design.md, "Stopping").
   */
  handBack(): void {
    this.#stopping.abort();
  }

  /** Gives the batches in flight `ms` to settle (after pg-boss's stop failed and aborted them). */
  async drain(ms: number): Promise<void> {
    if (!(await settleWithin([...this.#inFlight], ms))) {
      writeLog(
        this.#runtime.logger(),
        'warn',
        'arvo-postgres broker: handlers still running after stop(); their work was rolled back',
      );
    }
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inFlight.add(promise);
    const forget = () => this.#inFlight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  async #process(registration: Registration, job: FetchedJob, batch: JobBatch): Promise<JobResult> {
    // Aborted by pg-boss (claim lost, stop), by the broker's own expiry or its stop deadline (see withinDeadlines).
    const expiry = new AbortController();
    const scope = batch.scope([job.signal, expiry.signal]);
    let event: ArvoEvent;
    try {
      event = decodeEvent(job.data);
    } catch (error) {
      await scope.rollback();
      return this.#settlement.failure(registration, job, null, error);
    }
    const { boss, options, metrics } = this.#runtime;
    const parent = contextFromTraceHeaders(event.traceparent, event.tracestate);
    return withSpan(
      options.telemetry,
      `${job.name} process`,
      {
        ...messagingAttributes('process', job.name, job.id, event),
        'messaging.pgboss.retry_count': job.retryCount,
      },
      async () => {
        let unroutable: RoutedOutput[] = [];
        const delivery = runInAmbientTransaction(scope, () => this.#deliver(registration, event));
        try {
          const outputs = await withinDeadlines(delivery, job, expiry, this.#stopping.signal);
          const outgoing = outputs.map((output) => ({
            event: output,
            stored: serializeEvent(output, options.maxPayloadBytes).stored,
          }));
          // Through the job's scope: a second pool connection per job could starve the pool.
          const routed = await this.#queues.route(outgoing, scope);
          unroutable = routed.filter((entry) => entry.unroutable);
          const produced = outputs.map((output) => output.id);
          const history = this.#runtime.history.entry(job, 'handled', { event, produced });
          const inserts = this.#inserts(routed);
          await this.#sent(inserts, routed, batch.finish(scope, { job, inserts, history }));
        } catch (error) {
          if (error instanceof BatchRolledBackError) {
            return this.#settlement.handBack(registration, job, event, error, 'batch rolled back');
          }
          const stopping = error instanceof BrokerStoppingError;
          if (!stopping && !(error instanceof HandlerTimeoutError)) {
            await scope.rollback();
            return this.#settlement.failure(registration, job, event, error);
          }
          // Settled at once (handed back, or failed with the library's record); the abort already
          // rolled the job's writes back, with its locks. The handler keeps its slot until it returns,
          // as after pg-boss's own abort (docs/design.md, "Handler timeout" and "Stopping").
          await scope.rollback();
          const failed = stopping
            ? await this.#settlement.handBack(registration, job, event, error, 'broker stopped')
            : await this.#settlement.failure(registration, job, event, error);
          await delivery.then(noop, noop);
          return failed;
        }
        metrics.processed(job.name);
        this.#afterCommit(registration, event, unroutable);
        // A subject-limited queue may hold the subject's next job back until now, and pg-boss sends
        // no NOTIFY then: wake this process's fetch loop (docs/design.md, "Subject concurrency").
        if (subjectConcurrencyOf(registration) > 0 && registration.workerId) {
          boss.notifyWorker(registration.workerId);
        }
        return { id: job.id, status: 'completed' };
      },
      SpanKind.CONSUMER,
      parent,
    );
  }

  /** Runs the handler or listener; returns the events to enqueue. */
  async #deliver(registration: Registration, event: ArvoEvent): Promise<ArvoEvent[]> {
    if (registration.handler) {
      const result = await registration.handler!.execute(event, { inheritFrom: 'CONTEXT' });
      const events = Array.isArray(result) ? result : result?.events;
      if (!Array.isArray(events)) {
        throw new InvalidEventError(
          `Handler ${registration.queue} returned neither ArvoEvent[] nor { events }`,
        );
      }
      return events;
    }
    if (registration.listener) await registration.listener(event);
    else if (!this.#replies.isAwaited(registration.queue, event)) {
      throw new UnclaimedReplyError(registration.queue, event.id);
    }
    return [];
  }

  /** The pg-boss jobs of `routed`, by destination queue (the batch inserts each queue's in one statement). */
  #inserts(routed: RoutedOutput[]): Map<string, JobInsert[]> {
    const byQueue = new Map<string, JobInsert[]>();
    for (const entry of routed) {
      // Unroutable events are kept like dead letters, for deadLetterRetentionSeconds (pg-boss's retention).
      const jobs = byQueue.get(entry.queue) ?? [];
      jobs.push(this.#queues.jobInsert(entry.stored, entry.queue));
      byQueue.set(entry.queue, jobs);
    }
    return byQueue;
  }

  /**
   * Waits for `committed`, in one producer span per destination queue of `inserts` (a send ends when
   * the batch's commit makes its jobs fetchable).
   */
  async #sent(
    inserts: Map<string, JobInsert[]>,
    routed: RoutedOutput[],
    committed: Promise<void>,
  ): Promise<void> {
    if (inserts.size === 0) return committed;
    await Promise.all(
      [...inserts].map(([queue, jobs]) =>
        withSpan(
          this.#runtime.options.telemetry,
          `${queue} send`,
          {
            ...messagingAttributes(
              'send',
              queue,
              jobs[0]!.id!,
              routed.find((entry) => entry.queue === queue)!.stored,
            ),
            'messaging.batch.message_count': jobs.length,
          },
          () => committed,
          SpanKind.PRODUCER,
          undefined,
        ),
      ),
    );
  }

  #afterCommit(registration: Registration, event: ArvoEvent, unroutable: RoutedOutput[]): void {
    if (registration.kind === 'completion') this.#replies.deliver(registration.queue, event);
    for (const entry of unroutable) {
      writeLog(
        this.#runtime.logger(),
        'warn',
        'arvo-postgres broker: no queue for event destination; kept as unroutable',
        {
          eventId: entry.stored.id,
          type: entry.stored.type,
          to: entry.event.to,
          emittedBy: registration.queue,
        },
      );
      for (const listener of this.#notFoundListeners) {
        Promise.resolve()
          .then(() =>
            listener(entry.event, {
              destination: entry.event.to,
              emittedBy: registration.queue,
              keptIn: this.#runtime.options.unroutableQueue,
            }),
          )
          .catch((error) => this.#logCallbackError(error));
      }
    }
  }

  #logCallbackError(error: unknown): void {
    writeLog(this.#runtime.logger(), 'warn', 'arvo-postgres broker: a settle callback or listener failed', {
      error: describeError(error),
    });
  }
}

function noop(): void {}

/**
 * `delivery`, or a {@link HandlerTimeoutError} shortly before pg-boss's own timeout of the job
 * (`expireInSeconds` from the batch's start) would fail it with a record of pg-boss's, or a
 * {@link BrokerStoppingError} once `stopping` aborts; either also aborts `expiry`, so the job's
 * transaction takes no further statement from the handler. The caller then rolls back and settles
 * the attempt itself; pg-boss's later fail of the same attempt is fenced out.
 */
async function withinDeadlines<T>(
  delivery: Promise<T>,
  job: FetchedJob,
  expiry: AbortController,
  stopping: AbortSignal,
): Promise<T> {
  const expireMs = job.expireInSeconds * 1000;
  const leadMs = Math.min(1000, expireMs / 10);
  let timer: NodeJS.Timeout | undefined;
  let onStop = noop;
  const interrupted = new Promise<never>((_, reject) => {
    const interrupt = (error: Error) => {
      expiry.abort(error);
      reject(error);
    };
    timer = setTimeout(
      () => interrupt(new HandlerTimeoutError(job.name, String(job.data?.id), job.expireInSeconds)),
      expireMs - leadMs,
    );
    onStop = () => interrupt(new BrokerStoppingError(job.name, job.id));
    if (stopping.aborted) onStop();
    else stopping.addEventListener('abort', onStop, { once: true });
  });
  try {
    return await Promise.race([delivery, interrupted]);
  } finally {
    clearTimeout(timer);
    stopping.removeEventListener('abort', onStop);
  }
}

/** Waits until `promises` settle or `ms` pass; true when they all settled in time. */
export async function settleWithin(promises: Promise<unknown>[], ms: number): Promise<boolean> {
  if (promises.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    Promise.allSettled(promises).then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]);
  clearTimeout(timer);
  return settled;
}
