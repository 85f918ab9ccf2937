import { InvalidOptionError } from '../shared/errors';
import { assertStateJoinsTransaction } from './arguments';
import type { Consumer } from './consumer';
import { BrokerNotStartedError, DuplicateRegistrationError, InvalidEventError } from './errors';
import type { PgBossClient } from './pgboss';
import type { QueueControl } from './queue-control';
import type { Queues } from './queues';
import type { Registration } from './types';

/** What activating a registration needs of the started broker. */
interface Activation {
  consumer: Consumer;
  boss: PgBossClient;
  control: QueueControl;
  databaseId: string;
}

/**
 * The handlers and listeners registered on a broker, one per queue, and their activation: a queue
 * created or updated and its worker started, once, when the broker is (or becomes) started.
 */
export class Registrations {
  readonly #byQueue = new Map<string, Registration>();
  readonly #queues: Queues;
  #activation: Activation | undefined;
  /** Queues whose activation finished: their worker runs unless the queue is paused. */
  readonly #active = new Set<Registration>();
  #closed = false;

  constructor(queues: Queues) {
    this.#queues = queues;
  }

  /** The queues registered here, in registration order (not the internal schedules queues). */
  names(): string[] {
    return [...this.#byQueue.values()]
      .filter((entry) => entry.kind !== 'schedule')
      .map((entry) => entry.queue);
  }

  get(queue: string): Registration | undefined {
    return this.#byQueue.get(queue);
  }

  /**
   * Adds `registration`; activates it at once when started (and forgets it when that fails, so the
   * caller may fix the cause and register again). Refuses internal queues and a second registration.
   */
  async add(registration: Registration): Promise<void> {
    if (this.#closed) throw new BrokerNotStartedError('register');
    if (registration.kind !== 'domained' && this.#queues.isReserved(registration.queue)) {
      throw new InvalidOptionError(
        'source',
        `${JSON.stringify(registration.queue)} is a dead-letter or unroutable queue of this broker`,
      );
    }
    if (this.#byQueue.has(registration.queue)) throw new DuplicateRegistrationError(registration.queue);
    this.#byQueue.set(registration.queue, registration);
    if (!this.#activation) return;
    try {
      await this.#activate(registration);
    } catch (error) {
      this.#byQueue.delete(registration.queue);
      throw error;
    }
  }

  /**
   * The registration of `registration.queue`: the one already here once its activation finished
   * (another caller may still be creating its queue), else `registration`, added.
   */
  async ensure(registration: Registration): Promise<Registration> {
    const existing = this.#byQueue.get(registration.queue);
    if (!existing) {
      await this.add(registration);
      return registration;
    }
    await existing.ready;
    return existing;
  }

  /**
   * The completion queue of `source` that `resolve()` waits on: the one here, else a new one with
   * `settings`; refused ({@link InvalidEventError}) when a handler serves `source` on this broker.
   */
  async ensureCompletion(
    source: string,
    settings: Pick<Registration, 'queueOptions' | 'workerOptions'>,
  ): Promise<void> {
    if ((this.#byQueue.get(source)?.kind ?? 'completion') !== 'completion') {
      throw new InvalidEventError(
        `resolve: event.source ${JSON.stringify(source)} is a handler's queue on this broker; replies to it would be handled, not returned`,
      );
    }
    await this.ensure({ kind: 'completion', queue: source, ...settings });
  }

  /** The broker started: activates every registration made so far, and later ones as they come. */
  activateAll(
    consumer: Consumer,
    boss: PgBossClient,
    control: QueueControl,
    databaseId: string,
  ): Promise<void> {
    this.#activation = { consumer, boss, control, databaseId };
    return Promise.all([...this.#byQueue.values()].map((registration) => this.#activate(registration))).then(
      () => {},
    );
  }

  /** The broker is stopping: no more registrations. */
  close(): void {
    this.#closed = true;
    this.#activation = undefined;
  }

  /**
   * Stops the workers of the queues paused since the last call, starts those of the queues resumed
   * (called each time the control table was read).
   */
  async applyPauses(): Promise<void> {
    const activation = this.#activation;
    if (!activation) return;
    for (const registration of this.#active) {
      const paused = activation.control.isPaused(registration.queue);
      if (paused && registration.workerId) {
        registration.workerId = undefined;
        await activation.boss.offWork(registration.queue);
      } else if (!paused && !registration.workerId) {
        await activation.consumer.start(registration);
      }
    }
  }

  /** Creates/updates the queue, stores its default priority and starts its worker unless paused (once). */
  #activate(registration: Registration): Promise<void> {
    const { consumer, databaseId, control } = this.#activation!;
    registration.ready ??= (async () => {
      assertStateJoinsTransaction(registration, databaseId);
      await this.#queues.createServed(registration);
      if (registration.defaultPriority !== undefined) {
        await control.storeDefaultPriority(registration.queue, registration.defaultPriority);
      }
      if (!control.isPaused(registration.queue)) await consumer.start(registration);
      this.#active.add(registration);
    })();
    return registration.ready;
  }
}
