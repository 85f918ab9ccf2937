import type { ArvoEvent } from 'arvo-core';
import { type Logger, loggerOption, writeLog } from '../shared/logger';
import { expectKnownKeys, expectObject } from '../shared/options';
import type { PeriodicTask } from '../shared/periodic';
import { closePool, type ManagedPool, openPool } from '../shared/pool';
import { warnIfNoContextManager } from '../shared/telemetry';
import { readDatabaseId } from '../shared/transaction';
import {
  adoptedCompletionOptions,
  filterOption,
  handlerOption,
  listenerOption,
  registerOptions,
  statsQueuesOption,
  stopOnSignalsOptions,
  stopTimeoutOption,
  timeoutMsOption,
} from './arguments';
import { CircuitBreaker } from './circuit-breaker';
import { Consumer } from './consumer';
import { DeadLetterAlerts, type DeadLetterListener } from './dead-letter-alerts';
import { type DeadLetter, type DeadLetterFilter, DeadLetters } from './dead-letters';
import { BrokerNotStartedError, databaseUnavailable } from './errors';
import { encodeEvent } from './event-codec';
import { type BrokerHealth, checkHealth } from './health';
import { HistoryRecorder } from './history';
import { BrokerMetrics } from './metrics';
import { type PostgresEventBrokerOptions, queueNameOption, resolveBrokerOptions } from './options';
import { PgBossClient } from './pgboss';
import { Producer } from './producer';
import { QueueControl } from './queue-control';
import { Queues } from './queues';
import { Registrations } from './registrations';
import { Replies } from './replies';
import { startExpirySweep } from './retention';
import { type ScheduledEvent, type ScheduleInfo, type ScheduleOptions, Schedules } from './schedules';
import { Settlement } from './settle';
import { type StopOnSignalsOptions, shutDown, stopOnSignals } from './shutdown';
import { type BrokerQueueStats, queryQueueStats } from './stats';
import type {
  ArvoEventHandlerLike,
  BrokerEventListener,
  BrokerRuntime,
  DispatchOptions,
  HandlerNotFoundListener,
  RegisterOptions,
  ResolvedBrokerOptions,
} from './types';
import { UnsettledAttempts } from './unsettled';

type BrokerState = 'new' | 'starting' | 'started' | 'stopping' | 'stopped';

/**
 * The durable Arvo event broker on PostgreSQL (pg-boss 12, composed): one queue per handler `source`, events
 * routed by `to` (else to the unroutable queue; with a `domain`, to the domained queue); each handled event
 * is one transaction with its memory's state write, its outputs and its completion; errors follow
 * {@link classifyFailure}. The reasoning: docs/design.md, "Broker".
 */
export class PostgresEventBroker {
  readonly #options: ResolvedBrokerOptions;
  #logger: Logger;
  #state: BrokerState = 'new';
  #startPromise: Promise<void> | undefined;
  #pool: ManagedPool | undefined;
  #boss: PgBossClient | undefined;
  #databaseId = '';
  readonly #registrations: Registrations;
  readonly #queues: Queues;
  readonly #replies = new Replies();
  readonly #notFoundListeners: HandlerNotFoundListener[] = [];
  readonly #metrics = new BrokerMetrics(() => this.getStats());
  readonly #unsettled = new UnsettledAttempts(() => this.#logger);
  readonly #dispatchBreaker: CircuitBreaker;
  readonly #deadLetterAlerts = new DeadLetterAlerts(this.#metrics, () => this.#logger);
  #deadLetters: DeadLetters | undefined;
  #producer: Producer | undefined;
  #consumer: Consumer | undefined;
  #expirySweep: PeriodicTask | undefined; // retention.ts: expired events to their DLQ, the history's age cap
  readonly #queueControl: QueueControl;
  readonly #schedules: Schedules;

  constructor(options: PostgresEventBrokerOptions) {
    this.#options = resolveBrokerOptions(options);
    this.#logger = this.#options.logger;
    this.#dispatchBreaker = new CircuitBreaker(this.#options.circuitBreaker);
    this.#queueControl = new QueueControl(this.#options);
    this.#queues = new Queues(this.#options, this.#queueControl);
    this.#registrations = new Registrations(this.#queues);
    this.#schedules = new Schedules(this.#options, this.#registrations);
  }

