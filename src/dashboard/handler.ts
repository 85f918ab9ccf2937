import type { IncomingMessage, ServerResponse } from 'node:http';
import { isUuid } from '../broker/event-codec';
import { InvalidOptionError } from '../shared/errors';
import { silentLogger } from '../shared/logger';
import { closePool, openPool, resolveConnection } from '../shared/pool';
import { describeError, redactSecrets } from '../shared/redact';
import { dashboardAsset } from './assets';
import { DashboardData } from './data';
import type { SafeHtml } from './html';
import { type DashboardOptions, type DashboardSettings, dashboardSettings } from './options';
import {
  deadLetterPage,
  deadLettersPage,
  messagePage,
  type PageContext,
  queuesPage,
  workflowPage,
  workflowsPage,
} from './pages';
import { crossSiteReason, readForm, setSecurityHeaders, tokenMatches } from './security';

/**
 * The dashboard as a Node request handler: `(req, res, next?)`, usable by `http.createServer`,
 * Express (`app.use('/ops', dashboard)`) and Fastify (`fastify.use('/ops', dashboard)` after
 * registering `@fastify/middie`). A request it does not serve goes to `next` when given, else gets a 404.
 */
export type DashboardHandler = ((
  req: IncomingMessage,
  res: ServerResponse,
  next?: (error?: unknown) => void,
) => void) & {
  /** Ends the dashboard's pool (when it created one). */
  close(): Promise<void>;
};

/** Rows per workflow page and the dead-letter list's default size. */
const PAGE_SIZE = 50;
const MAX_LIST = 1000;

/** A response the handler gives instead of a page. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** PostgreSQL errors an operator can fix: the message says how. */
function explainDatabaseError(error: unknown, settings: DashboardSettings): string | null {
  const code = (error as { code?: unknown }).code;
  if (code === '42P01' || code === '3F000')
    return `A table is missing (${redactSecrets(describeError(error).message)}): create the memory's tables with "arvo-postgres migrate" and start a broker once (schemas ${settings.schema}, ${settings.pgBossSchema}).`;
  if (code === '42501')
    return `The dashboard's role may not read this (${redactSecrets(describeError(error).message)}): grant it SELECT (see SECURITY.md).`;
  return null;
}

function text(params: URLSearchParams, name: string): string | undefined {
  const value = params.get(name)?.trim();
  return value ? value : undefined;
}

function limitOf(params: URLSearchParams): number {
  const value = Number(params.get('limit'));
  return Number.isInteger(value) && value >= 1 ? Math.min(value, MAX_LIST) : PAGE_SIZE;
}

