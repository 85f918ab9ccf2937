import { InvalidOptionError } from '../shared/errors';
import { assertStateJoinsTransaction } from './arguments';
import type { Consumer } from './consumer';
import { BrokerNotStartedError, DuplicateRegistrationError } from './errors';
import type { Queues } from './queues';
import type { Registration } from './types';

/**
 * The handlers and listeners registered on a broker, one per queue, and their activation: a queue
 * created or updated and its worker started, once, when the broker is (or becomes) started.
 */
export class Registrations {
  readonly #byQueue = new Map<string, Registration>();
  readonly #queues: Queues;
  #activation: { consumer: Consumer; databaseId: string } | undefined;
  #closed = false;

  constructor(queues: Queues) {
    this.#queues = queues;
  }

  /** The queues registered here, in registration order. */
  names(): string[] {
    return [...this.#byQueue.keys()];
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

  /** The broker started: activates every registration made so far, and later ones as they come. */
  activateAll(consumer: Consumer, databaseId: string): Promise<void> {
    this.#activation = { consumer, databaseId };
    return Promise.all([...this.#byQueue.values()].map((registration) => this.#activate(registration))).then(
      () => {},
    );
  }

  /** The broker is stopping: no more registrations. */
  close(): void {
    this.#closed = true;
    this.#activation = undefined;
  }

  /** Creates/updates the queue and starts its worker (once). */
  #activate(registration: Registration): Promise<void> {
    const { consumer, databaseId } = this.#activation!;
    registration.ready ??= (async () => {
      assertStateJoinsTransaction(registration, databaseId);
      await this.#queues.createServed(registration);
      await consumer.start(registration);
    })();
    return registration.ready;
  }
}
