import type { Queryable } from '../shared/transaction';
import { type Delivery, deliveryOf, withoutUndefined } from './delivery';
import { eventDestination, eventDomain, jobIdForEvent, type StoredEvent } from './event-codec';
import { SCHEDULES_QUEUE } from './options';
import type { JobInsert, PgBossClient, QueueSettings } from './pgboss';
import type { QueueControl } from './queue-control';
import { existingQueuesSql, OUT_OF_REACH_RETENTION_SECONDS } from './sql';
import type {
  Registration,
  ResolvedBrokerOptions,
  ResolvedQueueOptions,
  ResolvedWorkerOptions,
} from './types';

/** Where an outgoing event goes. */
export interface Destination {
  queue: string;
  unroutable: boolean;
  /** Addressed to an internal queue (kept as unroutable instead). */
  internal: boolean;
}

/**
 * The queues a broker knows: it creates its dead-letter, unroutable and domained queues and the
 * queues of its registrations, and routes each outgoing event to a queue by its `to` (a queue
 * registered by any process), to the domained queue (non-null `domain`), or else to the
 * unroutable queue.
 */
export class Queues {
  readonly #options: ResolvedBrokerOptions;
  #boss: PgBossClient | undefined;
  /** Queues that exist (created here or found in the database): destinations. */
  readonly #known = new Set<string>();
  /** Queues no event may be addressed to: dead-letter (anyone's), unroutable, domained, schedules. */
  readonly #internal = new Set<string>();
  /** The dead-letter queues this broker created. */
  readonly #deadLetterQueues = new Set<string>();

  readonly #control: QueueControl;

  constructor(options: ResolvedBrokerOptions, control: QueueControl) {
    this.#options = options;
    this.#control = control;
    this.#internal.add(options.unroutableQueue).add(options.domainedQueue).add(SCHEDULES_QUEUE);
  }

