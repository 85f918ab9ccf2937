import { SpanKind } from '@opentelemetry/api';
import type { ArvoEvent } from 'arvo-core';
import type pg from 'pg';
import { type JobInsert, type JobResult, type JobWithMetadata, PgBoss } from 'pg-boss';
import { InvalidOptionError } from '../shared/errors';
import { consoleLogger, type Logger, loggerOption, writeLog } from '../shared/logger';
import { expectObject, integerOption, MAX_TIMER_MS } from '../shared/options';
import { type PeriodicTask, startPeriodic } from '../shared/periodic';
import { closePool, type ManagedPool, openPool } from '../shared/pool';
import { describeError, redactSecrets, redactValue } from '../shared/redact';
import { warnIfNoContextManager, withSpan } from '../shared/telemetry';
import { type Queryable, readDatabaseId, runInAmbientTransaction } from '../shared/transaction';
import { CircuitBreaker } from './circuit-breaker';
import {
  type DeadLetter,
  type DeadLetterFilter,
  DeadLetters,
  failureHistory,
  type JobFailureRecord,
} from './dead-letters';
import {
  BrokerNotStartedError,
  ConcurrentResolveError,
  DatabaseUnavailableError,
  DuplicateRegistrationError,
  databaseUnavailable,
  HandlerTimeoutError,
  InternalQueueError,
  InvalidEventError,
  isConnectionFailure,
  pgBossError,
  ResolveTimeoutError,
  StateOutsideBrokerTransactionError,
  UnclaimedReplyError,
  UnroutableEventError,
} from './errors';
import {
  decodeEvent,
  encodeEvent,
  eventDomain,
  jobIdForEvent,
  nameBasedUuid,
  type StoredEvent,
  serializeEvent,
} from './event-codec';
import { JobTransaction } from './job-transaction';
import { BrokerMetrics, type BrokerQueueStats, queryQueueStats } from './metrics';
import {
  type BrokerQueueOptions,
  type BrokerWorkerOptions,
  type PostgresEventBrokerOptions,
  queueNameOption,
  type ResolvedBrokerOptions,
  type ResolvedQueueOptions,
  type ResolvedWorkerOptions,
  refuseRecreateQueue,
  resolveBrokerOptions,
  resolveQueueOptions,
  resolveWorkerOptions,
} from './options';
import { actionFor, classifyFailure } from './policy';
import { deadLetterExpiredJobs } from './retention';
import { deadLetterAttemptsSql, existingQueuesSql, OUT_OF_REACH_RETENTION_SECONDS } from './sql';
import { contextFromTraceHeaders, messagingAttributes, traceHeadersOf } from './tracing';
import { UnsettledAttempts } from './unsettled';

/**
 * An Arvo event handler: arvo 2.x (`execute` resolves to `ArvoEvent[]`) or 3.x (`{ events }`).
 * `source` names the handler's queue.
 */
export interface ArvoEventHandlerLike {
  readonly source: string;
  /** An orchestrator's machine memory (arvo's orchestrators expose it): checked by `register`. */
  readonly memory?: unknown;
  execute(
    event: ArvoEvent,
    opentelemetry?: { inheritFrom: 'EVENT' | 'CONTEXT' },
  ): Promise<ArvoEvent[] | { events: ArvoEvent[] }>;
}

/** Options of `register` and `onWorkflowComplete`, over the broker's `defaults`. */
export interface RegisterOptions {
  queue?: BrokerQueueOptions;
  worker?: BrokerWorkerOptions;
  /**
   * Accept an orchestrator whose `memory` cannot write through the job's transaction (a
   * `PostgresMachineMemory` on another database, or any other memory). Its state then commits
   * before its outputs, and a crash between the two commits stalls that workflow for good: the
   * redelivered event meets the advanced state and emits nothing. Default false: `register`
   * refuses such an orchestrator with {@link StateOutsideBrokerTransactionError}.
   */
  allowStateOutsideBrokerTransaction?: boolean;
  /**
   * `@arvo-tools/postgres`'s option, refused when `true` ({@link InvalidOptionError}): recreating a
   * queue deletes the jobs waiting in it. Registering again with changed options updates the queue.
   */
  recreateQueue?: false;
}

/** Receives events: workflow completions, domained events. Throwing makes the broker retry the event. */
export type BrokerEventListener = (event: ArvoEvent) => void | Promise<void>;

/** Details passed to `onHandlerNotFound` listeners. */
export interface HandlerNotFoundDetails {
  /** The `to` no queue exists for (null when the event had none). */
  destination: string | null;
  /** The queue whose handler emitted the event. */
  emittedBy: string;
  /** The queue the event is kept in. */
  keptIn: string;
}

export type HandlerNotFoundListener = (
  event: ArvoEvent,
  details: HandlerNotFoundDetails,
) => void | Promise<void>;

type RegistrationKind = 'handler' | 'completion' | 'domained';

interface Registration {
  kind: RegistrationKind;
  queue: string;
  handler?: ArvoEventHandlerLike;
  allowStateOutsideBrokerTransaction?: boolean;
  listener?: BrokerEventListener;
  queueOptions: ResolvedQueueOptions;
  workerOptions: ResolvedWorkerOptions;
  workerId?: string;
  ready?: Promise<void>;
}

interface ResolveWaiter {
  resolve(event: ArvoEvent): void;
  reject(error: unknown): void;
}

/** An event to enqueue: `json` holds its top-level fields, which its job stores as they are. */
interface OutgoingEvent {
  event: ArvoEvent;
  json: StoredEvent;
}

interface RoutedEvent extends OutgoingEvent {
  queue: string;
  unroutable: boolean;
  /** Addressed to an internal queue (kept as unroutable instead). */
  internal: boolean;
}

type BrokerState = 'new' | 'starting' | 'started' | 'stopping' | 'stopped';

const DEFAULT_STOP_TIMEOUT_MS = 30_000;

