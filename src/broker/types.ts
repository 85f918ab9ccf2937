import type { ArvoEvent } from 'arvo-core';
import type pg from 'pg';
import type { Logger } from '../shared/logger';
import type { ConnectionOptions, ResolvedConnection } from '../shared/pool';
import type { CircuitBreakerOptions, ResolvedCircuitBreakerOptions } from './circuit-breaker';
import type { HistoryRecorder } from './history';
import type { BrokerMetrics } from './metrics';
import type { PgBossClient } from './pgboss';

/*
 * Glossary (one name per concept, in code and docs):
 * - event: an `ArvoEvent` in memory (what handlers receive and return).
 * - stored event (`StoredEvent`, variables `stored`): an event's `toJSON()` fields, as a job's `data` holds them.
 * - queue: a pg-boss queue; a handler's queue is named after its `source`, and events go to the queue named by their `to`.
 * - dead-letter queue: where a job goes once it failed for good (the queue option `deadLetter`, the
 *   broker option `deadLetterQueue`, pg-boss's column `dead_letter`); its jobs are dead letters.
 * - job: one stored event waiting in, or taken from, a queue; an attempt is one fetch of it.
 * - hop: one job handled: its event delivered, its outputs enqueued, the job completed, in one transaction.
 * - workflow: the events of one orchestration, sharing a subject.
 * - subject: an event's `subject`, the workflow's id; the job's pg-boss group.
 * - registration: what `register`, `onWorkflowComplete`, `onDomainedEvent` or `resolve` add: a queue and its consumer.
 */

/** Queue settings (stored on the pg-boss queue row; re-registering with other values updates them). */
export interface BrokerQueueOptions {
  /**
   * Dead-letter queue of this queue (created automatically).
   * @defaultValue broker's `deadLetterQueue`
   */
  deadLetter?: string;
  /**
   * A job still waiting (created or retrying) after this many seconds is deleted unprocessed.
   * @defaultValue `86400` (1 d)
   */
  retentionSeconds?: number;
  /**
   * Seconds a completed or failed job is kept.
   * @defaultValue `3600` (1 h)
   */
  deleteAfterSeconds?: number;
  /**
   * pg-boss queue policy, fixed at creation: `standard` or `singleton` (one job active at a time).
   * pg-boss's `short`, `stately` and `exclusive` are refused: they skip inserts that collide on a
   * singleton key, which would silently drop accepted events.
   * @defaultValue `standard`
   */
  policy?: 'standard' | 'singleton';
  /**
   * Own job-table partition for this queue (fixed at creation).
   * @defaultValue `false`
   */
  partition?: boolean;
  /**
   * Log a warning when more jobs than this are queued.
   * @defaultValue —
   */
  warningQueueSize?: number;
}

/** Worker settings of a queue. Retry settings are stored on the queue row, like pg-boss does. */
export interface BrokerWorkerOptions {
  /**
   * Jobs fetched per fetch; they run concurrently and commit together, each job's work atomic and
   * isolated from the others' (a job that fails rolls back alone).
   * @defaultValue `10`
   */
  batchSize?: number;
  /**
   * Fetch loops per queue in this process (so up to `batchSize × localConcurrency` jobs in flight).
   * @defaultValue `2`
   */
  localConcurrency?: number;
  /**
   * Shorthand for the jobs in flight per process: `2 × concurrency/2` when even, else
   * `1 × concurrency` (fetch loops × batch size). Not together with `batchSize`/`localConcurrency`.
   * @defaultValue —
   */
  concurrency?: number;
  /**
   * Retries after the first attempt, for retryable failures only.
   * @defaultValue `3`
   */
  retryLimit?: number;
  /**
   * Seconds before the first retry.
   * @defaultValue `1`
   */
  retryDelay?: number;
  /**
   * Exponential backoff between retries.
   * @defaultValue `true`
   */
  retryBackoff?: boolean;
  /**
   * Maximum seconds between retries.
   * @defaultValue `60`
   */
  retryDelayMax?: number;
  /**
   * Seconds a handler may run before the job is failed and retried.
   * @defaultValue `300`
   */
  expireInSeconds?: number;
  /**
   * Idle poll interval when LISTEN/NOTIFY is unavailable, in seconds (≥ 0.5).
   * @defaultValue `1`
   */
  pollingIntervalSeconds?: number;
  /**
   * Backstop poll while LISTEN/NOTIFY is live, in seconds (≥ `pollingIntervalSeconds`; retries and
   * deferred jobs send no NOTIFY).
   * @defaultValue `1`
   */
  notifyPollingIntervalSeconds?: number;
  /**
   * At most this many jobs of one subject are fetched while others of it are active (pg-boss group
   * concurrency, group = event subject); `0` = no limit. pg-boss checks it inside each fetch, so
   * fetches running at the same moment (other fetch loops, other processes) can race past it: it
   * keeps lock contention rare, the orchestrator's lock keeps it harmless. On orchestrator queues
   * (source `arvo.orc.*`) replies to one workflow then mostly wait in the queue instead of
   * contending for its lock. Do not limit a service that receives fan-out calls: those calls share
   * the workflow's subject and would run one by one.
   * @defaultValue `1` for `arvo.orc.*` queues, else `0`
   */
  subjectConcurrency?: number;
}

