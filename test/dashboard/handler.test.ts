/**
 * The dashboard's request handler on plain `http` and under an Express and a Fastify prefix, against real
 * workflows: every page renders, untrusted text is escaped, secrets never show, the read-only mode
 * refuses actions, actions need the token and a same-origin request, and a role with only SELECT
 * rights reads every page.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import middie from '@fastify/middie';
import express from 'express';
import Fastify from 'fastify';
import type pg from 'pg';
import { createDashboard, type DashboardHandler } from '../../src/dashboard/index';
import { createTestDatabase, createTestRole, type TestDatabase, testPool } from '../support/database';
import { closeServer, LEAKED_PASSWORD, serve, startWorkflowWorld, type WorkflowWorld } from './support';

const TOKEN = randomBytes(24).toString('hex');
const XSS_SUBJECT = '<script>alert("subject")</script>';
const READER = `dash_reader_${randomBytes(4).toString('hex')}`;

describe('dashboard request handler', { timeout: 180_000 }, () => {
  let db: TestDatabase;
  let admin: pg.Pool;
  let world: WorkflowWorld;
  const dashboards: DashboardHandler[] = [];
  const servers: Server[] = [];
  let readOnly: string;
  let withActions: string;

  async function dashboardAt(options: Parameters<typeof createDashboard>[0]): Promise<string> {
    const dashboard = createDashboard(options);
    dashboards.push(dashboard);
    const { url, server } = await serve((req, res) => dashboard(req, res));
    servers.push(server);
    return url;
  }

  before(async () => {
    db = await createTestDatabase('dashboard_handler');
    admin = testPool(db.url, 2);
    world = await startWorkflowWorld(db, 2);
    // A workflow record whose subject is markup: untrusted input as any subject is.
    await admin.query(
      `INSERT INTO arvo_workflow_state (subject, data, version, root_subject, status, orchestrator)
       VALUES ($1, $2, 1, $1, 'active', 'arvo.orc.<b>evil</b>')`,
      [XSS_SUBJECT, JSON.stringify({ note: '<img src=x onerror=alert(1)>', password: LEAKED_PASSWORD })],
    );
    readOnly = await dashboardAt({
      connectionString: db.url,
      traceUrl: 'http://traces.test/trace/{traceId}',
    });
    withActions = await dashboardAt({ connectionString: db.url, actionToken: TOKEN });
  });

  after(async () => {
    for (const server of servers) await closeServer(server);
    for (const dashboard of dashboards) await dashboard.close();
    await world?.stop();
    await admin?.end();
    await db?.drop();
  });

  async function get(base: string, path: string) {
    const response = await fetch(new URL(path, base), { redirect: 'manual' });
    return { response, body: await response.text() };
  }

  it('serves every page with a strict CSP and no inline script', async () => {
    const letter = (await world.broker.deadLetters.list())[0]!;
    const subject = world.inits[0]!.subject;
    for (const path of [
      '',
      'dead-letters',
      `dead-letter?id=${letter.id}`,
      'workflows',
      `workflow?subject=${encodeURIComponent(subject)}`,
    ]) {
      const { response, body } = await get(readOnly, path);
      assert.equal(response.status, 200, `${path}: ${body}`);
      const csp = response.headers.get('content-security-policy') ?? '';
      assert.match(csp, /script-src 'self'/);
      assert.doesNotMatch(csp, /unsafe-inline/);
      assert.equal(response.headers.get('x-frame-options'), 'DENY');
      // The only script is the dashboard's own file.
      assert.deepEqual(body.match(/<script[^>]*>/g), ['<script src="assets/dashboard.js" defer>']);
    }
    const css = await get(readOnly, 'assets/dashboard.css');
    assert.equal(css.response.headers.get('content-type'), 'text/css; charset=utf-8');
    const js = await get(readOnly, 'assets/dashboard.js');
    assert.match(js.body, /data-refresh|dataset\.refresh/);
    assert.equal((await get(readOnly, 'assets/../../package.json')).response.status, 404);
  });

  it('shows queue counts and throughput, and the workflow tree, dead letters, timeline and trace link', async () => {
    const queues = await get(readOnly, '');
    assert.match(queues.body, /com\.dash\.flaky/);
    assert.match(queues.body, /data-refresh="5"/);
    const subject = world.inits[0]!.subject;
    const { body } = await get(readOnly, `workflow?subject=${encodeURIComponent(subject)}`);
    // The tree holds the parent and its child, and the flaky call's dead letter belongs to it.
    assert.match(body, /arvo\.orc\.dashchild/);
    assert.match(body, /id="workflow-dead-letters"/);
    assert.match(body, /dead-lettered/);
    const letter = (await world.broker.deadLetters.list()).find((entry) => entry.event.subject === subject)!;
    const traceId = String(letter.event.traceparent).split('-')[1];
    assert.ok(traceId, 'the dispatched events carry a traceparent');
    assert.ok(body.includes(`href="http://traces.test/trace/${traceId}"`), 'trace link');
    // A child's page links its root and the list of the whole tree; its timeline is the tree's.
    const [child] = await world.memory.getSubjectsByRoot(subject);
    const ofChild = await get(readOnly, `workflow?subject=${encodeURIComponent(child!)}`);
    const rootLink = `href="workflows?root=${encodeURIComponent(subject)}"`;
    assert.ok(ofChild.body.includes(rootLink), ofChild.body);
    assert.ok(ofChild.body.includes(`workflow?subject=${encodeURIComponent(subject)}`));
    assert.ok(ofChild.body.includes(letter.event.id as string), 'the root’s dead-lettered event');
    const tree = await get(readOnly, `workflows?root=${encodeURIComponent(subject)}`);
    const listed = [
      ...tree.body.matchAll(/<tr><td><a class="subject mono" href="workflow\?subject=([^"]+)"/g),
    ];
    assert.deepEqual(
      new Set(listed.map((match) => decodeURIComponent(match[1]!))),
      new Set([subject, child]),
    );
  });

  it('escapes subjects, record data and errors, and shows no secret', async () => {
    const list = await get(readOnly, `workflows?q=${encodeURIComponent(XSS_SUBJECT)}`);
    assert.ok(list.body.includes('&#60;script&#62;alert(&#34;subject&#34;)&#60;/script&#62;'), list.body);
    assert.ok(!list.body.includes(XSS_SUBJECT));
    const one = await get(readOnly, `workflow?subject=${encodeURIComponent(XSS_SUBJECT)}`);
    assert.equal(one.response.status, 200);
    assert.ok(!one.body.includes('<img src=x'));
    assert.ok(!one.body.includes('<b>evil</b>'));
    const letters = await get(readOnly, 'dead-letters');
    assert.ok(letters.body.includes('&#60;script&#62;alert(&#34;xss&#34;)'), 'error text is shown, escaped');
    for (const page of [list, one, letters]) {
      assert.ok(!page.body.includes('<script>alert'), 'no live markup from data');
      assert.ok(!page.body.includes(LEAKED_PASSWORD), 'no secret');
    }
    const letter = (await world.broker.deadLetters.list())[0]!;
    const shown = await get(readOnly, `dead-letter?id=${letter.id}`);
    assert.ok(!shown.body.includes(LEAKED_PASSWORD), 'no secret in the stack or event');
    assert.ok(!shown.body.includes('<script>alert'));
  });

  it('finds a workflow by an event id and pages through workflows with a keyset cursor', async () => {
    const letter = (await world.broker.deadLetters.list())[0]!;
    const byEvent = await get(readOnly, `workflows?q=${letter.event.id}`);
    assert.ok(byEvent.body.includes(String(letter.event.subject)), 'the event id finds its workflow');
    // 120 more records: three pages of 50, no row twice, none missing.
    await admin.query(
      `INSERT INTO arvo_workflow_state (subject, data, version, root_subject, status, orchestrator, updated_at)
       SELECT 'page-' || i, '{}', 1, 'page-' || i, 'done', 'arvo.orc.pages', now() - (i % 7) * interval '1 second'
       FROM generate_series(1, 120) i`,
    );
    const seen: string[] = [];
    let path: string | null = 'workflows?orchestrator=arvo.orc.pages';
    while (path) {
      const { body } = await get(readOnly, path);
      seen.push(...[...body.matchAll(/workflow\?subject=(page-\d+)/g)].map((match) => match[1]!));
      const next = /id="next-page" href="([^"]+)"/.exec(body)?.[1];
      path = next ? next.replaceAll('&#38;', '&') : null;
    }
    assert.equal(seen.length, 120);
    assert.equal(new Set(seen).size, 120);
  });

  it('refuses actions when read-only, and shows no action form', async () => {
    const letter = (await world.broker.deadLetters.list())[0]!;
    const page = await get(readOnly, `dead-letter?id=${letter.id}`);
    assert.ok(!page.body.includes('action="replay"'));
    const response = await fetch(new URL('replay', readOnly), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ id: letter.id, token: TOKEN }),
    });
    assert.equal(response.status, 403);
    assert.ok((await world.broker.deadLetters.show(letter.id)) !== null, 'still there');
  });

  it('needs the token, a POST and the same origin for every action', async () => {
    const letter = (await world.broker.deadLetters.list())[0]!;
    const origin = new URL(withActions).origin;
    const post = (body: Record<string, string>, headers: Record<string, string> = {}) =>
      fetch(new URL('purge', withActions), {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(body),
      });
    assert.equal((await post({ id: letter.id })).status, 403, 'no token');
    assert.equal((await post({ id: letter.id, token: `${TOKEN}x` })).status, 403, 'wrong token');
    assert.equal(
      (await post({ id: letter.id, token: TOKEN }, { origin: 'http://evil.test' })).status,
      403,
      'another origin',
    );
    assert.equal(
      (await post({ id: letter.id, token: TOKEN }, { 'sec-fetch-site': 'cross-site' })).status,
      403,
      'cross-site fetch metadata',
    );
    const viaGet = await fetch(new URL(`purge?id=${letter.id}&token=${TOKEN}`, withActions));
    assert.equal(viaGet.status, 405, 'never on a GET');
    assert.ok((await world.broker.deadLetters.show(letter.id)) !== null, 'nothing was purged so far');
    const accepted = await post({ id: letter.id, token: TOKEN, back: 'dead-letters' }, { origin });
    assert.equal(accepted.status, 303);
    assert.equal(accepted.headers.get('location'), 'dead-letters?purged=1&missing=0');
    assert.equal(await world.broker.deadLetters.show(letter.id), null, 'purged');
    // The token may come in a header instead (scripts); an off-site `back` is not followed.
    const other = (await world.broker.deadLetters.list())[0]!;
    const byHeader = await post({ id: other.id, back: 'https://evil.test/' }, { 'x-dashboard-token': TOKEN });
    assert.equal(byHeader.status, 303);
    assert.equal(byHeader.headers.get('location'), 'dead-letters?purged=1&missing=0');
  });

  it('reads every page as a role with only SELECT rights', async () => {
    const url = await createTestRole(db, { name: READER, password: `pw-${randomBytes(6).toString('hex')}` });
    await admin.query(`GRANT USAGE ON SCHEMA pgboss TO ${READER}`);
    await admin.query(`GRANT SELECT ON ALL TABLES IN SCHEMA pgboss TO ${READER}`);
    await admin.query(`GRANT SELECT ON public.arvo_workflow_state TO ${READER}`);
    await admin.query(`GRANT SELECT ON public.arvo_event_history TO ${READER}`);
    const reader = await dashboardAt({ connectionString: url });
    for (const path of [
      '',
      'dead-letters',
      'workflows',
      `workflow?subject=${encodeURIComponent(world.inits[1]!.subject)}`,
    ]) {
      const { response, body } = await get(reader, path);
      assert.equal(response.status, 200, `${path}: ${body}`);
    }
    // Without a grant the page says what to grant instead of failing blankly.
    await admin.query(`REVOKE SELECT ON public.arvo_workflow_state FROM ${READER}`);
    const refused = await get(reader, 'workflows');
    assert.equal(refused.response.status, 503);
    assert.match(refused.body, /grant it SELECT/);
  });

  it('mounts under a path prefix in Express', async () => {
    const dashboard = createDashboard({ connectionString: db.url });
    dashboards.push(dashboard);
    const app = express();
    app.use('/ops', dashboard);
    app.get('/health', (_req, res) => void res.send('ok'));
    const { url, server } = await serve(app);
    servers.push(server);
    const redirect = await fetch(new URL('ops', url), { redirect: 'manual' });
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers.get('location'), '/ops/');
    const page = await fetch(new URL('ops/workflows', url));
    assert.equal(page.status, 200);
    const css = await fetch(new URL('ops/assets/dashboard.css', url));
    assert.equal(css.status, 200);
    // What the dashboard does not serve goes on to the application.
    assert.equal(await (await fetch(new URL('health', url))).text(), 'ok');
    assert.equal((await fetch(new URL('ops/nothing-here', url))).status, 404);
  });

  it('mounts under a path prefix in Fastify (through @fastify/middie), actions included', async () => {
    const dashboard = createDashboard({ connectionString: db.url, actionToken: TOKEN });
    dashboards.push(dashboard);
    const app = Fastify();
    await app.register(middie);
    app.use('/ops', dashboard);
    app.get('/health', async () => 'ok');
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const at = (path: string) => new URL(path, `${url}/`);
      const redirect = await fetch(at('ops'), { redirect: 'manual' });
      assert.equal(redirect.status, 308);
      assert.equal(redirect.headers.get('location'), '/ops/');
      const page = await fetch(at(`ops/workflow?subject=${encodeURIComponent(world.inits[0]!.subject)}`));
      assert.equal(page.status, 200);
      assert.match(await page.text(), /arvo\.orc\.dashchild/);
      assert.equal((await fetch(at('ops/assets/dashboard.js'))).status, 200);
      assert.equal(await (await fetch(at('health'))).text(), 'ok');
      assert.equal((await fetch(at('ops/nothing-here'))).status, 404);
      // A form POST reaches the dashboard with its body unread (Fastify parses bodies after
      // middleware): the token is checked and the id read (the earlier tests purged every letter).
      const post = (token: string) =>
        fetch(at('ops/purge'), {
          method: 'POST',
          redirect: 'manual',
          headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(url).origin },
          body: new URLSearchParams({ id: randomUUID(), token, back: 'dead-letters' }),
        });
      assert.equal((await post(`${TOKEN}x`)).status, 403);
      const accepted = await post(TOKEN);
      assert.equal(accepted.status, 303);
      assert.equal(accepted.headers.get('location'), 'dead-letters?purged=0&missing=1');
    } finally {
      await app.close();
    }
  });
});