/**
 * The durable Arvo event broker on PostgreSQL (pg-boss 12, composed, not extended).
 *
 * One pg-boss queue per handler `source`; every event is routed by `to` to the queue of that name,
 * wherever in the database it was registered (else to the unroutable queue), or, with a non-null
 * `domain`, to the durable domained queue.
 *
 * **One transaction per handled event.** pg-boss workers fetch batches (`perJobResults`), and each
 * job of a batch gets a transaction of its own (not pg-boss's `transactional` worker, which would
 * share one transaction across the batch so that one failing event would roll back its neighbours).
 * The transaction is opened lazily on the first statement and exposed as the ambient transaction
 * while `handler.execute` runs; a {@link PostgresMachineMemory} of the same database writes its
 * state through it. After the handler returns, its outputs are inserted (one statement per
 * destination queue) and the job is completed, fenced to the attempt that was fetched, through the
 * same transaction, which then commits; `onSettled` callbacks (the memory's deferred unlock) run
 * after commit or rollback. Consequences:
 * - memory in the same database: state, outputs and acknowledgement commit together or not at all;
 *   a crash, a failed insert, or a claim lost to `expireInSeconds`/`stop()` rolls all of it back and
 *   the event is delivered again;
 * - memory elsewhere (another database, or anything the handler does outside the transaction):
 *   those effects commit on their own before the outputs. If the outputs then fail the event is
 *   redelivered, and whatever the handler does on a redelivery decides the outcome (an
 *   orchestrator that already consumed the event emits nothing again);
 * - listeners (`onWorkflowComplete`, `onDomainedEvent`) run before the commit: at-least-once.
 *
 * **Errors** follow {@link classifyFailure}: violations of contract/config (and execution, by
 * default) are dead-lettered at once, other errors retried with backoff and then dead-lettered.
 * **Lock contention** (`LOCK_UNACQUIRED`) costs no retry: the job is completed and replaced by a
 * copy starting 50–250 ms later (same transaction, remaining retry budget, id derived from the
 * job's), and the local worker is woken when it comes due. Orchestrator queues (`arvo.orc.*`) also
 * fetch one job per subject at a time by default (`worker.subjectConcurrency`), so replies to one
 * workflow mostly wait in the queue instead of contending at all.
 */
export class PostgresEventBroker {
  readonly #options: ResolvedBrokerOptions;
  #logger: Logger;
  #state: BrokerState = 'new';
  #boss: PgBoss | undefined;
  #pool: ManagedPool | undefined;
  #databaseId = '';
  readonly #registrations = new Map<string, Registration>();
  readonly #knownQueues = new Set<string>();
  /** Queues no event may be addressed to: dead-letter (anyone's), unroutable, domained. */
  readonly #internalQueues = new Set<string>();
  readonly #deadLetterQueues = new Set<string>();
  readonly #notFoundListeners: HandlerNotFoundListener[] = [];
  /** The `resolve()` waiting per source and subject (one at most: replies carry only the subject). */
  readonly #waiters = new Map<string, ResolveWaiter>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #startPromise: Promise<void> | undefined;
  #deadLetters: DeadLetters | undefined;
  readonly #metrics = new BrokerMetrics(() => this.getStats());
  /** Failed attempts whose settle could not reach PostgreSQL, retried until it is back. */
  readonly #unsettled = new UnsettledAttempts(() => this.#logger);
  /** Dead-letters events that waited past their queue's retention (see `retention.ts`). */
  #expirySweep: PeriodicTask | undefined;
  /** Bounds `dispatch` while PostgreSQL is down: fails fast instead of hanging. */
  readonly #dispatchBreaker: CircuitBreaker;

  constructor(options: PostgresEventBrokerOptions) {
    this.#options = resolveBrokerOptions(options);
    this.#logger = this.#options.logger ?? consoleLogger;
    this.#dispatchBreaker = new CircuitBreaker(this.#options.circuitBreaker);
  }