/** Options of {@link PostgresEventBroker}. */
export interface PostgresEventBrokerOptions extends ConnectionOptions {
  /**
   * Schema of pg-boss's tables.
   * @defaultValue `pgboss`
   */
  schema?: string;
  /**
   * `console`, a pino, bunyan or winston logger, or any object with `info()` and `error()`; pg-boss
   * `error`/`warning` events go here too.
   * @defaultValue console (warn/error)
   */
  logger?: Logger;
  /** Defaults for every `register` / `onWorkflowComplete` / internal queue. */
  defaults?: {
    /**
     * Defaults of every queue's options.
     * @defaultValue see below
     */
    queue?: BrokerQueueOptions;
    /**
     * Defaults of every queue's worker options.
     * @defaultValue see below
     */
    worker?: BrokerWorkerOptions;
  };
  /**
   * Largest event accepted, as UTF-8 JSON bytes, at `dispatch` and from handlers.
   * @defaultValue `1048576` (1 MiB)
   */
  maxPayloadBytes?: number;
  /**
   * The [event history](../README.md#event-history--workflows-show): one row per settled attempt of an event,
   * written in the transaction that settles it (`workflows show`, the dashboard's timeline). `false`
   * turns it off.
   * @defaultValue on
   */
  history?: false | BrokerHistoryOptions;
  /**
   * Default dead-letter queue (created automatically).
   * @defaultValue `arvo.dead-letter`
   */
  deadLetterQueue?: string;
  /**
   * Queue keeping events whose `to` has no queue.
   * @defaultValue `arvo.unroutable`
   */
  unroutableQueue?: string;
  /**
   * Durable queue of events with a non-null `domain`.
   * @defaultValue `arvo.domained`
   */
  domainedQueue?: string;
  /**
   * Retention of the dead-letter, unroutable and domained queues, in seconds.
   * @defaultValue `604800` (7 d)
   */
  deadLetterRetentionSeconds?: number;
  /**
   * `ExecutionViolation`: dead-letter at once, or `'retry'` like an infrastructure error.
   * @defaultValue `deadLetter`
   */
  executionViolation?: 'deadLetter' | 'retry';
  /** Reschedule delay of a job that hit lock contention, jittered between the two. */
  lockContention?: {
    /**
     * Shortest delay in ms.
     * @defaultValue `50`
     */
    minDelayMs?: number;
    /**
     * Longest delay in ms (at least `minDelayMs`).
     * @defaultValue `250`
     */
    maxDelayMs?: number;
  };
  /**
   * How often pg-boss's maintenance (retention sweep) runs, in seconds; expired jobs (of a crashed
   * worker) are failed and retried every `min(60, this)` s.
   * @defaultValue `120`
   */
  maintenanceIntervalSeconds?: number;
  /**
   * Producer/consumer spans (no cost without an OpenTelemetry SDK).
   * @defaultValue `true`
   */
  telemetry?: boolean;
  /**
   * Connections of pg-boss's own pool (fetching, settling, LISTEN).
   * @defaultValue `6`
   */
  pgBossPoolMax?: number;
  /**
   * Name of this instance in pg-boss's instance registry.
   * @defaultValue —
   */
  instanceName?: string;
  /**
   * Install/migrate pg-boss's schema, the broker's `arvo_queue_control` table and the event history
   * table at `start()`. `false` for a role without DDL rights: all must exist (see SECURITY.md, "Least
   * privilege"), and `start()` refuses a history table of an older layout (`MIGRATION_MISSING`).
   * @defaultValue `true`
   */
  migrate?: boolean;
  /** Fail-fast behaviour of `dispatch` while PostgreSQL is unreachable (see `CircuitBreaker`). */
  circuitBreaker?: CircuitBreakerOptions;
}

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
   * Default priority of the queue's jobs (higher is fetched first; default 0), for events any process
   * sends to it without a `priority` of their own. Stored with the queue, so it holds in every process
   * (within a second); registering again without it clears it.
   */
  priority?: number;
  /**
   * `@arvo-tools/postgres`'s option, refused when `true` ({@link InvalidOptionError}): recreating a
   * queue deletes the jobs waiting in it. Registering again with changed options updates the queue.
   */
  recreateQueue?: false;
}

