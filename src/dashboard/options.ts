import { DEFAULT_DEAD_LETTER_QUEUE, deadLetterQueuesOption } from '../broker/options';
import type { WorkflowHistorySource } from '../history/types';
import { InvalidOptionError } from '../shared/errors';
import {
  expectObject,
  identifier,
  integer,
  type OptionTable,
  option,
  resolveOptions,
} from '../shared/options';
import { CONNECTION_OPTIONS, type ConnectionOptions } from '../shared/pool';

/** Options of {@link createDashboard}: a connection, the names, and what it may do. */
export interface DashboardOptions extends ConnectionOptions {
  /** Schema of the machine memory's tables. Default `public`. */
  schema?: string;
  /** The memory's state table. Default `arvo_workflow_state`. */
  stateTable?: string;
  /** The event history table (in `schema`). Default `arvo_event_history`. */
  historyTable?: string;
  /** pg-boss's schema. Default `pgboss`. */
  pgBossSchema?: string;
  /** Dead-letter queues besides those some queue names (see `DeadLetters`). Default `['arvo.dead-letter']`. */
  deadLetterQueues?: string[];
  /**
   * Turns on replay and purge of dead letters. Each action then needs this token (at least 16
   * characters; compare `openssl rand -hex 32`) in the POST body or the `x-dashboard-token` header.
   * Default: none, the dashboard is read-only.
   */
  actionToken?: string;
  /**
   * Link from an event to its trace: a URL with `{traceId}` (e.g.
   * `http://localhost:16686/trace/{traceId}`). Default: the trace id is shown as text.
   */
  traceUrl?: string;
  /** Seconds between refreshes of the queue page. Default 5. */
  refreshSeconds?: number;
  /**
   * Where a workflow's timeline and event-id search come from. Default: the event history table
   * (for a tree it holds nothing of, the records' timestamps and dead letters).
   */
  history?: WorkflowHistorySource;
}

/** Validated {@link DashboardOptions} (the connection options are resolved by the pool). */
export interface DashboardSettings {
  schema: string;
  stateTable: string;
  historyTable: string;
  pgBossSchema: string;
  deadLetterQueues: string[];
  actionToken: string | null;
  traceUrl: string | null;
  refreshSeconds: number;
  history: WorkflowHistorySource | null;
}

/** Shortest accepted action token: guessing must not be an option. */
export const MIN_TOKEN_LENGTH = 16;

/** The checks and defaults of {@link DashboardOptions} (the connection's are resolved by the pool). */
const DASHBOARD_OPTIONS = {
  ...CONNECTION_OPTIONS,
  schema: identifier('public'),
  stateTable: identifier('arvo_workflow_state'),
  historyTable: identifier('arvo_event_history'),
  pgBossSchema: identifier('pgboss'),
  deadLetterQueues: option((value, at) => deadLetterQueuesOption(value, at), [DEFAULT_DEAD_LETTER_QUEUE]),
  actionToken: option((value, at): string => {
    if (typeof value !== 'string' || value.length < MIN_TOKEN_LENGTH) {
      throw new InvalidOptionError(at, `expected a string of at least ${MIN_TOKEN_LENGTH} characters`);
    }
    return value;
  }),
  traceUrl: option((value, at): string => {
    if (typeof value !== 'string' || !/^https?:\/\/\S+$/.test(value) || !value.includes('{traceId}')) {
      throw new InvalidOptionError(at, 'expected an http(s) URL containing {traceId}');
    }
    return value;
  }),
  refreshSeconds: integer({ min: 1, max: 3600 }, 5),
  history: option((value, at): WorkflowHistorySource => {
    const source = value as Partial<WorkflowHistorySource> | null;
    if (typeof source?.timeline !== 'function' || typeof source.subjectsOfEvent !== 'function') {
      throw new InvalidOptionError(at, 'expected { timeline(), subjectsOfEvent() }');
    }
    return source as WorkflowHistorySource;
  }),
} satisfies OptionTable<DashboardOptions>;

export function dashboardSettings(options: DashboardOptions): DashboardSettings {
  const { actionToken, traceUrl, history, ...settings } = resolveOptions(
    DASHBOARD_OPTIONS,
    expectObject(options, 'options'),
    '',
  );
  return {
    schema: settings.schema,
    stateTable: settings.stateTable,
    historyTable: settings.historyTable,
    pgBossSchema: settings.pgBossSchema,
    deadLetterQueues: settings.deadLetterQueues,
    actionToken: actionToken ?? null,
    traceUrl: traceUrl ?? null,
    refreshSeconds: settings.refreshSeconds,
    history: history ?? null,
  };
}