  /** Names of the queues this broker serves (handlers, completion listeners, the domained queue). */
  get queues(): string[] {
    return [...this.#registrations.keys()];
  }

  /** Replaces the logger (console-like or pino-like). */
  setLogger(logger: Logger): void {
    this.#logger = loggerOption(logger, 'logger');
  }

  /**
   * Connects, installs/migrates pg-boss's schema, creates the dead-letter / unroutable / domained
   * queues and every registered queue, and starts the workers. Throws {@link DatabaseUnavailableError}
   * when PostgreSQL cannot be reached.
   */
  start(): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      return Promise.reject(new BrokerNotStartedError('start a stopped broker (create a new one)'));
    }
    this.#startPromise ??= this.#start().catch(async (error) => {
      this.#state = 'stopped';
      await this.#boss?.stop({ graceful: false, close: true }).catch(() => {});
      if (this.#pool) await closePool(this.#pool).catch(() => {});
      // stop() returns early on a stopped broker: release the global meter's hold on this one here.
      this.#metrics.close();
      throw error;
    });
    return this.#startPromise;
  }

  async #start(): Promise<void> {
    this.#state = 'starting';
    const options = this.#options;
    this.#internalQueues.add(options.unroutableQueue).add(options.domainedQueue);
    this.#pool = openPool(options.connection, this.#logger);
    try {
      this.#databaseId = await readDatabaseId(this.#pool.pool);
    } catch (error) {
      throw databaseUnavailable('connect', error);
    }
    this.#deadLetters = new DeadLetters({
      pool: this.#pool.pool,
      schema: options.schema,
      deadLetterQueues: () => this.#deadLetterQueueNames(),
    });
    const boss = new PgBoss({
      ...pgBossConnection(options, this.#pool.pool),
      schema: options.schema,
      useListenNotify: true,
      supervise: true,
      migrate: options.migrate,
      maintenanceIntervalSeconds: options.maintenanceIntervalSeconds,
      // The retention sweep runs inside the supervise pass, so that pass must be at least as frequent.
      superviseIntervalSeconds: Math.min(60, options.maintenanceIntervalSeconds),
      // Jobs of a crashed worker are only failed (and retried) by the monitor pass after their
      // expireInSeconds; pg-boss runs it once a minute by default, so keep it as frequent as supervise.
      monitorIntervalSeconds: Math.min(60, options.maintenanceIntervalSeconds),
      openTelemetry: { enabled: false },
      ...(options.instanceName ? { instanceName: options.instanceName } : {}),
    });
    // Without an `error` listener Node throws on emit('error') and the process dies.
    boss.on('error', (emitted) => {
      // pg-boss emits worker errors as plain copies (`{ ...error, message, stack, queue, worker }`).
      const { error, context } = pgBossError(emitted);
      const description = describeError(error);
      writeLog(this.#logger, 'error', `arvo-postgres broker: pg-boss error: ${description.message}`, {
        error: description,
        ...context,
      });
    });
    boss.on('warning', (warning) =>
      writeLog(this.#logger, 'warn', `arvo-postgres broker: ${redactSecrets(String(warning?.message))}`, {
        data: redactValue(warning?.data),
      }),
    );
    this.#boss = boss;
    try {
      await boss.start();
    } catch (error) {
      throw isConnectionFailure(error) ? databaseUnavailable('start pg-boss', error) : error;
    }
    const internal = {
      retentionSeconds: options.deadLetterRetentionSeconds,
      deleteAfterSeconds: options.deadLetterRetentionSeconds,
    };
    await this.#createDeadLetterQueue(options.deadLetterQueue);
    await this.#upsertQueue(options.unroutableQueue, { ...internal, notify: false });
    await this.#createDeadLetterQueue(options.queue.deadLetter);
    await this.#upsertQueue(options.domainedQueue, {
      ...internal,
      ...retryOptions(options.worker),
      deadLetter: options.queue.deadLetter,
      notify: true,
    });
    this.#state = 'started';
    this.#expirySweep = startPeriodic(
      options.maintenanceIntervalSeconds * 1000,
      () => deadLetterExpiredJobs(this.#pool!.pool, options.schema),
      this.#logger,
      'arvo-postgres broker: the retention sweep (expired events to the dead-letter queue) failed; retried next interval',
    );
    await Promise.all([...this.#registrations.values()].map((registration) => this.#activate(registration)));
    writeLog(this.#logger, 'info', 'arvo-postgres broker started', { queues: this.queues });
    warnIfNoContextManager(this.#logger);
  }

  /**
   * Registers `handler` on the queue named `handler.source` (created if missing; changed options
   * update an existing queue and never delete its jobs). Before `start()` it is activated by `start`.
   * Throws {@link DuplicateRegistrationError} when that source is already registered here.
   */
  async register(handler: ArvoEventHandlerLike, options: RegisterOptions = {}): Promise<void> {
    if (typeof handler !== 'object' || handler === null || typeof handler.execute !== 'function') {
      throw new InvalidOptionError('handler', 'expected an Arvo event handler (with `source` and `execute`)');
    }
    const queue = queueNameOption(handler.source, 'handler.source');
    const allowed = options?.allowStateOutsideBrokerTransaction;
    if (allowed !== undefined && typeof allowed !== 'boolean') {
      throw new InvalidOptionError('allowStateOutsideBrokerTransaction', 'expected a boolean');
    }
    await this.#addRegistration({
      kind: 'handler',
      queue,
      handler,
      allowStateOutsideBrokerTransaction: allowed ?? false,
      ...this.#resolveRegisterOptions(options),
    });
  }

  /**
   * Delivers the events addressed to the initiator `source` (workflow completions) to `listener`.
   * A listener that throws gets the event again (retry with backoff, then dead-letter).
   */
  async onWorkflowComplete(params: {
    source: string;
    listener: BrokerEventListener;
    options?: RegisterOptions;
  }): Promise<void> {
    if (typeof params?.listener !== 'function') {
      throw new InvalidOptionError('listener', 'onWorkflowComplete expects { source, listener: function }');
    }
    const queue = queueNameOption(params.source, 'source');
    const existing = this.#registrations.get(queue);
    if (existing?.kind === 'completion' && !existing.listener) {
      // Created implicitly by resolve(): adopt it. Its queue and worker already run with the
      // defaults, so options given now could not take effect: refuse them rather than ignore them.
      if (params.options !== undefined) {
        throw new InvalidOptionError(
          'options',
          `the completion queue ${JSON.stringify(queue)} was created by resolve() with the defaults; call onWorkflowComplete before resolve() to give it options`,
        );
      }
      existing.listener = params.listener;
      return;
    }
    await this.#addRegistration({
      kind: 'completion',
      queue,
      listener: params.listener,
      ...this.#resolveRegisterOptions(params.options ?? {}),
    });
  }

  /**
   * Receives events with a non-null `domain` (arvo 3), which wait durably in the domained queue until
   * a listener takes them. A listener that throws gets the event again. A second call replaces the listener.
   */
  async onDomainedEvent(listener: BrokerEventListener): Promise<void> {
    if (typeof listener !== 'function') throw new InvalidOptionError('listener', 'expected a function');
    const queue = this.#options.domainedQueue;
    const existing = this.#registrations.get(queue);
    if (existing) {
      existing.listener = listener;
      return;
    }
    await this.#addRegistration({
      kind: 'domained',
      queue,
      listener,
      // As start() creates it: kept for deadLetterRetentionSeconds, however it was registered last.
      queueOptions: {
        ...this.#options.queue,
        retentionSeconds: this.#options.deadLetterRetentionSeconds,
        deleteAfterSeconds: this.#options.deadLetterRetentionSeconds,
      },
      workerOptions: this.#options.worker,
    });
  }

  /** Called (after commit) for every handler output whose `to` has no queue; the event is kept in the unroutable queue. */
  onHandlerNotFound(listener: HandlerNotFoundListener): void {
    if (typeof listener !== 'function') throw new InvalidOptionError('listener', 'expected a function');
    this.#notFoundListeners.push(listener);
  }

  /**
   * Validates and enqueues `event` on the queue named by its `to` (or the domained queue) and returns
   * the job id. The id derives from `event.id`, so dispatching the same event twice enqueues it once.
   * While PostgreSQL is unreachable it throws {@link DatabaseUnavailableError} within
   * `circuitBreaker.callTimeoutMs`, and at once while the circuit is open; retrying the same event is safe.
   */
  async dispatch(event: ArvoEvent): Promise<string> {
    this.#assertStarted('dispatch');
    return this.#dispatchStored(encodeEvent(event, this.#options.maxPayloadBytes).json);
  }

  /** `dispatch` of an event already encoded (`json`, its stored form). */
  #dispatchStored(json: StoredEvent): Promise<string> {
    const decoded = decodeEvent(json);
    // One guarded call: routing may ask the database too, and its success must not reset the count.
    return this.#dispatchBreaker.run('dispatch', () => this.#send(decoded, json));
  }

  /** Routes and enqueues a validated event (see `dispatch`); returns the job id. */
  async #send(decoded: ArvoEvent, json: StoredEvent): Promise<string> {
    const [routed] = await this.#route([{ event: decoded, json }], this.#pool!.pool);
    if (routed?.internal) throw new InternalQueueError(json.id, decoded.to!);
    if (!routed || routed.unroutable) throw new UnroutableEventError(json.id, decoded.to);
    const jobId = jobIdForEvent(json.id);
    const parent = contextFromTraceHeaders(json.traceparent, json.tracestate);
    await withSpan(
      this.#options.telemetry,
      `${routed.queue} send`,
      messagingAttributes('send', routed.queue, jobId, json),
      async (span) => {
        const stored = { ...json };
        // An event without trace headers continues the producer span's trace from here on.
        if (!stored.traceparent && span) Object.assign(stored, traceHeadersOf(span));
        await this.#boss!.insert(routed.queue, [jobInsertFor(stored, true)]);
      },
      SpanKind.PRODUCER,
      parent,
    );
    return jobId;
  }

  /**
   * Dispatches `event` and resolves with the event that comes back to `event.source` with the same
   * subject (Arvo's request/response test pattern). A completion queue for `event.source` is created
   * when none is registered; its events then also reach no other listener. Rejects with
   * {@link ResolveTimeoutError} after `timeoutMs` (default 30 s). Replies are matched by subject
   * alone (they carry nothing else of the request), so a second `resolve()` on a source and subject
   * one already waits on is refused with {@link ConcurrentResolveError}.
   */
  async resolve(event: ArvoEvent, options: { timeoutMs?: number } = {}): Promise<ArvoEvent> {
    this.#assertStarted('resolve');
    const timeoutMs = integerOption(options?.timeoutMs, 'timeoutMs', { min: 1, max: MAX_TIMER_MS }, 30_000);
    const { json } = encodeEvent(event, this.#options.maxPayloadBytes);
    const source = queueNameOption(event.source, 'event.source');
    const registration = this.#registrations.get(source);
    if (registration && registration.kind !== 'completion') {
      throw new InvalidEventError(
        `resolve: event.source ${JSON.stringify(source)} is a handler's queue on this broker; replies to it would be handled, not returned`,
      );
    }
    if (registration) {
      // Another resolve() may still be creating the queue the reply has to find.
      await registration.ready;
    } else {
      await this.#addRegistration({
        kind: 'completion',
        queue: source,
        queueOptions: this.#options.queue,
        workerOptions: this.#options.worker,
      });
    }
    const key = waiterKey(source, event.subject);
    if (this.#waiters.has(key)) throw new ConcurrentResolveError(source, event.subject);
    let waiter!: ResolveWaiter;
    const reply = new Promise<ArvoEvent>((resolve, reject) => {
      waiter = { resolve, reject };
    });
    // Rejected by stop() or the timer possibly while dispatch() is still running: never unhandled.
    reply.catch(() => {});
    this.#waiters.set(key, waiter);
    const timer = setTimeout(() => waiter.reject(new ResolveTimeoutError(event.id, timeoutMs)), timeoutMs);
    try {
      await this.#dispatchStored(json);
      return await reply;
    } finally {
      clearTimeout(timer);
      this.#waiters.delete(key);
    }
  }

  /**
   * Exact counts (one SQL statement over pg-boss's job table, not its once-a-minute cache). By
   * default for every queue this broker serves, the domained and unroutable queues and the
   * dead-letter queues; `queues` names other queues instead, `'all'` reports every queue in the
   * database (e.g. for an operations CLI that registers nothing).
   */
  async getStats(options: { queues?: string[] | 'all' } = {}): Promise<BrokerQueueStats[]> {
    this.#assertStarted('getStats');
    const given = expectObject(options, 'options').queues;
    let names: string[];
    if (given === undefined || given === 'all') {
      names =
        given === 'all'
          ? []
          : [
              ...new Set([
                ...this.queues,
                this.#options.domainedQueue,
                this.#options.unroutableQueue,
                ...this.#deadLetterQueues,
              ]),
            ];
    } else if (Array.isArray(given)) {
      names = given.map((name, index) => queueNameOption(name, `queues[${index}]`));
    } else {
      throw new InvalidOptionError('queues', "expected an array of queue names or 'all'");
    }
    return queryQueueStats(
      this.#pool!.pool,
      this.#options.schema,
      names,
      given === 'all',
      this.#deadLetterQueueNames(),
    );
  }

  /**
   * Metrics in Prometheus text exposition format: exact queue gauges (from `getStats()`) and this
   * process's counters and handler duration histogram (see {@link BrokerMetrics}; the same metrics
   * also go to OpenTelemetry's `metrics.getMeter('arvo-postgres')`).
   */
  async getMetrics(): Promise<string> {
    return this.#metrics.prometheus(await this.getStats());
  }

  /**
   * Dead letters of every dead-letter queue in the database: `list`, `show`, `replay` (keeping the
   * failure history), `purge`. See {@link DeadLetters}.
   */
  get deadLetters(): DeadLetters {
    this.#assertStarted('deadLetters');
    return this.#deadLetters!;
  }

  /** Dead letters waiting in the broker's dead-letter queue (or `filter.queue`), oldest first. */
  async listDeadLetters(filter: DeadLetterFilter = {}): Promise<DeadLetter[]> {
    const given = expectObject(filter, 'filter') as DeadLetterFilter;
    return this.deadLetters.list({ ...given, queue: given.queue ?? this.#options.deadLetterQueue });
  }

  /**
   * Moves dead letters of the broker's dead-letter queue (or `filter.queue`) back to the queues they
   * failed on (new job id, fresh retry budget, failure history kept), e.g. after fixing a handler;
   * `ids` limits it to those. Returns how many were moved.
   */
  async redriveDeadLetters(filter: DeadLetterFilter & { ids?: string[] } = {}): Promise<number> {
    const { ids, ...given } = expectObject(filter, 'filter') as DeadLetterFilter & { ids?: string[] };
    const replayed = await this.deadLetters.replay({
      ...given,
      queue: given.queue ?? this.#options.deadLetterQueue,
      ...(ids === undefined ? { all: true } : { ids }),
    });
    return replayed.length;
  }

  /**
   * Graceful shutdown: stops fetching, lets handlers in flight finish for up to `timeoutMs`
   * (default 30 s), then fails the jobs still held (they are retried) and aborts their
   * transactions, and closes the connections.
   */
  async stop(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    if (this.#state === 'starting') await this.#startPromise?.catch(() => {});
    this.#state = 'stopping';
    // pg-boss waits at least one second.
    const timeoutMs = Math.max(
      1000,
      integerOption(options?.timeoutMs, 'timeoutMs', { min: 0, max: MAX_TIMER_MS }, DEFAULT_STOP_TIMEOUT_MS),
    );
    for (const waiter of this.#waiters.values()) {
      waiter.reject(new BrokerNotStartedError('resolve (the broker stopped)'));
    }
    this.#waiters.clear();
    await this.#expirySweep?.stop();
    try {
      await this.#boss?.stop({ graceful: true, timeout: timeoutMs, close: true });
    } finally {
      // pg-boss has failed and aborted what was still running; give those handlers a moment to
      // roll back before the pool closes under them.
      const settled = await settleWithin([...this.#inFlight], 2000);
      if (!settled) {
        writeLog(
          this.#logger,
          'warn',
          'arvo-postgres broker: handlers still running after stop(); their work was rolled back',
        );
      }
      await this.#unsettled.stop();
      // A handler that never returns would keep its connection checked out and pool.end() waiting.
      if (this.#pool) await settleWithin([closePool(this.#pool).catch(() => {})], 5000);
      this.#metrics.close();
      this.#state = 'stopped';
    }
  }

  // ---------------------------------------------------------------- registration

  #resolveRegisterOptions(options: RegisterOptions): Pick<Registration, 'queueOptions' | 'workerOptions'> {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionError('options', 'expected an object');
    }
    refuseRecreateQueue(options as Record<string, unknown>);
    return {
      queueOptions: resolveQueueOptions(options.queue, 'queue', this.#options.queue),
      workerOptions: resolveWorkerOptions(options.worker, 'worker', this.#options.worker),
    };
  }

  async #addRegistration(registration: Registration): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') throw new BrokerNotStartedError('register');
    const reserved = [
      this.#options.unroutableQueue,
      ...this.#deadLetterQueues,
      this.#options.deadLetterQueue,
    ];
    if (registration.kind !== 'domained' && reserved.includes(registration.queue)) {
      throw new InvalidOptionError(
        'source',
        `${JSON.stringify(registration.queue)} is a dead-letter or unroutable queue of this broker`,
      );
    }
    if (this.#registrations.has(registration.queue)) throw new DuplicateRegistrationError(registration.queue);
    this.#registrations.set(registration.queue, registration);
    if (this.#state !== 'started') return;
    try {
      await this.#activate(registration);
    } catch (error) {
      // Not registered after all: the caller may fix the cause and register again.
      this.#registrations.delete(registration.queue);
      throw error;
    }
  }

  /** Creates/updates the queue and starts its worker (once). */
  #activate(registration: Registration): Promise<void> {
    registration.ready ??= (async () => {
      this.#assertStateJoinsTransaction(registration);
      const { queueOptions, workerOptions } = registration;
      await this.#createDeadLetterQueue(queueOptions.deadLetter);
      await this.#upsertQueue(
        registration.queue,
        {
          deadLetter: queueOptions.deadLetter,
          retentionSeconds: queueOptions.retentionSeconds,
          deleteAfterSeconds: queueOptions.deleteAfterSeconds,
          ...retryOptions(workerOptions),
          notify: true,
          ...(queueOptions.warningQueueSize ? { warningQueueSize: queueOptions.warningQueueSize } : {}),
        },
        { policy: queueOptions.policy, partition: queueOptions.partition },
      );
      registration.workerId = await this.#boss!.work<StoredEvent>(
        registration.queue,
        {
          batchSize: workerOptions.batchSize,
          localConcurrency: workerOptions.localConcurrency,
          pollingIntervalSeconds: workerOptions.pollingIntervalSeconds,
          notifyPollingIntervalSeconds: workerOptions.notifyPollingIntervalSeconds,
          // A full batch means more work is waiting: fetch again at once instead of sleeping.
          burstWhenBatchFull: workerOptions.batchSize > 1,
          includeMetadata: true,
          perJobResults: true,
          ...(subjectConcurrencyOf(registration) > 0
            ? { groupConcurrency: subjectConcurrencyOf(registration) }
            : {}),
        },
        (jobs) =>
          this.#track(
            Promise.all(
              (jobs as JobWithMetadata<StoredEvent>[]).map((job) =>
                this.#metrics.timeHandler(job.name, () => this.#processJob(registration, job)),
              ),
            ),
          ),
      );
    })();
    return registration.ready;
  }

  /**
   * Refuses an orchestrator whose memory cannot join the job's transaction (see
   * `allowStateOutsideBrokerTransaction`): a `PostgresMachineMemory` joins it exactly when it is on
   * the broker's database (same `databaseId`); any other memory never does.
   */
  #assertStateJoinsTransaction(registration: Registration): void {
    const memory = registration.handler?.memory;
    if (memory === undefined || memory === null || registration.allowStateOutsideBrokerTransaction) return;
    const databaseId = (memory as { databaseId?: unknown }).databaseId;
    if (typeof databaseId !== 'string') {
      throw new StateOutsideBrokerTransactionError(
        registration.queue,
        'in a memory that is not a PostgresMachineMemory',
      );
    }
    if (databaseId !== this.#databaseId) {
      throw new StateOutsideBrokerTransactionError(
        registration.queue,
        "in a PostgresMachineMemory on another database than the broker's",
      );
    }
  }

  /**
   * This broker's dead-letter queues (its default and every per-queue one it created): counted and
   * listed as dead-letter queues even when no queue names them any more, by stats and dead letters alike.
   */
  #deadLetterQueueNames(): string[] {
    return [...new Set([this.#options.deadLetterQueue, ...this.#deadLetterQueues])];
  }

  async #createDeadLetterQueue(name: string): Promise<void> {
    if (this.#deadLetterQueues.has(name)) return;
    await this.#upsertQueue(name, {
      retentionSeconds: this.#options.deadLetterRetentionSeconds,
      deleteAfterSeconds: this.#options.deadLetterRetentionSeconds,
      notify: false,
    });
    this.#deadLetterQueues.add(name);
    this.#internalQueues.add(name);
  }

  /** createQueue is ON CONFLICT DO NOTHING, so changed options are applied with updateQueue. */
  async #upsertQueue(
    name: string,
    options: Record<string, unknown>,
    fixed: { policy?: string; partition?: boolean } = {},
  ): Promise<void> {
    const boss = this.#boss!;
    const creation = Object.fromEntries(
      Object.entries({ ...options, ...fixed }).filter(([, value]) => value !== null),
    );
    await boss.createQueue(name, creation);
    await boss.updateQueue(name, options);
    this.#knownQueues.add(name);
  }

  // ---------------------------------------------------------------- routing

  /** Destination queue of each event: domained queue, an existing queue named `to`, or unroutable. */
  async #route(outgoing: OutgoingEvent[], db: Queryable): Promise<RoutedEvent[]> {
    const unknown = new Set<string>();
    for (const { event, json } of outgoing) {
      const to = event.to;
      if (eventDomain(json) === null && to && !this.#knownQueues.has(to) && !this.#internalQueues.has(to)) {
        unknown.add(to);
      }
    }
    if (unknown.size > 0) {
      // Queues may be registered by any process: ask the database, and remember what exists.
      const { rows } = await db.query(existingQueuesSql(this.#options.schema), [[...unknown]]);
      for (const row of rows) (row.dead_letter ? this.#internalQueues : this.#knownQueues).add(row.name);
    }
    return outgoing.map((entry) => {
      if (eventDomain(entry.json) !== null) {
        return { ...entry, queue: this.#options.domainedQueue, unroutable: false, internal: false };
      }
      const to = entry.event.to;
      const internal = to !== null && this.#internalQueues.has(to);
      if (to && !internal && this.#knownQueues.has(to)) {
        return { ...entry, queue: to, unroutable: false, internal };
      }
      return { ...entry, queue: this.#options.unroutableQueue, unroutable: true, internal };
    });
  }

  /** Inserts `routed` in one statement per destination queue, through `db` (the job's transaction). */
  async #enqueue(routed: RoutedEvent[], transaction: JobTransaction): Promise<void> {
    const byQueue = new Map<string, RoutedEvent[]>();
    for (const entry of routed) {
      const list = byQueue.get(entry.queue) ?? [];
      list.push(entry);
      byQueue.set(entry.queue, list);
    }
    for (const [queue, entries] of byQueue) {
      // Unroutable events are kept like dead letters, for deadLetterRetentionSeconds (pg-boss's retention).
      const jobs: JobInsert[] = entries.map((entry) =>
        jobInsertFor(entry.json, queue !== this.#options.unroutableQueue),
      );
      await withSpan(
        this.#options.telemetry,
        `${queue} send`,
        {
          ...messagingAttributes('send', queue, jobs[0]!.id!, entries[0]!.json),
          'messaging.batch.message_count': jobs.length,
        },
        () => this.#boss!.insert(queue, jobs, { db: transaction.db }),
        SpanKind.PRODUCER,
        undefined,
      );
    }
  }

  // ---------------------------------------------------------------- processing

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inFlight.add(promise);
    const forget = () => this.#inFlight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  async #processJob(registration: Registration, job: JobWithMetadata<StoredEvent>): Promise<JobResult> {
    let event: ArvoEvent;
    try {
      event = decodeEvent(job.data);
    } catch (error) {
      return this.#failure(registration, job, null, error);
    }
    const parent = contextFromTraceHeaders(event.traceparent, event.tracestate);
    return withSpan(
      this.#options.telemetry,
      `${job.name} process`,
      {
        ...messagingAttributes('process', job.name, job.id, event),
        'messaging.pgboss.retry_count': job.retryCount,
      },
      async () => {
        // Aborted by pg-boss (claim lost, stop) or by the broker's own expiry (see withinExpiry).
        const expiry = new AbortController();
        const transaction = new JobTransaction(
          this.#pool!.pool,
          this.#databaseId,
          AbortSignal.any([job.signal, expiry.signal]),
          (error) => this.#logCallbackError(error),
        );
        let unroutable: RoutedEvent[] = [];
        let outcome: JobResult;
        const delivery = runInAmbientTransaction(transaction, () => this.#deliver(registration, event));
        try {
          const outputs = await withinExpiry(delivery, job, expiry);
          const outgoing = outputs.map((output) => {
            const serialized = serializeEvent(output, this.#options.maxPayloadBytes);
            return { event: output, json: serialized.fields };
          });
          // Through the job's transaction: a second pool connection per job could starve the pool.
          const routed = await this.#route(outgoing, transaction);
          unroutable = routed.filter((entry) => entry.unroutable);
          await this.#enqueue(routed, transaction);
          const attempt = { id: job.id, retryCount: job.retryCount };
          let completion: unknown;
          if (transaction.started) {
            completion = await this.#boss!.complete(job.name, attempt, null, { db: transaction.db });
          } else {
            // Nothing was written for this job (a listener, a handler with no outputs): no transaction
            // to open, one fenced statement settles it. commit() first: it refuses an aborted job.
            await transaction.commit();
            completion = await this.#boss!.complete(job.name, attempt, null);
          }
          if ((completion as { affected?: number }).affected !== 1) {
            throw new Error(
              `job ${job.id} is no longer claimed by this worker (expired or stopped); rolled back`,
            );
          }
          if (transaction.started) await transaction.commit();
          outcome = { id: job.id, status: 'completed' };
        } catch (error) {
          if (!(error instanceof HandlerTimeoutError)) {
            await transaction.rollback();
            return this.#failure(registration, job, event, error);
          }
          // Settled at once with the library's record. The handler keeps its slot (as pg-boss holds a
          // worker whose handler overran) and its aborted transaction until it returns, as after
          // pg-boss's own abort: its next statement fails with this error, and the rollback (with the
          // memory's deferred unlock) follows its return.
          const failed = await this.#failure(registration, job, event, error);
          await delivery.then(noop, noop);
          await transaction.rollback();
          return failed;
        }
        this.#metrics.processed(job.name);
        this.#afterCommit(registration, event, unroutable);
        // A subject-limited queue may hold the subject's next job back until now, and pg-boss sends
        // no NOTIFY when a job becomes fetchable that way: wake this process's fetch loop. Always:
        // that job may come from another process, which only a query could tell, and a wake costs
        // nothing while the loop is busy (it only fetches again at once) and one fetch when idle.
        if (subjectConcurrencyOf(registration) > 0 && registration.workerId) {
          this.#boss?.notifyWorker(registration.workerId);
        }
        return outcome;
      },
      SpanKind.CONSUMER,
      parent,
    );
  }

  /** Runs the handler or listener; returns the events to enqueue. */
  async #deliver(registration: Registration, event: ArvoEvent): Promise<ArvoEvent[]> {
    if (registration.kind === 'handler') {
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
    else if (!this.#waiters.has(waiterKey(registration.queue, event.subject))) {
      throw new UnclaimedReplyError(registration.queue, event.id);
    }
    return [];
  }

  #afterCommit(registration: Registration, event: ArvoEvent, unroutable: RoutedEvent[]): void {
    if (registration.kind === 'completion') {
      const key = waiterKey(registration.queue, event.subject);
      this.#waiters.get(key)?.resolve(event);
    }
    for (const entry of unroutable) {
      writeLog(
        this.#logger,
        'warn',
        'arvo-postgres broker: no queue for event destination; kept as unroutable',
        {
          eventId: entry.json.id,
          type: entry.json.type,
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
              keptIn: this.#options.unroutableQueue,
            }),
          )
          .catch((error) => this.#logCallbackError(error));
      }
    }
  }

  /**
   * Applies the error policy (see `policy.ts`) and settles the job at once, on its own: a batch's
   * other jobs may still be running, and pg-boss would only settle `perJobResults` after all of them.
   * Returns pg-boss's disposition: `completed` once settled here (a fenced no-op for pg-boss), or
   * `failed` with the record when settling here failed (pg-boss then fails it, or its claim expires).
   */
  async #failure(
    registration: Registration,
    job: JobWithMetadata<StoredEvent>,
    event: ArvoEvent | null,
    error: unknown,
  ): Promise<JobResult> {
    const kind = classifyFailure(error);
    const action = actionFor(kind, this.#options.executionViolation);
    const record: JobFailureRecord = {
      kind,
      queue: job.name,
      attempt: job.retryCount + 1,
      eventId: event?.id ?? (typeof job.data?.id === 'string' ? job.data.id : null),
      eventType: event?.type ?? (typeof job.data?.type === 'string' ? job.data.type : null),
      error: describeError(error),
      failedAt: new Date().toISOString(),
      history: failureHistory(job.output),
    };
    try {
      if (action === 'reschedule') {
        await this.#reschedule(registration, job);
        this.#metrics.lockContention(job.name);
        writeLog(this.#logger, 'debug', 'arvo-postgres broker: lock contention, job rescheduled', {
          queue: job.name,
          jobId: job.id,
        });
        return { id: job.id, status: 'completed' };
      }
      const terminal = action === 'deadLetter' || job.retryCount >= job.retryLimit;
      writeLog(
        this.#logger,
        terminal ? 'error' : 'warn',
        terminal
          ? `arvo-postgres broker: job dead-lettered (${kind})`
          : `arvo-postgres broker: job failed, will be retried (${kind})`,
        {
          queue: job.name,
          jobId: job.id,
          attempt: record.attempt,
          error: { name: record.error.name, message: record.error.message },
        },
      );
      await this.#fail(job, record, action === 'deadLetter');
      this.#metrics.failed(job.name, kind, terminal);
      return { id: job.id, status: 'completed' };
    } catch (settleError) {
      const deadLetter = action === 'deadLetter';
      if (isConnectionFailure(settleError)) {
        // Retried here until PostgreSQL is back, instead of leaving the job active until it expires.
        this.#unsettled.add(job.id, () => this.#fail(job, record, deadLetter));
      }
      writeLog(
        this.#logger,
        'warn',
        deadLetter
          ? 'arvo-postgres broker: could not dead-letter a failed job; pg-boss will dead-letter it'
          : 'arvo-postgres broker: could not settle a failed job; pg-boss will retry it',
        {
          queue: job.name,
          jobId: job.id,
          error: describeError(settleError),
        },
      );
      // pg-boss settles the batch's results afterwards (fenced the same way): keep the policy.
      return { id: job.id, status: deadLetter ? 'deadletter' : 'failed', output: record };
    }
  }

  /**
   * Fails this attempt of `job` with `record` as its output, in one fenced statement: pg-boss retries
   * it with the queue's backoff, or, at the last attempt or with `now`, moves a copy to the
   * dead-letter queue. Throws when the attempt is no longer this worker's (expired or stopped).
   */
  async #fail(job: JobWithMetadata<StoredEvent>, record: JobFailureRecord, now: boolean): Promise<void> {
    let settled: number;
    if (now) {
      const attempts = [{ id: job.id, retry_count: job.retryCount, output: record }];
      const { rows } = await this.#pool!.pool.query(deadLetterAttemptsSql(this.#options.schema), [
        job.name,
        JSON.stringify(attempts),
      ]);
      settled = Number(rows[0]?.count);
    } else {
      const response = await this.#boss!.fail(job.name, { id: job.id, retryCount: job.retryCount }, record);
      settled = (response as { affected?: number }).affected ?? 0;
    }
    if (settled !== 1) {
      throw new Error(`job ${job.id} is no longer claimed by this worker (expired or stopped); not failed`);
    }
  }

  /**
   * Lock contention: another worker holds the workflow's lock, so this job is not failed (which
   * would cost a retry) but replaced, in one transaction, by a copy that starts after a short
   * jittered delay, and completed. The copy keeps the remaining retry budget and gets an id derived
   * from the job's, so a repeated attempt cannot create two copies. Delayed jobs send no NOTIFY,
   * so the local worker is woken when the copy comes due.
   */
  async #reschedule(registration: Registration, job: JobWithMetadata<StoredEvent>): Promise<void> {
    const { minDelayMs, maxDelayMs } = this.#options.lockContention;
    const delayMs = Math.round(minDelayMs + Math.random() * (maxDelayMs - minDelayMs));
    const transaction = new JobTransaction(this.#pool!.pool, this.#databaseId, job.signal);
    try {
      const copyId = nameBasedUuid(`arvo-reschedule:${job.id}`);
      await this.#boss!.insert(
        job.name,
        [
          {
            id: copyId,
            data: job.data,
            startAfter: `${delayMs / 1000} seconds`,
            ...(job.groupId ? { group: { id: job.groupId } } : {}),
            retryLimit: Math.max(0, job.retryLimit - job.retryCount),
            retentionSeconds: OUT_OF_REACH_RETENTION_SECONDS,
          },
        ],
        { db: transaction.db },
      );
      const completion = await this.#boss!.complete(
        job.name,
        { id: job.id, retryCount: job.retryCount },
        { rescheduledAs: copyId, reason: 'lock contention' },
        { db: transaction.db },
      );
      if ((completion as { affected?: number }).affected !== 1) {
        throw new Error(`job ${job.id} is no longer claimed by this worker; not rescheduled`);
      }
      await transaction.commit();
    } catch (error) {
      await transaction.rollback();
      throw error;
    }
    const workerId = registration.workerId;
    if (workerId) setTimeout(() => this.#boss?.notifyWorker(workerId), delayMs + 5).unref();
  }

  // ---------------------------------------------------------------- helpers

  #assertStarted(operation: string): void {
    if (this.#state !== 'started') throw new BrokerNotStartedError(operation);
  }

  #logCallbackError(error: unknown): void {
    writeLog(this.#logger, 'warn', 'arvo-postgres broker: a settle callback or listener failed', {
      error: describeError(error),
    });
  }
}

