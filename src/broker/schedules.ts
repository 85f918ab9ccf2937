import { randomUUID } from 'node:crypto';
import { type ArvoEvent, createArvoEvent } from 'arvo-core';
import { InvalidOptionError } from '../shared/errors';
import {
  expectKnownKeys,
  expectObject,
  type OptionTable,
  resolveOptions,
  stringOption,
  text,
} from '../shared/options';
import { inTransaction, type Queryable } from '../shared/transaction';
import { InvalidEventError } from './errors';
import { encodeEvent, type StoredEvent } from './event-codec';
import { SCHEDULES_QUEUE } from './options';
import { nextScheduleRun } from './pgboss';
import type { Producer } from './producer';
import type { Registrations } from './registrations';
import { schedulesSql } from './sql';
import type { BrokerRuntime, Registration, ResolvedBrokerOptions } from './types';

/**
 * Scheduled dispatch on pg-boss's scheduler. Each schedule is one pg-boss schedule whose tick (one job
 * per tick across every process: pg-boss's cron pass is claimed by one process at a time and files
 * each tick once) carries a tick event to an internal queue; that queue's consumer turns the tick
 * into the scheduled event as a handler would, in the tick job's transaction (routing, limits,
 * tracing, failure policy). A template schedule ticks in {@link SCHEDULES_QUEUE}, which every broker
 * consumes; a factory schedule ticks in its own queue `arvo.schedules.<name>`, consumed only by the
 * processes that gave the factory. See docs/design.md, "Schedules".
 */

const TICK_TYPE = 'arvo.schedule.tick';
const SCHEDULE_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
const TEMPLATE_KEYS = [
  'type',
  'source',
  'to',
  'subject',
  'data',
  'dataschema',
  'accesscontrol',
  'redirectto',
  'executionunits',
  'extensions',
];

/** The event a template schedule sends on each tick, with a new `id` and `time` (and `subject`, unless given). */
export interface ScheduledEventTemplate {
  type: string;
  source: string;
  /** The destination queue, which must exist when `schedule()` is called. Default: `type` (as `createArvoEvent`). */
  to?: string;
  /** Default: a new UUID per tick (an orchestrator needs an orchestration subject: use a factory). */
  subject?: string;
  data?: Record<string, unknown>;
  dataschema?: string;
  accesscontrol?: string;
  redirectto?: string;
  executionunits?: number;
  /** CloudEvent extensions (e.g. `priority`). */
  extensions?: Record<string, string | number | boolean | null>;
}

/** Makes the event of a tick; runs only in the processes that called `schedule()` with it. */
export type ScheduleFactory = (tick: { schedule: string }) => ArvoEvent | Promise<ArvoEvent>;

/** What a schedule sends: a template, or a factory. */
export type ScheduledEvent = ScheduledEventTemplate | ScheduleFactory;

export interface ScheduleOptions {
  /**
   * IANA time zone the cron expression is read in.
   * @defaultValue `'UTC'`
   */
  tz?: string;
}

/** The checks and defaults of {@link ScheduleOptions}. */
const SCHEDULE_OPTIONS = { tz: text('UTC') } satisfies OptionTable<ScheduleOptions>;

/** A schedule as `getSchedules()` and `arvo-postgres schedules list` report it (no event data). */
export interface ScheduleInfo {
  name: string;
  cron: string;
  tz: string;
  /** The next tick after now (this process's clock); null when the expression has none left. */
  nextRunAt: Date | null;
  /** Whether its events come from a factory (only processes that registered it send them). */
  factory: boolean;
  /** A template schedule's event: type, source, to and subject (null: a new one per tick). */
  event: { type: string; source: string; to: string; subject: string | null } | null;
  createdAt: Date;
  updatedAt: Date;
}

interface TickData {
  schedule: string;
  template: ScheduledEventTemplate | null;
}

/** The queue a schedule ticks in: the shared one for a template, its own for a factory. */
function tickQueue(name: string, factory: boolean): string {
  return factory ? `${SCHEDULES_QUEUE}.${name}` : SCHEDULES_QUEUE;
}

