import { deadLetterQueuesOption } from '../broker/options';
import type { WorkflowHistorySource } from '../history/types';
import { InvalidOptionError } from '../shared/errors';
import { validateIdentifier } from '../shared/identifiers';
import { expectKnownKeys, expectObject, integerOption } from '../shared/options';
import { CONNECTION_OPTION_KEYS, type ConnectionOptions } from '../shared/pool';

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

export function dashboardSettings(options: DashboardOptions): DashboardSettings {
  const given = expectObject(options, 'options');
  expectKnownKeys(
    given,
    [
      ...CONNECTION_OPTION_KEYS,
      'schema',
      'stateTable',
      'historyTable',
      'pgBossSchema',
      'deadLetterQueues',
      'actionToken',
      'traceUrl',
      'refreshSeconds',
      'history',
    ],
    'options',
  );
  const token = given.actionToken;
  if (token !== undefined && (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH)) {
    throw new InvalidOptionError(
      'actionToken',
      `expected a string of at least ${MIN_TOKEN_LENGTH} characters`,
    );
  }
  const traceUrl = given.traceUrl;
  if (
    traceUrl !== undefined &&
    (typeof traceUrl !== 'string' || !/^https?:\/\/\S+$/.test(traceUrl) || !traceUrl.includes('{traceId}'))
  ) {
    throw new InvalidOptionError('traceUrl', 'expected an http(s) URL containing {traceId}');
  }
  const history = given.history as WorkflowHistorySource | undefined;
  if (
    history !== undefined &&
    (typeof history?.timeline !== 'function' || typeof history.subjectsOfEvent !== 'function')
  ) {
    throw new InvalidOptionError('history', 'expected { timeline(), subjectsOfEvent() }');
  }
  return {
    schema: validateIdentifier(given.schema ?? 'public', 'schema'),
    stateTable: validateIdentifier(given.stateTable ?? 'arvo_workflow_state', 'stateTable'),
    historyTable: validateIdentifier(given.historyTable ?? 'arvo_event_history', 'historyTable'),
    pgBossSchema: validateIdentifier(given.pgBossSchema ?? 'pgboss', 'pgBossSchema'),
    deadLetterQueues: deadLetterQueuesOption(given.deadLetterQueues),
    actionToken: (token as string | undefined) ?? null,
    traceUrl: (traceUrl as string | undefined) ?? null,
    refreshSeconds: integerOption(given.refreshSeconds, 'refreshSeconds', { min: 1, max: 3600 }, 5),
    history: history ?? null,
  };
}