/**
 * The pg-boss job of an event (`json`, its fields; `data`, what the job stores): id from the event
 * id (idempotent enqueue), group = subject so a queue with `subjectConcurrency` can limit how many
 * jobs of one workflow run at once. With `expiresToDeadLetter` pg-boss's retention never deletes it
 * waiting: the broker's expiry sweep dead-letters it instead (see `retention.ts`).
 */
function jobInsertFor(json: StoredEvent, expiresToDeadLetter: boolean): JobInsert {
  return {
    id: jobIdForEvent(json.id),
    data: json,
    ...(json.subject ? { group: { id: json.subject } } : {}),
    ...(expiresToDeadLetter ? { retentionSeconds: OUT_OF_REACH_RETENTION_SECONDS } : {}),
  };
}

/**
 * Effective `subjectConcurrency`: as configured, else 1 for orchestrators (arvo's orchestrator
 * contracts are all typed `arvo.orc.<name>`, and an orchestrator locks per subject) and 0 otherwise.
 */
function subjectConcurrencyOf(registration: Registration): number {
  return (
    registration.workerOptions.subjectConcurrency ??
    (registration.kind === 'handler' && registration.queue.startsWith('arvo.orc.') ? 1 : 0)
  );
}

function waiterKey(source: string, subject: string): string {
  return `${source}\u0000${subject}`;
}