/** pg-boss's key of a schedule's row in its tick queue. */
function tickKey(name: string, factory: boolean): string {
  return factory ? '' : name;
}

function scheduleNameOption(value: unknown): string {
  const name = stringOption(value, 'name');
  if (name === undefined || !SCHEDULE_NAME.test(name)) {
    throw new InvalidOptionError(
      'name',
      `${JSON.stringify(name)} is not a valid schedule name (1-100 letters, digits, '_', '.', '-')`,
    );
  }
  return name;
}

/** Checks `cron` and then `tz` as pg-boss's cron pass will read them, each refused by its own name. */
function recurrenceOption(cron: unknown, options: unknown): { cron: string; tz: string } {
  const expression = stringOption(cron, 'cron');
  if (expression === undefined) throw new InvalidOptionError('cron', 'a cron expression is required');
  const { tz } = resolveOptions(SCHEDULE_OPTIONS, options, 'options');
  for (const [option, zone] of [
    ['cron', 'UTC'],
    ['options.tz', tz],
  ] as const) {
    try {
      nextScheduleRun(expression, zone);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new InvalidOptionError(
        option,
        `${JSON.stringify(option === 'cron' ? expression : tz)}: ${reason}`,
      );
    }
  }
  return { cron: expression, tz };
}

/** The template as stored (JSON: each tick rebuilds its event from that). */
function templateOption(value: unknown): ScheduledEventTemplate {
  expectKnownKeys(expectObject(value, 'event'), TEMPLATE_KEYS, 'event');
  try {
    return JSON.parse(JSON.stringify(value));
  } catch (error) {
    throw new InvalidEventError("The schedule's event template is not JSON", { cause: error });
  }
}

/** A new event of `template`, in a span continuing the current trace unless `telemetry` is false. */
function eventOf(template: ScheduledEventTemplate, telemetry: boolean): ArvoEvent {
  const { extensions, subject, data, ...fields } = template;
  try {
    return createArvoEvent(
      { ...fields, subject: subject ?? randomUUID(), data: data ?? {} },
      extensions,
      telemetry ? undefined : { disable: true },
    );
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InvalidEventError(`The schedule's event template does not make an ArvoEvent: ${reason}`, {
      cause: error,
    });
  }
}

/** The tick of schedule `name` in `queue`, as stored on pg-boss's schedule row (and each tick's job). */
function tickEvent(name: string, queue: string, template: ScheduledEventTemplate | null): ArvoEvent {
  return createArvoEvent(
    {
      type: TICK_TYPE,
      source: SCHEDULES_QUEUE,
      subject: name,
      to: queue,
      data: { schedule: name, template },
    },
    undefined,
    { disable: true },
  );
}

function tickDataOf(tick: ArvoEvent): TickData {
  const data = tick.data as Partial<TickData> | undefined;
  if (tick.type !== TICK_TYPE || typeof data?.schedule !== 'string') {
    throw new InvalidEventError(
      `Event ${tick.id} reached ${tick.to}, a schedules queue, but is no schedule tick`,
    );
  }
  return { schedule: data.schedule, template: data.template ?? null };
}

/** The broker's schedules (see the module comment); `start` once the broker's producer exists. */
export class Schedules {
  readonly #options: ResolvedBrokerOptions;
  readonly #registrations: Registrations;
  /** The factories given to `schedule()` in this process, by schedule name. */
  readonly #factories = new Map<string, ScheduleFactory>();
  #runtime: BrokerRuntime | undefined;
  #producer: Producer | undefined;

  constructor(options: ResolvedBrokerOptions, registrations: Registrations) {
    this.#options = options;
    this.#registrations = registrations;
  }

  /** Registers the consumer of {@link SCHEDULES_QUEUE} (activated with the broker's other queues). */
  async start(runtime: BrokerRuntime, producer: Producer): Promise<void> {
    this.#runtime = runtime;
    this.#producer = producer;
    await this.#registrations.add(this.#registration(SCHEDULES_QUEUE));
  }

