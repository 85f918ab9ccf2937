/**
 * One sleeping fetch loop woken per NOTIFY of a queue, instead of every loop of the queue (pg-boss
 * wakes all `localConcurrency` of them, and all but one find nothing). Only pg-boss instances given
 * to {@link wakeOneLoopPerNotification} change; see docs/design.md, "One fetch per notification".
 */

/** pg-boss 12.38's fetch loop (`Worker`): the fields read here. */
interface FetchLoop {
  readonly name: string;
  readonly stopping: boolean;
  /** Set while the loop sleeps until its next poll. */
  readonly loopDelayPromise: unknown;
  /** Set by `notify()`, cleared when the loop starts its next fetch. */
  readonly beenNotified: boolean;
  /** Ends the sleep at once; a loop that is fetching or handling fetches again right after. */
  notify(): void;
}

/** pg-boss 12.38's `Manager`: the fields read here. */
interface LoopManager {
  readonly db: object;
  readonly workers: Map<string, FetchLoop>;
}

/** The fetch loops of one pg-boss instance, once its first NOTIFY named their manager. */
export class FetchWake {
  #manager: LoopManager | undefined;

  /**
   * A NOTIFY for `queue`: loops that are fetching or handling a batch fetch again right after it,
   * as pg-boss has them do; of the sleeping loops, one is woken (none when one already is).
   */
  notified(manager: LoopManager, queue: string): void {
    this.#manager = manager;
    const loops = loopsOf(manager, queue);
    for (const loop of loops) if (!loop.loopDelayPromise) loop.notify();
    wakeOneSleeping(loops);
  }

  /** A loop of `queue` fetched `count` jobs: a full batch means more may wait, so one more sleeping loop fetches. */
  fetched(queue: string, count: number, batchSize: number): void {
    if (this.#manager && count >= batchSize) wakeOneSleeping(loopsOf(this.#manager, queue));
  }
}

function loopsOf(manager: LoopManager, queue: string): FetchLoop[] {
  return [...manager.workers.values()].filter((loop) => loop.name === queue && !loop.stopping);
}

/** Wakes the first sleeping loop, unless one is woken already: its fetch, still to come, finds what arrived. */
function wakeOneSleeping(loops: FetchLoop[]): void {
  const sleeping = loops.filter((loop) => loop.loopDelayPromise);
  if (!sleeping.some((loop) => loop.beenNotified)) sleeping[0]?.notify();
}

const wakes = new WeakMap<object, FetchWake>();

type NotifyQueue = (this: LoopManager, queue: string) => void;

/**
 * pg-boss's `Manager` class given as its module's default export; the CommonJS build reaches that
 * ESM-only module through require(esm), where the class sits one `default` deeper.
 */
function managerPrototype(exported: unknown): { notifyQueue: NotifyQueue } {
  const manager = typeof exported === 'function' ? exported : (exported as { default?: unknown }).default;
  return (manager as { prototype: { notifyQueue: NotifyQueue } }).prototype;
}

/** Prototypes whose `notifyQueue` is taken over: once each, whatever the number of brokers. */
const dispatching = new WeakSet<object>();

/** Takes over pg-boss's NOTIFY dispatch (`Manager.notifyQueue`) for the instances in {@link wakes}. */
function dispatchThroughWakes(prototype: { notifyQueue: NotifyQueue }): void {
  if (dispatching.has(prototype)) return;
  dispatching.add(prototype);
  const notifyEveryLoop = prototype.notifyQueue;
  prototype.notifyQueue = function (this: LoopManager, queue: string) {
    const wake = wakes.get(this.db);
    if (wake) wake.notified(this, queue);
    else notifyEveryLoop.call(this, queue);
  };
}

/**
 * Makes `boss` wake one sleeping fetch loop per NOTIFY of a queue; returns the hook for its fetched
 * batches. `manager` is the default export of pg-boss's `dist/manager.js` (not public API: the
 * version is pinned), given by the one module that imports pg-boss.
 */
export function wakeOneLoopPerNotification(boss: { getDb(): object }, manager: unknown): FetchWake {
  dispatchThroughWakes(managerPrototype(manager));
  const wake = new FetchWake();
  wakes.set(boss.getDb(), wake);
  return wake;
}