  /** Names of the queues this broker serves (handlers, completion listeners, the domained queue). */
  get queues(): string[] {
    return this.#registrations.names();
  }

  /** Replaces the logger (console-like or pino-like). */
  setLogger(logger: Logger): void {
    this.#logger = loggerOption(logger, 'logger');
  }

  /**
   * Connects, migrates, creates the internal and registered queues and starts the workers.
   * Throws {@link DatabaseUnavailableError} when PostgreSQL cannot be reached.
   */
  start(): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      return Promise.reject(new BrokerNotStartedError('start a stopped broker (create a new one)'));
    }
    this.#startPromise ??= this.#start().catch(async (error) => {
      this.#state = 'stopped';
      this.#registrations.close();
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
    this.#pool = openPool(options.connection, this.#logger);
    const pool = this.#pool.pool;
    try {
      this.#databaseId = await readDatabaseId(pool);
    } catch (error) {
      throw databaseUnavailable('connect', error);
    }
    this.#deadLetters = new DeadLetters({
      pool,
      schema: options.schema,
      deadLetterQueues: () => this.#queues.deadLetterQueues(),
    });
    const boss = new PgBossClient(options, pool, () => this.#logger);
    this.#boss = boss;
    await boss.start();
    await this.#queues.createInternal(boss);
    const runtime: BrokerRuntime = {
      options,
      pool,
      databaseId: this.#databaseId,
      boss,
      metrics: this.#metrics,
      history: await HistoryRecorder.start(pool, options),
      logger: () => this.#logger,
    };
    this.#producer = new Producer(runtime, this.#queues, this.#dispatchBreaker);
    this.#consumer = new Consumer(runtime, {
      queues: this.#queues,
      replies: this.#replies,
      settlement: new Settlement(runtime, this.#unsettled, this.#deadLetterAlerts),
      notFoundListeners: this.#notFoundListeners,
    });
    await this.#schedules.start(runtime, this.#producer);
    this.#state = 'started';
    this.#expirySweep = startExpirySweep(runtime, this.#deadLetterAlerts, () =>
      this.#queues.deadLetterQueues(),
    );
    await this.#queueControl.start(pool, () => this.#registrations.applyPauses(), this.#logger);
    await this.#registrations.activateAll(this.#consumer, boss, this.#queueControl, this.#databaseId);
    writeLog(this.#logger, 'info', 'arvo-postgres broker started', { queues: this.queues });
    warnIfNoContextManager(this.#logger);
  }

  /**
   * Registers `handler` on the queue named `handler.source` (created if missing; changed options update it
   * and keep its jobs), activated now or by `start()`; {@link DuplicateRegistrationError} if already here.
   */
  async register(handler: ArvoEventHandlerLike, options: RegisterOptions = {}): Promise<void> {
    const queue = handlerOption(handler);
    await this.#registrations.add({
      kind: 'handler',
      queue,
      handler,
      ...registerOptions(options, this.#options),
    });
  }

  /** Delivers workflow completions (events to the initiator `source`) to `listener`; a throw is retried. */
  async onWorkflowComplete(params: {
    source: string;
    listener: BrokerEventListener;
    options?: RegisterOptions;
  }): Promise<void> {
    expectKnownKeys(expectObject(params, 'params'), ['source', 'listener', 'options'], '');
    const listener = listenerOption(
      params.listener,
      'onWorkflowComplete expects { source, listener: function }',
    );
    const queue = queueNameOption(params.source, 'source');
    const existing = this.#registrations.get(queue);
    if (existing?.kind === 'completion' && !existing.listener) {
      // Created implicitly by resolve() with the defaults: options given now could not take effect.
      adoptedCompletionOptions(queue, params.options);
      existing.listener = listener;
      return;
    }
    await this.#registrations.add({
      kind: 'completion',
      queue,
      listener,
      ...registerOptions(params.options ?? {}, this.#options),
    });
  }

  /** Receives events with a `domain` (arvo 3), kept in the domained queue until taken; one listener. */
  async onDomainedEvent(listener: BrokerEventListener): Promise<void> {
    listenerOption(listener);
    const queue = this.#options.domainedQueue;
    const existing = this.#registrations.get(queue);
    if (existing) {
      existing.listener = listener;
      return;
    }
    await this.#registrations.add({
      kind: 'domained',
      queue,
      listener,
      queueOptions: this.#queues.domainedQueueOptions(),
      workerOptions: this.#options.worker,
    });
  }

  /**
   * Called once for each job this process dead-letters (failure policy, exhausted retries, expiry
   * sweep), after the move committed, with its failure record. See README, "Alerting on dead letters".
   */
  onDeadLetter(listener: DeadLetterListener): void {
    this.#deadLetterAlerts.listen(listenerOption(listener));
  }

  /** Called (after commit) for every handler output whose `to` has no queue; the event is kept in the unroutable queue. */
  onHandlerNotFound(listener: HandlerNotFoundListener): void {
    this.#notFoundListeners.push(listenerOption(listener));
  }

  /**
   * Validates and enqueues `event` on the queue named by its `to` (or the domained queue); returns the
   * job id, derived from `event.id` (dispatching the same event twice enqueues it once). See
   * {@link DispatchOptions}. While PostgreSQL is unreachable it throws {@link DatabaseUnavailableError}
   * within `circuitBreaker.callTimeoutMs`, at once while the circuit is open; retrying is safe.
   */
  async dispatch(event: ArvoEvent, options: DispatchOptions = {}): Promise<string> {
    this.#assertStarted('dispatch');
    return this.#producer!.dispatch(event, options);
  }

  /**
   * Dispatches 1 to 1000 events all or nothing (see `Producer.dispatchMany`): a refused one throws
   * {@link InvalidBatchEventError} with its index. Returns the job ids in the order of `events`.
   */
  async dispatchMany(events: ArvoEvent[], options: DispatchOptions = {}): Promise<string[]> {
    this.#assertStarted('dispatchMany');
    return this.#producer!.dispatchMany(events, options);
  }

  /**
   * Dispatches `event` and resolves with the event that comes back to `event.source` with the same subject
   * (Arvo's request/response pattern), through a completion queue for `event.source` (created when none is
   * registered; its events then reach no other listener). Rejects with {@link ResolveTimeoutError} after
   * `timeoutMs` (default 30 s). Replies are matched by subject alone, so a second `resolve()` on a source
   * and subject one already waits on is refused with {@link ConcurrentResolveError}.
   */
  async resolve(event: ArvoEvent, options: { timeoutMs?: number } = {}): Promise<ArvoEvent> {
    this.#assertStarted('resolve');
    const timeoutMs = timeoutMsOption(options, 30_000);
    const { stored } = encodeEvent(event, this.#options.maxPayloadBytes);
    const source = queueNameOption(event.source, 'event.source');
    const { queue: queueOptions, worker: workerOptions } = this.#options;
    await this.#registrations.ensureCompletion(source, { queueOptions, workerOptions });
    return this.#replies.await(source, event, timeoutMs, () => this.#producer!.enqueue(stored));
  }

  /**
   * Exact counts (one statement, not pg-boss's once-a-minute cache) of the queues this broker serves and
   * its internal and dead-letter queues; `queues` names other queues instead, `'all'` every queue.
   */
  async getStats(options: { queues?: string[] | 'all' } = {}): Promise<BrokerQueueStats[]> {
    this.#assertStarted('getStats');
    const given = statsQueuesOption(options);
    const names = given === 'all' ? [] : (given ?? this.#queues.reported(this.queues));
    const { schema } = this.#options;
    return queryQueueStats(this.#pool!.pool, schema, names, given === 'all', this.#queues.deadLetterQueues());
  }

  /**
   * Metrics in Prometheus text format: exact queue gauges (`getStats()`), this process's counters and
   * handler durations ({@link BrokerMetrics}; also sent to OpenTelemetry's meter `arvo-postgres`).
   */
  async getMetrics(): Promise<string> {
    return this.#metrics.prometheus(await this.getStats());
  }

  /** Sends an event on each tick of `cron`, once per tick across processes ({@link Schedules.schedule}). */
  async schedule(name: string, cron: string, event: ScheduledEvent, options: ScheduleOptions = {}) {
    this.#assertStarted('schedule');
    await this.#schedules.schedule(name, cron, event, options);
  }

  /** Removes schedule `name` in every process; ticks already fired are still delivered. */
  async unschedule(name: string): Promise<void> {
    this.#assertStarted('unschedule');
    await this.#schedules.unschedule(name);
  }

  /** Every schedule in the database: name, cron, time zone, next run, its event (without data). */
  async getSchedules(): Promise<ScheduleInfo[]> {
    this.#assertStarted('getSchedules');
    return this.#schedules.list();
  }

  /** Pauses `queue` in every process within a second (jobs being handled finish; dispatch still accepts). */
  async pauseQueue(queue: string): Promise<void> {
    this.#assertStarted('pauseQueue');
    await this.#queueControl.setPaused(queue, true);
  }

  /** Resumes a paused `queue` in every process (within a second). */
  async resumeQueue(queue: string): Promise<void> {
    this.#assertStarted('resumeQueue');
    await this.#queueControl.setPaused(queue, false);
  }

  /** Deletes `queue` and its jobs, refused ({@link QueueDeletionRefusedError}) as `QueueControl.delete` says. */
  async deleteQueue(queue: string, options: { force?: boolean } = {}): Promise<number> {
    this.#assertStarted('deleteQueue');
    return this.#queueControl.delete(queue, options, this.#queues.internalQueues());
  }

  /** Dead letters of every dead-letter queue in the database: list, show, replay, purge ({@link DeadLetters}). */
  get deadLetters(): DeadLetters {
    this.#assertStarted('deadLetters');
    return this.#deadLetters!;
  }

  /** Dead letters waiting in the broker's dead-letter queue (or `filter.queue`), oldest first. */
  async listDeadLetters(filter: DeadLetterFilter = {}): Promise<DeadLetter[]> {
    const given = filterOption(filter);
    return this.deadLetters.list({ ...given, queue: given.queue ?? this.#options.deadLetterQueue });
  }

  /**
   * Moves dead letters of the broker's dead-letter queue (or `filter.queue`; only `ids` when given) back to
   * their queues (new job id, fresh retry budget, failure history kept); returns how many were moved.
   */
  async redriveDeadLetters(filter: DeadLetterFilter & { ids?: string[] } = {}): Promise<number> {
    const { ids, ...given } = filterOption(filter);
    const replayed = await this.deadLetters.replay({
      ...given,
      queue: given.queue ?? this.#options.deadLetterQueue,
      ...(ids === undefined ? { all: true } : { ids }),
    });
    return replayed.length;
  }

  /**
   * Graceful shutdown: stops fetching, lets handlers in flight finish for up to `timeoutMs` (default 30 s),
   * then hands the jobs still held back to their queues at once, no retry spent; closes the connections.
   */
  async stop(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = stopTimeoutOption(options);
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    if (this.#state === 'starting') await this.#startPromise?.catch(() => {});
    this.#state = 'stopping';
    this.#registrations.close();
    this.#replies.rejectAll();
    await this.#expirySweep?.stop();
    await this.#queueControl.stop();
    try {
      await shutDown(this.#boss, this.#consumer, this.#unsettled, this.#pool, timeoutMs);
    } finally {
      this.#metrics.close();
      this.#state = 'stopped';
    }
  }

  /** For probes: PostgreSQL reachable (`SELECT 1` within `timeoutMs`, default 5 s), circuit, workers, last fetch. */
  async health(options: { timeoutMs?: number } = {}): Promise<BrokerHealth> {
    const timeoutMs = timeoutMsOption(options, 5000);
    return checkHealth(this.#state, this.#pool?.pool, this.#boss, this.#dispatchBreaker.state, timeoutMs);
  }

  /** Opt-in: on SIGTERM or SIGINT, {@link stop} with `timeoutMs`, then exit; returns the listeners' remover. */
  stopOnSignals(options: StopOnSignalsOptions = {}): () => void {
    return stopOnSignals(
      stopOnSignalsOptions(options),
      (timeoutMs) => this.stop({ timeoutMs }),
      () => this.#logger,
    );
  }

  #assertStarted(operation: string): void {
    if (this.#state !== 'started') throw new BrokerNotStartedError(operation);
  }
}