  /**
   * Creates or replaces schedule `name`: `event` is a template (checked now like `dispatch` checks an
   * event, its `to` an existing queue) or a factory (kept in this process). Refuses a bad name, cron
   * expression or time zone with {@link InvalidOptionError}. Replacing moves the schedule between
   * template and factory in one transaction.
   */
  async schedule(name: unknown, cron: unknown, event: unknown, options: unknown): Promise<void> {
    const schedule = scheduleNameOption(name);
    const recurrence = recurrenceOption(cron, options);
    const factory = typeof event === 'function' ? (event as ScheduleFactory) : undefined;
    const template = factory ? null : templateOption(event);
    const queue = tickQueue(schedule, !!factory);
    const { maxPayloadBytes } = this.#options;
    const tick = encodeEvent(tickEvent(schedule, queue, template), maxPayloadBytes).stored;
    if (template) {
      await this.#producer!.assertRoutable(encodeEvent(eventOf(template, false), maxPayloadBytes).stored);
    } else {
      this.#factories.set(schedule, factory!);
      await this.#registrations.ensure(this.#registration(queue));
    }
    await inTransaction(this.#runtime!.pool, async (db) => {
      await this.#runtime!.boss.unschedule(tickQueue(schedule, !factory), tickKey(schedule, !factory), db);
      await this.#runtime!.boss.schedule(
        queue,
        tickKey(schedule, !!factory),
        recurrence.cron,
        recurrence.tz,
        tick,
        db,
      );
    });
  }

  /** Removes schedule `name` in every process; ticks already fired are still delivered. */
  async unschedule(name: unknown): Promise<void> {
    const schedule = scheduleNameOption(name);
    await inTransaction(this.#runtime!.pool, async (db) => {
      for (const factory of [false, true]) {
        await this.#runtime!.boss.unschedule(tickQueue(schedule, factory), tickKey(schedule, factory), db);
      }
    });
  }

  list(): Promise<ScheduleInfo[]> {
    return listSchedules(this.#runtime!.pool, this.#options.schema);
  }

  /** The consumer of tick queue `queue`: each tick becomes one event, emitted like a handler's output. */
  #registration(queue: string): Registration {
    return {
      kind: 'schedule',
      queue,
      handler: { source: queue, execute: async (tick) => [await this.#eventOfTick(tick)] },
      queueOptions: this.#options.queue,
      workerOptions: this.#options.worker,
    };
  }

  async #eventOfTick(tick: ArvoEvent): Promise<ArvoEvent> {
    const { schedule, template } = tickDataOf(tick);
    if (template) return eventOf(template, this.#options.telemetry);
    const factory = this.#factories.get(schedule);
    if (!factory) {
      throw new InvalidEventError(
        `A tick of schedule ${JSON.stringify(schedule)} reached ${tick.to}, but this process has no factory for it`,
      );
    }
    return factory({ schedule });
  }
}

/** The schedules in the database's pg-boss `schema`, by name (broker and CLI). */
export async function listSchedules(db: Queryable, schema: string): Promise<ScheduleInfo[]> {
  const { rows } = await db.query(schedulesSql(schema), [SCHEDULES_QUEUE]);
  return rows.map((row) => {
    const tick = (row.data ?? {}) as StoredEvent;
    const data = (tick.data ?? {}) as Partial<TickData>;
    const template = data.template ?? null;
    let nextRunAt: Date | null = null;
    try {
      nextRunAt = nextScheduleRun(row.cron, row.timezone);
    } catch {
      // A row pg-boss's pass cannot read either (written by hand): it never runs.
    }
    return {
      name: data.schedule ?? (row.key || row.queue),
      cron: row.cron,
      tz: row.timezone,
      nextRunAt,
      factory: row.queue !== SCHEDULES_QUEUE,
      event: template && {
        type: template.type,
        source: template.source,
        to: template.to ?? template.type,
        subject: template.subject ?? null,
      },
      createdAt: row.created_on,
      updatedAt: row.updated_on,
    };
  });
}