function retryOptions(worker: ResolvedWorkerOptions): Record<string, unknown> {
  return {
    retryLimit: worker.retryLimit,
    retryDelay: worker.retryDelay,
    retryBackoff: worker.retryBackoff,
    // pg-boss accepts a maximum only with backoff; null clears one set by an earlier registration.
    retryDelayMax: worker.retryBackoff ? worker.retryDelayMax : null,
    expireInSeconds: worker.expireInSeconds,
  };
}

/**
 * Connection settings for pg-boss's own pool. pg-boss needs a pool of its own: LISTEN/NOTIFY only
 * works with a pool it creates (a `db` adapter would have to reimplement its listener), so with an
 * external `pool` the same connection parameters (and timeouts) are reused for a small second pool.
 * The handlers' transactions always run on the broker's pool (shared with the memory when the same
 * pool is given).
 */
function pgBossConnection(options: ResolvedBrokerOptions, pool: pg.Pool): Record<string, unknown> {
  const source = (options.connection.config ??
    (pool as unknown as { options: pg.PoolConfig }).options) as pg.PoolConfig;
  const { connectionString, host, port, user, password, database, ssl } = source;
  // The timeouts too: a statement of pg-boss (an insert, a fetch) waiting on a lock must give up
  // after `statementTimeoutMillis` like every other statement of the library.
  const { connectionTimeoutMillis, statement_timeout } = source;
  const given = {
    connectionString,
    host,
    port,
    user,
    password,
    database,
    ssl,
    connectionTimeoutMillis,
    statement_timeout,
  };
  const config: Record<string, unknown> = Object.fromEntries(
    Object.entries(given).filter(([, value]) => value !== undefined),
  );
  config.max = options.pgBossPoolMax;
  config.application_name = `${source.application_name ?? 'arvo-postgres'}-pgboss`.slice(0, 63);
  return config;
}

function noop(): void {}

/**
 * `delivery`, or a {@link HandlerTimeoutError} (also aborting `expiry`) shortly before pg-boss's own timeout of the job
 * (`expireInSeconds` from the batch's start) would fail it with a record of pg-boss's. The caller
 * then rolls back and fails the attempt with the library's record (kind `timeout`); pg-boss's
 * later fail of the same attempt is fenced out.
 */
async function withinExpiry<T>(
  delivery: Promise<T>,
  job: JobWithMetadata<StoredEvent>,
  expiry: AbortController,
): Promise<T> {
  const expireMs = job.expireInSeconds * 1000;
  const leadMs = Math.min(1000, expireMs / 10);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new HandlerTimeoutError(job.name, String(job.data?.id), job.expireInSeconds);
      // The job's transaction takes no further statement from the handler, as after pg-boss's abort.
      expiry.abort(error);
      reject(error);
    }, expireMs - leadMs);
  });
  try {
    return await Promise.race([delivery, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `promises` settle or `ms` pass; true when they all settled in time. */
async function settleWithin(promises: Promise<unknown>[], ms: number): Promise<boolean> {
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
