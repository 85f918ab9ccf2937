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
  /** Dead-letter queue of this queue; created automatically. Default: the broker's `deadLetterQueue`. */
  deadLetter?: string;
  /** Seconds a job may wait (created/retry) before it is deleted unprocessed. Default 86400 (1 day). */
  retentionSeconds?: number;
  /** Seconds a completed or failed job is kept. Default 3600 (1 hour). */
  deleteAfterSeconds?: number;
  /**
   * pg-boss queue policy (fixed at creation): `standard` (default) or `singleton` (one job active at a
   * time). pg-boss's `short`, `stately` and `exclusive` policies make it skip inserts that collide on a
   * singleton key, which would silently drop accepted events, so the broker does not offer them.
   */
  policy?: 'standard' | 'singleton';
  /** Own job table partition for this queue (fixed at creation). Default false. */
  partition?: boolean;
  /** Warn (logger) when more jobs than this are queued. */
  warningQueueSize?: number;
}

/** Worker settings of a queue. Retry settings are stored on the queue row, like pg-boss does. */
export interface BrokerWorkerOptions {
  /** Jobs fetched per fetch; they run concurrently. Default 10. */
  batchSize?: number;
  /** Fetch loops per queue in this process. Default 2 (so up to `batchSize × localConcurrency` in flight). */
  localConcurrency?: number;
  /**
   * Shorthand for the jobs in flight per process: `2 × concurrency/2` when even, else
   * `1 × concurrency` (fetch loops × batch size). Not together with `batchSize`/`localConcurrency`.
   */
  concurrency?: number;
  /** Retries after the first attempt for retryable failures. Default 3. */
  retryLimit?: number;
  /** Seconds before the first retry. Default 1. */
  retryDelay?: number;
  /** Exponential backoff between retries. Default true. */
  retryBackoff?: boolean;
  /** Maximum seconds between retries. Default 60. */
  retryDelayMax?: number;
  /** Seconds a handler may run before the job is failed and retried. Default 300. */
  expireInSeconds?: number;
  /** Idle poll interval when LISTEN/NOTIFY is unavailable, in seconds (≥ 0.5). Default 1. */
  pollingIntervalSeconds?: number;
  /** Backstop poll while LISTEN/NOTIFY is live, in seconds (≥ polling interval). Default 1 (retries send no NOTIFY). */
  notifyPollingIntervalSeconds?: number;
  /**
   * At most this many jobs of one subject are fetched while others of it are active (pg-boss group
   * concurrency, group = event subject); `0` = no limit. pg-boss checks it inside each fetch, so
   * fetches running at the same moment (other fetch loops, other processes) can race past it: it
   * keeps lock contention rare, the orchestrator's lock keeps it harmless. Default: `1` for
   * orchestrator queues (source `arvo.orc.*`), where replies to one workflow then mostly wait in the
   * queue instead of contending for its lock, and `0` for every other queue. Do not limit a service
   * that receives fan-out calls: those calls share the workflow's subject and would run one by one.
   */
  subjectConcurrency?: number;
}

/** Options of {@link PostgresEventBroker}. */
export interface PostgresEventBrokerOptions extends ConnectionOptions {
  /** Schema of pg-boss's tables. Default `pgboss`. */
  schema?: string;
  /** Console- or pino-like logger. Default: warnings and errors to the console. */
  logger?: Logger;
  /** Defaults for every `register` / `onWorkflowComplete` / internal queue. */
  defaults?: { queue?: BrokerQueueOptions; worker?: BrokerWorkerOptions };
  /** Largest event accepted, as UTF-8 JSON bytes, at `dispatch` and for handler outputs. Default 1 MiB. */
  maxPayloadBytes?: number;
  /**
   * The event history: one row per settled attempt of an event, written in the transaction that
   * settles it (`workflows show`, the dashboard's timeline). `false` turns it off. Default on, in
   * `public.arvo_event_history` (beside the memory's tables, whose deletes take a tree's history along).
   */
  history?: false | BrokerHistoryOptions;
  /** Default dead-letter queue. Default `arvo.dead-letter`. */
  deadLetterQueue?: string;
  /** Queue keeping events whose `to` has no queue. Default `arvo.unroutable`. */
  unroutableQueue?: string;
  /** Durable queue of events with a non-null `domain`. Default `arvo.domained`. */
  domainedQueue?: string;
  /** Retention of the dead-letter, unroutable and domained queues in seconds. Default 604800 (7 days). */
  deadLetterRetentionSeconds?: number;
  /** `ExecutionViolation`: dead-letter at once (default) or retry like an infrastructure error. */
  executionViolation?: 'deadLetter' | 'retry';
  /** Delay range for re-running a job that hit lock contention, in ms. Default 50–250, jittered. */
  lockContention?: { minDelayMs?: number; maxDelayMs?: number };
  /** pg-boss maintenance (retention sweep) interval in seconds. Default 120. */
  maintenanceIntervalSeconds?: number;
  /** Producer/consumer spans (no cost without an OpenTelemetry SDK). Default true. */
  telemetry?: boolean;
  /** Connections of pg-boss's own pool (fetching, settling, LISTEN). Default 6. */
  pgBossPoolMax?: number;
  /** Name of this instance in pg-boss's instance registry. */
  instanceName?: string;
  /**
   * Install/migrate pg-boss's schema and the broker's queue control table at `start()`. Default true.
   * `false` for a role without DDL rights: both must exist (see SECURITY.md, "Least privilege").
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
  kind: 'handler' | 'completion' | 'domained';
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
  /** Schema of the history table; the memory's schema. Default `public`. */
  schema?: string;
  /** The history table; the memory's `tables.history`. Default `arvo_event_history`. */
  table?: string;
  /** Keep each event's `data` (redacted) too: it may hold personal data. Default `false`. */
  payloads?: boolean;
  /** Largest payload kept, as UTF-8 JSON bytes; a larger one is noted by its size. Default 4096. */
  maxPayloadBytes?: number;
  /**
   * Entries older than this are deleted by the broker's retention sweep, whatever their workflow (a
   * tree's history goes earlier, with its records). Default 2592000 (30 days).
   */
  maxAgeSeconds?: number;
}

export type ResolvedHistoryOptions = Required<BrokerHistoryOptions>;

export interface ResolvedBrokerOptions {
  connection: ResolvedConnection;
  schema: string;
  logger?: Logger;
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