/**
 * Options of `dispatch` and `dispatchMany`. An event a handler emits asks for the same through its
 * extensions `startafter` (an ISO 8601 timestamp or seconds) and `priority`.
 */
export interface DispatchOptions {
  /**
   * Deliver no earlier than this `Date`, or this many seconds from now (the database's clock). The
   * job waits durably (restarts included) and is picked up by the workers' backstop poll within
   * `notifyPollingIntervalSeconds` (default 1 s): deferred jobs send no NOTIFY.
   */
  startAfter?: Date | number;
  /** An integer, default 0: within a queue, jobs of higher priority are fetched first. */
  priority?: number;
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

/** A queue this broker consumes, and who consumes it. */
export interface Registration {
  /** `schedule`: a schedules queue, whose `handler` turns ticks into events (schedules.ts). */
  kind: 'handler' | 'completion' | 'domained' | 'schedule';
  queue: string;
  handler?: ArvoEventHandlerLike;
  allowStateOutsideBrokerTransaction?: boolean;
  listener?: BrokerEventListener;
  queueOptions: ResolvedQueueOptions;
  workerOptions: ResolvedWorkerOptions;
  /** `register`'s `priority`, stored with the queue (null clears it); undefined leaves it as stored. */
  defaultPriority?: number | null;
  workerId?: string;
  ready?: Promise<void>;
}

/**
 * Effective `subjectConcurrency`: as configured, else 1 for orchestrators (arvo's orchestrator
 * contracts are all typed `arvo.orc.<name>`, and an orchestrator locks per subject) and 0 otherwise.
 */
export function subjectConcurrencyOf(registration: Registration): number {
  return (
    registration.workerOptions.subjectConcurrency ??
    (registration.kind === 'handler' && registration.queue.startsWith('arvo.orc.') ? 1 : 0)
  );
}

/** What the roles of a started broker share. */
export interface BrokerRuntime {
  readonly options: ResolvedBrokerOptions;
  /** The broker's pool: handlers' transactions, routing lookups, dead-lettering. */
  readonly pool: pg.Pool;
  readonly databaseId: string;
  readonly boss: PgBossClient;
  readonly metrics: BrokerMetrics;
  readonly history: HistoryRecorder;
  logger(): Logger;
}

// ---------------------------------------------------------------- options after validation (options.ts)

export interface ResolvedQueueOptions {
  deadLetter: string;
  retentionSeconds: number;
  deleteAfterSeconds: number;
  policy: NonNullable<BrokerQueueOptions['policy']>;
  partition: boolean;
  warningQueueSize?: number;
}

/** Worker options after validation; `subjectConcurrency` undefined means the per-queue default. */
export type ResolvedWorkerOptions = Required<
  Omit<BrokerWorkerOptions, 'subjectConcurrency' | 'concurrency'>
> & {
  subjectConcurrency?: number;
};

/** Where the event history is kept and what it keeps. */
export interface BrokerHistoryOptions {
  /**
   * Schema of the history table: the memory's schema, so the memory's deletes take a tree's history along.
   * @defaultValue `public`
   */
  schema?: string;
  /**
   * The history table: the memory's `tables.history`.
   * @defaultValue `arvo_event_history`
   */
  table?: string;
  /**
   * Keep each event's `data` (redacted) too: it may hold personal data.
   * @defaultValue `false`
   */
  payloads?: boolean;
  /**
   * Largest payload kept, as UTF-8 JSON bytes; a larger one is noted by its size.
   * @defaultValue `4096`
   */
  maxPayloadBytes?: number;
  /**
   * Entries older than this many seconds are deleted by the broker's retention sweep, whatever their
   * workflow (a tree's history goes earlier, with its records).
   * @defaultValue `2592000` (30 d)
   */
  maxAgeSeconds?: number;
}

export type ResolvedHistoryOptions = Required<BrokerHistoryOptions>;

export interface ResolvedBrokerOptions {
  connection: ResolvedConnection;
  schema: string;
  logger: Logger;
  queue: ResolvedQueueOptions;
  worker: ResolvedWorkerOptions;
  maxPayloadBytes: number;
  history: ResolvedHistoryOptions | null;
  deadLetterQueue: string;
  unroutableQueue: string;
  domainedQueue: string;
  deadLetterRetentionSeconds: number;
  executionViolation: 'deadLetter' | 'retry';
  lockContention: { minDelayMs: number; maxDelayMs: number };
  maintenanceIntervalSeconds: number;
  telemetry: boolean;
  pgBossPoolMax: number;
  instanceName?: string;
  migrate: boolean;
  circuitBreaker: ResolvedCircuitBreakerOptions;
}