/** The page to go back to after an action: one of the dashboard's own pages, never another site. */
function backTo(form: URLSearchParams): string {
  const back = form.get('back') ?? '';
  return /^(dead-letters|workflow)(\?[^\r\n#]*)?$/.test(back) ? back : 'dead-letters';
}

/** A notice from the numbers an action put in the URL (the URL's text itself is never shown). */
function noticeOf(params: URLSearchParams): string | null {
  const count = (name: string) => {
    const raw = params.get(name);
    return raw !== null && /^\d{1,9}$/.test(raw) ? Number(raw) : null;
  };
  const replayed = count('replayed');
  const purged = count('purged');
  const missing = count('missing');
  if (replayed === null && purged === null) return null;
  const done = replayed !== null ? `Replayed ${replayed}` : `Purged ${purged}`;
  return `${done} dead letter(s)${missing ? `; ${missing} not found (already replayed or purged)` : ''}.`;
}

/** Creates the dashboard's request handler on its own pool (or `options.pool`). */
export function createDashboard(options: DashboardOptions): DashboardHandler {
  const settings = dashboardSettings(options);
  const managed = openPool(
    resolveConnection({
      applicationName: 'arvo-postgres-dashboard',
      ...(options as Record<string, unknown>),
    }),
    silentLogger,
  );
  const data = new DashboardData(managed.pool, settings);
  const send = (res: ServerResponse, status: number, page: SafeHtml) => {
    res.statusCode = status;
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.end(page.text);
  };

  async function action(kind: 'replay' | 'purge', req: IncomingMessage, res: ServerResponse) {
    if (!settings.actionToken) throw new Refusal(403, 'Actions are disabled: this dashboard is read-only.');
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      throw new Refusal(405, `${kind} takes a POST from the dashboard's form.`);
    }
    const crossSite = crossSiteReason(req);
    if (crossSite) throw new Refusal(403, `Refused a cross-site request: ${crossSite}.`);
    const form = await readForm(req);
    if (!form) throw new Refusal(415, 'Expected a URL-encoded form of at most 64 KiB.');
    const header = req.headers['x-dashboard-token'];
    if (!tokenMatches(typeof header === 'string' ? header : form.get('token'), settings.actionToken)) {
      throw new Refusal(403, 'Wrong or missing action token.');
    }
    const ids = form.getAll('id');
    if (ids.length === 0) throw new Refusal(400, 'No dead letter selected.');
    if (!ids.every(isUuid)) throw new Refusal(400, 'A dead-letter id is not a UUID.');
    let done: number;
    if (kind === 'replay') done = (await data.deadLetters.replay({ ids })).length;
    else done = (await data.deadLetters.purge({ ids })).length;
    const back = backTo(form);
    res.statusCode = 303;
    res.setHeader(
      'Location',
      `${back}${back.includes('?') ? '&' : '?'}${kind === 'replay' ? 'replayed' : 'purged'}=${done}&missing=${ids.length - done}`,
    );
    res.setHeader('Cache-Control', 'no-store');
    res.end();
  }

  async function page(path: string, params: URLSearchParams, context: PageContext): Promise<SafeHtml | null> {
    switch (path) {
      case '/':
        return queuesPage(await data.queues(), context, settings.refreshSeconds);
      case '/dead-letters': {
        const filter = { queue: text(params, 'queue'), dlq: text(params, 'dlq'), limit: limitOf(params) };
        const letters = await data.listDeadLetters({
          ...(filter.queue ? { sourceQueue: filter.queue } : {}),
          ...(filter.dlq ? { queue: filter.dlq } : {}),
          limit: filter.limit,
        });
        return deadLettersPage(letters, filter, context);
      }
      case '/dead-letter': {
        const id = text(params, 'id') ?? '';
        if (!isUuid(id)) throw new Refusal(400, 'Expected a dead-letter id (a UUID).');
        const letter = await data.deadLetters.show(id);
        if (!letter) throw new Refusal(404, 'No waiting dead letter has this id (replayed or purged?).');
        return deadLetterPage(letter, context);
      }
      case '/workflows': {
        const filter = {
          status: text(params, 'status'),
          orchestrator: text(params, 'orchestrator'),
          search: text(params, 'q'),
          root: text(params, 'root'),
          cursor: text(params, 'after'),
          limit: PAGE_SIZE,
        };
        const [workflows, statuses] = await Promise.all([data.workflows(filter), data.statuses()]);
        return workflowsPage(workflows, statuses, filter, context);
      }
      case '/workflow': {
        const detail = await data.workflow(params.get('subject') ?? '');
        if (!detail)
          throw new Refusal(404, 'No workflow record has this subject (finished and cleaned up?).');
        return workflowPage(detail, context);
      }
      default:
        return null;
    }
  }

  async function serve(req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    // Mounted under a prefix (Express's originalUrl) and asked for it without the trailing slash:
    // relative links need the slash.
    const original = (req as { originalUrl?: string }).originalUrl;
    if (url.pathname === '/' && original !== undefined && !new URL(original, url).pathname.endsWith('/')) {
      res.statusCode = 308;
      res.setHeader('Location', `${new URL(original, url).pathname}/${url.search}`);
      res.end();
      return;
    }
    if (url.pathname.startsWith('/assets/')) {
      const asset = dashboardAsset(url.pathname.slice('/assets/'.length));
      if (asset) {
        res.setHeader('Content-Type', asset.contentType);
        res.setHeader('ETag', asset.etag);
        res.setHeader('Cache-Control', 'no-cache');
        if (req.headers['if-none-match'] === asset.etag) {
          res.statusCode = 304;
          res.end();
        } else res.end(asset.body);
        return;
      }
    }
    const context: PageContext = {
      actionsEnabled: settings.actionToken !== null,
      traceUrl: settings.traceUrl,
      notice: noticeOf(url.searchParams),
    };
    try {
      if (url.pathname === '/replay' || url.pathname === '/purge') {
        await action(url.pathname === '/replay' ? 'replay' : 'purge', req, res);
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        if (next) return next();
        res.setHeader('Allow', 'GET, HEAD');
        throw new Refusal(405, "The dashboard's pages are read with GET.");
      }
      const body = await page(url.pathname, url.searchParams, context);
      if (body) send(res, 200, body);
      else if (next) next();
      else send(res, 404, messagePage('Not found', 'No such page.', context));
    } catch (error) {
      if (error instanceof Refusal) {
        send(
          res,
          error.status,
          messagePage(error.status === 404 ? 'Not found' : 'Refused', error.message, context),
        );
        return;
      }
      if (error instanceof InvalidOptionError) {
        send(res, 400, messagePage('Bad request', redactSecrets(error.message), context));
        return;
      }
      const explained = explainDatabaseError(error, settings);
      send(
        res,
        explained ? 503 : 500,
        messagePage(
          'Error',
          explained ?? `The dashboard failed: ${redactSecrets(describeError(error).message)}`,
          context,
        ),
      );
    }
  }

  const handler = ((req, res, next) => {
    setSecurityHeaders(res);
    void serve(req, res, next).catch(() => {
      // serve() answers every error itself; this is a closed socket or a bug: never leave a request hanging.
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    });
  }) as DashboardHandler;
  handler.close = () => closePool(managed);
  return handler;
}