  /** Creates the broker's own queues (dead-letter, unroutable, domained) through `boss`. */
  async createInternal(boss: PgBossClient): Promise<void> {
    this.#boss = boss;
    const options = this.#options;
    await this.#createDeadLetterQueue(options.deadLetterQueue);
    await this.#upsert(options.unroutableQueue, {
      ...this.#keptLikeDeadLetters(),
      notify: false,
    });
    await this.#createDeadLetterQueue(options.queue.deadLetter);
    await this.#upsert(options.domainedQueue, {
      ...this.#keptLikeDeadLetters(),
      ...retrySettings(options.worker),
      deadLetter: options.queue.deadLetter,
      notify: true,
    });
  }

  /** The domained queue's options: the defaults, kept for `deadLetterRetentionSeconds` like the internal queues. */
  domainedQueueOptions(): ResolvedQueueOptions {
    return { ...this.#options.queue, ...this.#keptLikeDeadLetters() };
  }

  /** Creates or updates a registration's queue (and its dead-letter queue). */
  async createServed(registration: Registration): Promise<void> {
    const { queueOptions, workerOptions } = registration;
    await this.#createDeadLetterQueue(queueOptions.deadLetter);
    await this.#upsert(
      registration.queue,
      {
        deadLetter: queueOptions.deadLetter,
        retentionSeconds: queueOptions.retentionSeconds,
        deleteAfterSeconds: queueOptions.deleteAfterSeconds,
        ...retrySettings(workerOptions),
        notify: true,
        ...(queueOptions.warningQueueSize ? { warningQueueSize: queueOptions.warningQueueSize } : {}),
      },
      { policy: queueOptions.policy, partition: queueOptions.partition },
    );
  }

  /** Whether `queue` is a dead-letter or unroutable queue of this broker (no registration may take it). */
  isReserved(queue: string): boolean {
    return (
      queue === this.#options.unroutableQueue ||
      queue === this.#options.deadLetterQueue ||
      this.#deadLetterQueues.has(queue)
    );
  }

  /** The queues no one may delete: dead-letter (this broker's), unroutable, domained and schedules. */
  internalQueues(): string[] {
    return [...this.#internal, this.#options.deadLetterQueue];
  }

  /**
   * This broker's dead-letter queues (its default and every per-queue one it created): counted and
   * listed as dead-letter queues even when no queue names them any more, by stats and dead letters alike.
   */
  deadLetterQueues(): string[] {
    return [...new Set([this.#options.deadLetterQueue, ...this.#deadLetterQueues])];
  }

  /** The queues `getStats` reports by default: `served`, the domained, unroutable and dead-letter queues. */
  reported(served: string[]): string[] {
    return [
      ...new Set([
        ...served,
        this.#options.domainedQueue,
        this.#options.unroutableQueue,
        ...this.#deadLetterQueues,
      ]),
    ];
  }

  /** The destination of each outgoing event (same order); unknown `to`s are looked up through `db`. */
  async route<T extends { stored: StoredEvent }>(
    outgoing: T[],
    db: Queryable,
  ): Promise<Array<T & Destination>> {
    const unknown = new Set<string>();
    for (const { stored } of outgoing) {
      const to = eventDestination(stored);
      if (eventDomain(stored) === null && to && !this.#known.has(to) && !this.#internal.has(to)) {
        unknown.add(to);
      }
    }
    if (unknown.size > 0) {
      // Queues may be registered by any process: ask the database, and remember what exists.
      const { rows } = await db.query(existingQueuesSql(this.#options.schema), [[...unknown]]);
      for (const row of rows) (row.dead_letter ? this.#internal : this.#known).add(row.name);
    }
    return outgoing.map((entry) => {
      if (eventDomain(entry.stored) !== null) {
        return { ...entry, queue: this.#options.domainedQueue, unroutable: false, internal: false };
      }
      const to = eventDestination(entry.stored);
      const internal = to !== null && this.#internal.has(to);
      if (to && !internal && this.#known.has(to)) {
        return { ...entry, queue: to, unroutable: false, internal };
      }
      return { ...entry, queue: this.#options.unroutableQueue, unroutable: true, internal };
    });
  }

  /** The pg-boss job of `stored` in `queue` (see {@link jobInsertFor}), at the queue's default priority. */
  jobInsert(stored: StoredEvent, queue: string, delivery: Delivery = {}): JobInsert {
    const defaults = withoutUndefined({ priority: this.#control.defaultPriority(queue) });
    return jobInsertFor(stored, this.expiresToDeadLetter(queue), delivery, defaults);
  }

  /** Whether jobs of `queue` are dead-lettered when they wait past its retention (all but the unroutable queue's). */
  expiresToDeadLetter(queue: string): boolean {
    return queue !== this.#options.unroutableQueue;
  }

  async #createDeadLetterQueue(name: string): Promise<void> {
    if (this.#deadLetterQueues.has(name)) return;
    await this.#upsert(name, { ...this.#keptLikeDeadLetters(), notify: false });
    this.#deadLetterQueues.add(name);
    this.#internal.add(name);
  }

  async #upsert(name: string, settings: QueueSettings, fixed?: { policy?: string; partition?: boolean }) {
    await this.#boss!.upsertQueue(name, settings, fixed);
    this.#known.add(name);
  }

  #keptLikeDeadLetters(): { retentionSeconds: number; deleteAfterSeconds: number } {
    const seconds = this.#options.deadLetterRetentionSeconds;
    return { retentionSeconds: seconds, deleteAfterSeconds: seconds };
  }
}

function retrySettings(worker: ResolvedWorkerOptions): QueueSettings {
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
 * The pg-boss job of a stored event: id from the event id (idempotent enqueue), group = subject so
 * a queue with `subjectConcurrency` can limit how many jobs of one workflow run at once. With
 * `expiresToDeadLetter` pg-boss's retention never deletes it waiting: the broker's expiry sweep
 * dead-letters it instead (see `retention.ts`). Its start time and priority: the event's extensions
 * (see {@link deliveryOf}), overridden by `delivery` (the options of `dispatch`), over `defaults`
 * (the queue's default priority).
 */
function jobInsertFor(
  stored: StoredEvent,
  expiresToDeadLetter: boolean,
  delivery: Delivery,
  defaults: Delivery,
): JobInsert {
  return {
    id: jobIdForEvent(stored.id),
    data: stored,
    ...defaults,
    ...deliveryOf(stored),
    ...delivery,
    ...(stored.subject ? { group: { id: stored.subject } } : {}),
    ...(expiresToDeadLetter ? { retentionSeconds: OUT_OF_REACH_RETENTION_SECONDS } : {}),
  };
}
