/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core (no browser
 * download). Every page opens against real workflows run through the broker; a dead letter is
 * replayed through the UI and its workflow completes; markup in a subject or an error shows as
 * text; an action fails without the token and from another origin. Screenshots of each page go
 * to .tmp/screenshots/ (the README's is docs/images/dashboard.png).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { createDashboard, type DashboardHandler } from '../../src/dashboard/index';
import { waitFor } from '../broker/support';
import { createTestDatabase, type TestDatabase, testPool } from '../support/database';
import { createInitEvent } from '../support/orchestrator';
import {
  closeServer,
  FLAKY_ERROR,
  LEAKED_PASSWORD,
  serve,
  startWorkflowWorld,
  type WorkflowWorld,
} from './support';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../.tmp/screenshots');
const TOKEN = 'browser-test-token-0123456789abcdef';
const XSS_SUBJECT = '<script>window.__xss = 1</script>';

const skip = existsSync(CHROMIUM)
  ? false
  : `no Chromium at ${CHROMIUM}: install it with "apt-get install chromium" (.ci/run does) or set CHROMIUM_PATH`;
if (skip) console.log(`# SKIP dashboard browser test: ${skip}`);

describe('dashboard in Chromium', { skip, timeout: 240_000 }, () => {
  let db: TestDatabase;
  let admin: pg.Pool;
  let world: WorkflowWorld;
  let dashboard: DashboardHandler;
  let base: string;
  let context: BrowserContext;
  let page: Page;
  let userData: string;
  const servers: Server[] = [];
  const dialogs: string[] = [];

  before(async () => {
    await mkdir(SCREENSHOTS, { recursive: true });
    db = await createTestDatabase('dashboard_browser');
    admin = testPool(db.url, 2);
    world = await startWorkflowWorld(db, 3);
    await admin.query(
      `INSERT INTO arvo_workflow_state (subject, data, version, root_subject, status, orchestrator)
       VALUES ($1, '{"note": "<b>bold?</b>"}', 1, $1, 'active', 'arvo.orc.markup')`,
      [XSS_SUBJECT],
    );
    dashboard = createDashboard({
      connectionString: db.url,
      actionToken: TOKEN,
      traceUrl: 'http://localhost:16686/trace/{traceId}',
      refreshSeconds: 1,
    });
    const served = await serve((req, res) => dashboard(req, res));
    servers.push(served.server);
    base = served.url;
    userData = await mkdtemp(path.join(tmpdir(), 'arvo-dashboard-chromium-'));
    context = await chromium.launchPersistentContext(userData, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 860 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
  });

  after(async () => {
    await context?.close();
    if (userData) await rm(userData, { recursive: true, force: true });
    for (const server of servers) await closeServer(server);
    await dashboard?.close();
    await world?.stop();
    await admin?.end();
    await db?.drop();
  });

  async function open(relative: string, screenshot: string) {
    const response = await page.goto(new URL(relative, base).toString());
    assert.equal(response?.status(), 200, `${relative}: ${await page.content()}`);
    await page.screenshot({ path: path.join(SCREENSHOTS, `${screenshot}.png`), fullPage: true });
  }

  it('opens every page and refreshes the queue page by itself', async () => {
    await open('', 'queues');
    assert.ok(await page.locator('#queues').getByText('com.dash.flaky', { exact: true }).isVisible());
    // Auto-refresh swaps the table in place: a new dead letter shows without a reload.
    const before = await page.locator('#queues').innerText();
    await world.broker.dispatch(createInitEvent('dashparent'));
    await waitFor(
      'the queue page refreshes',
      async () => (await page.locator('#queues').innerText()) !== before,
      15_000,
    );
    await open('dead-letters', 'dead-letters');
    assert.ok((await page.locator('#dead-letters tbody tr').count()) >= 3);
    await open('workflows', 'workflows');
    await open(`workflow?subject=${encodeURIComponent(world.inits[0]!.subject)}`, 'workflow');
    assert.ok(await page.locator('#workflow-dead-letters').isVisible());
    const trace = page.locator('#workflow-dead-letters a[href^="http://localhost:16686/trace/"]');
    assert.equal(await trace.count(), 1, 'a trace link per event');
    await page.locator('#workflow-dead-letters a').first().click();
    await page.waitForURL(/dead-letter\?id=/);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'dead-letter.png'), fullPage: true });
  });

  it('shows markup in subjects and errors as text, and no secret', async () => {
    await open(`workflows?q=${encodeURIComponent(XSS_SUBJECT)}`, 'workflows-markup');
    assert.ok(await page.getByText(XSS_SUBJECT, { exact: true }).isVisible(), 'the subject shows as text');
    await open('dead-letters', 'dead-letters-markup');
    const error = await page.locator('#dead-letters td.error-text').first().innerText();
    assert.ok(error.includes('<script>alert("xss")</script>'), error);
    assert.ok(!error.includes(LEAKED_PASSWORD));
    assert.ok(!(await page.content()).includes(LEAKED_PASSWORD));
    assert.equal(await page.evaluate(() => (globalThis as { __xss?: number }).__xss), undefined);
    assert.deepEqual(dialogs, [], 'no script from data ran');
    assert.ok(FLAKY_ERROR.includes(LEAKED_PASSWORD), 'the error did carry a password');
  });

  it('refuses an action with a wrong token, and from another origin', async () => {
    const letter = (await world.broker.deadLetters.list())[0]!;
    await open(`dead-letter?id=${letter.id}`, 'dead-letter-before-replay');
    await page.fill('input[name="token"]', 'not-the-token-at-all');
    const refused = page.waitForResponse((response) => response.url().endsWith('/replay'));
    await page.click('button[formaction="replay"]');
    assert.equal((await refused).status(), 403);
    await page.getByText('Wrong or missing action token.').waitFor();

    // Another origin (another port) posting a form with the right token to the dashboard.
    const evil = await serve((_req, res) => {
      res.setHeader('Content-Type', 'text/html');
      res.end(`<form id="f" method="post" action="${base}purge">
        <input name="id" value="${letter.id}"><input name="token" value="${TOKEN}"></form>
        <script>document.getElementById('f').submit()</script>`);
    });
    servers.push(evil.server);
    const crossSite = page.waitForResponse((response) => response.url().endsWith('/purge'));
    await page.goto(evil.url);
    assert.equal((await crossSite).status(), 403);
    await page.getByText(/Refused a cross-site request/).waitFor();
    assert.ok((await world.broker.deadLetters.show(letter.id)) !== null, 'the dead letter is still there');
  });

  it('replays a dead letter through the UI and the workflow completes', async () => {
    world.fix();
    const subject = world.inits[1]!.subject;
    const letter = (await world.broker.deadLetters.list()).find((entry) => entry.event.subject === subject)!;
    await open(`dead-letter?id=${letter.id}`, 'dead-letter-replay');
    await page.fill('input[name="token"]', TOKEN);
    const replayed = page.waitForResponse((response) => response.url().endsWith('/replay'));
    await page.click('button[formaction="replay"]');
    const response = await replayed;
    assert.equal(response.status(), 303, await response.text().catch(() => ''));
    await page.waitForURL(/dead-letters\?replayed=1/);
    assert.ok(await page.getByText('Replayed 1 dead letter(s).').isVisible());
    await waitFor(
      'the replayed workflow completes',
      () => world.done.some((event) => event.subject === subject),
      60_000,
    );
    await open(`workflow?subject=${encodeURIComponent(subject)}`, 'workflow-done');
    assert.equal(await page.locator('dl.fields .badge').first().innerText(), 'done');
    assert.equal(await page.locator('#workflow-dead-letters').count(), 0, 'its dead letter is gone');
  });
});
