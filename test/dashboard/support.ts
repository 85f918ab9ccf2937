/**
 * A database with real workflows for the dashboard tests: a parent orchestrator that calls a
 * service, starts a child, then calls a flaky service that fails (with `<script>` and a connection
 * string in its error) until `fix()` — so its event is dead-lettered and the workflow waits until
 * the dead letter is replayed.
 */

import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ArvoEvent } from 'arvo-core';
import { PostgresEventBroker } from '../../src/broker/index';
import { connectPostgresMachineMemory, type PostgresMachineMemory } from '../../src/memory/index';
import { memoryLogger, waitFor } from '../broker/support';
import type { TestDatabase } from '../support/database';
import {
  createInitEvent,
  createOrchestratorFixture,
  createServiceFixture,
  type FixtureHandler,
} from '../support/orchestrator';
import { recordSpans } from '../support/telemetry';

// A real tracer: the broker's spans give every event a traceparent, which the pages link to.
recordSpans();

/** A password that must never reach a page. */
export const LEAKED_PASSWORD = 'dashboard-s3cr3t-pw';
export const FLAKY_ERROR = `<script>alert("xss")</script> cannot reach postgres://app:${LEAKED_PASSWORD}@db.internal/app`;

export interface WorkflowWorld {
  broker: PostgresEventBroker;
  memory: PostgresMachineMemory;
  /** Init events dispatched, by workflow. */
  inits: ArvoEvent[];
  /** Completion events received. */
  done: ArvoEvent[];
  /** Lets the flaky service succeed from now on. */
  fix(): void;
  stop(): Promise<void>;
}

function flakyService(isFixed: () => boolean): FixtureHandler {
  const inner = createServiceFixture('com.dash.flaky');
  return {
    source: inner.source,
    async execute(event, opts) {
      if (!isFixed()) throw new Error(FLAKY_ERROR);
      return inner.execute(event, opts);
    },
  };
}

/** Starts broker and memory on `db` and runs `workflows` parent workflows until each waits on a dead letter. */
export async function startWorkflowWorld(db: TestDatabase, workflows: number): Promise<WorkflowWorld> {
  let fixed = false;
  const memory = await connectPostgresMachineMemory({ connectionString: db.url });
  const broker = new PostgresEventBroker({
    connectionString: db.url,
    logger: memoryLogger(),
    defaults: { worker: { retryLimit: 0 } },
  });
  await broker.register(
    createOrchestratorFixture({
      name: 'dashparent',
      memory,
      steps: [{ call: 'com.dash.ok' }, { child: 'dashchild' }, { call: 'com.dash.flaky' }],
    }),
  );
  await broker.register(
    createOrchestratorFixture({ name: 'dashchild', memory, steps: [{ call: 'com.dash.ok' }] }),
  );
  await broker.register(createServiceFixture('com.dash.ok'));
  await broker.register(flakyService(() => fixed));
  const done: ArvoEvent[] = [];
  await broker.onWorkflowComplete({ source: 'com.test.client', listener: (event) => void done.push(event) });
  await broker.start();
  const inits = Array.from({ length: workflows }, () => createInitEvent('dashparent'));
  for (const init of inits) await broker.dispatch(init);
  await waitFor(
    `${workflows} dead letters of the flaky service`,
    async () => (await broker.deadLetters.list({ limit: 1000 })).length >= workflows,
    60_000,
  );
  return {
    broker,
    memory,
    inits,
    done,
    fix: () => {
      fixed = true;
    },
    async stop() {
      await broker.stop({ timeoutMs: 2000 });
      await memory.close();
    },
  };
}

/** Serves `listener` on 127.0.0.1 at a free port; returns the base URL and the server. */
export async function serve(listener: RequestListener): Promise<{ url: string; server: Server }> {
  const server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

export async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}
