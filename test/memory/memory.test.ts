import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ArvoOrchestrationSubject } from 'arvo-core';
import pg from 'pg';
import {
  connectPostgresMachineMemory,
  MachineMemoryConflictError,
  MachineMemoryTableStructureError,
  memoryMigrationSql,
  type PostgresMachineMemory,
  type PostgresMachineMemoryOptions,
  releasePostgresMachineMemory,
} from '../../src/memory/index';
import { ArvoPostgresError, InvalidOptionError, MigrationIndexError } from '../../src/shared/errors';
import { applyMigrations } from '../../src/shared/migrations';
import { type AmbientTransaction, runInAmbientTransaction } from '../../src/shared/transaction';
import { closeDuringSweep, waitUntilBlocked } from '../support/blocking';
import { useMemoryDatabase } from '../support/memory';
import { recordStatements } from '../support/statements';
import { waitFor } from '../support/wait';

const suite = useMemoryDatabase('memory');

async function connect(options: Partial<PostgresMachineMemoryOptions> = {}): Promise<PostgresMachineMemory> {
  const memory = await connectPostgresMachineMemory({ connectionString: suite.db.url, max: 3, ...options });
  return suite.track(memory);
}

/** The tables of the hierarchy tests. */
const TREE_TABLES = { tables: { state: 'tree_state', lock: 'tree_lock' } };

function rootSubject(name = 'arvo.orc.parent'): string {
  return ArvoOrchestrationSubject.new({ orchestator: name, version: '1.0.0', initiator: 'com.test.client' });
}

function childSubject(parent: string, name = 'arvo.orc.child'): string {
  return ArvoOrchestrationSubject.from({ orchestator: name, version: '1.0.0', subject: parent });
}

/** Records in the tree of `root`, the root included, through the public API. */
async function treeSize(memory: PostgresMachineMemory, root: string): Promise<number> {
  const rootKept = (await memory.getRootSubject(root)) === root ? 1 : 0;
  return rootKept + (await memory.getSubjectsByRoot(root)).length;
}

/** A root workflow and its child, written through `memory`: the smallest tree. */
async function writeRootAndChild(memory: PostgresMachineMemory): Promise<{ root: string; child: string }> {
  const root = rootSubject();
  const child = childSubject(root);
  await memory.write(root, record(root), null);
  await memory.write(child, record(child, { parentSubject: root }), null);
  return { root, child };
}

function record(subject: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    subject,
    parentSubject: null,
    status: 'active',
    executionStatus: 'normal',
    consumed: [],
    ...extra,
  };
}

describe('PostgresMachineMemory: tables', () => {
  it('creates both tables with their indexes in the configured schema and validates them', async () => {
    const memory = await connect({ schema: 'wf', tables: { state: 'state_v1', lock: 'lock_v1' } });
    await memory.validateTableStructure();
    const { rows } = await suite.admin.query(
      `SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'wf' ORDER BY tablename, indexname`,
    );
    const defs = rows.map((r) => r.indexdef as string);
    for (const column of ['(root_subject)', '(parent_subject)', '(status, updated_at)', '(expires_at)']) {
      assert.ok(
        defs.some((d) => d.endsWith(column)),
        `index on ${column} missing: ${defs.join('\n')}`,
      );
    }
    // Connecting again (and concurrently) is a no-op.
    await Promise.all(
      [1, 2, 3].map(() => connect({ schema: 'wf', tables: { state: 'state_v1', lock: 'lock_v1' } })),
    );
  });

  it('names every structural problem: wrong type, nullability, missing column and primary key', async () => {
    await suite.admin.query(`CREATE SCHEMA broken;
      CREATE TABLE broken.state (subject varchar(255), data text NOT NULL, version bigint,
        root_subject text NOT NULL, created_at timestamp NOT NULL, updated_at timestamptz NOT NULL);
      CREATE TABLE broken.locks (key text PRIMARY KEY, owner text NOT NULL, fencing_token bigint NOT NULL,
        acquired_at timestamptz NOT NULL, expires_at timestamptz NOT NULL)`);
    const error = await connect({
      schema: 'broken',
      tables: { state: 'state', lock: 'locks' },
      migrate: 'noop',
    }).catch((e: unknown) => e);
    assert.ok(error instanceof MachineMemoryTableStructureError, String(error));
    const problems = error.problems.join('\n');
    assert.match(problems, /broken\.state\.subject has type character varying, expected text/);
    assert.match(problems, /broken\.state\.data has type text, expected jsonb/);
    assert.match(problems, /broken\.state\.version is nullable, expected NOT NULL/);
    assert.match(problems, /broken\.state\.parent_subject is missing/);
    assert.match(problems, /broken\.state\.created_at has type timestamp without time zone/);
    assert.match(problems, /table broken\.state has no primary key, expected PRIMARY KEY \(subject\)/);
    assert.ok(!problems.includes('broken.locks'), 'the valid lock table is not reported');
    assert.match(error.message, /data has type text/);
  });

  it('reports a table that exists only in another schema', async () => {
    await connect({ tables: { state: 'elsewhere_state', lock: 'elsewhere_lock' } });
    const error = await connect({
      schema: 'empty_schema',
      tables: { state: 'elsewhere_state', lock: 'elsewhere_lock' },
      migrate: 'noop',
    }).catch((e: unknown) => e);
    assert.ok(error instanceof MachineMemoryTableStructureError);
    assert.match(
      error.message,
      /empty_schema\.elsewhere_state does not exist \(a table of that name exists in schema public\)/,
    );
  });

  it('prints DDL that, applied by hand, gives tables a `noop` connect accepts', async () => {
    const sql = memoryMigrationSql({ schema: 'by_hand', tables: { state: 's', lock: 'l' } });
    assert.match(sql, /CREATE TABLE IF NOT EXISTS by_hand\.s/);
    await suite.admin.query(sql);
    await suite.admin.query(sql);
    const memory = await connect({ schema: 'by_hand', tables: { state: 's', lock: 'l' }, migrate: 'noop' });
    const subject = rootSubject();
    await memory.write(subject, record(subject), null);
    assert.equal((await memory.read(subject))?.subject, subject);
  });

  it('refuses to connect when an index name of its tables is taken by another table of the schema', async () => {
    await connect({ schema: 'idx_clash', tables: { state: 'wf', lock: 'wf_lock' } });
    await assert.rejects(
      connect({ schema: 'idx_clash', tables: { state: 'wf_status', lock: 'wf_status_lock' } }),
      (error: unknown) =>
        error instanceof MigrationIndexError && error.message.includes('idx_clash.wf_status_updated_at_idx'),
    );
  });

  it('applies each migration version once, in order, and records it', async () => {
    const migrations = [
      {
        version: 2,
        description: 'add note',
        statements: ['ALTER TABLE mig.t ADD COLUMN note text'],
        indexes: [],
      },
      {
        version: 1,
        description: 'create t',
        statements: ['CREATE TABLE mig.t (id int PRIMARY KEY)'],
        indexes: [],
      },
    ];
    assert.equal(await applyMigrations(suite.admin, { schema: 'mig', component: 'test:t', migrations }), 2);
    // A second run would fail on the non-idempotent ALTER if it re-applied anything.
    assert.equal(await applyMigrations(suite.admin, { schema: 'mig', component: 'test:t', migrations }), 2);
    const { rows } = await suite.admin.query(
      `SELECT version, description FROM mig.arvo_postgres_migrations WHERE component = 'test:t' ORDER BY version`,
    );
    assert.deepEqual(rows, [
      { version: 1, description: 'create t' },
      { version: 2, description: 'add note' },
    ]);
    await suite.admin.query('INSERT INTO mig.t (id, note) VALUES (1, $1)', ['ok']);
  });

  it('drop_and_recreate starts from empty tables', async () => {
    const options = { schema: 'recreate', migrate: 'drop_and_recreate' as const };
    const first = await connect(options);
    const subject = rootSubject();
    await first.write(subject, record(subject), null);
    const second = await connect(options);
    assert.equal(await second.read(subject), null);
  });

  it('rejects hostile schema and table names without executing them', async () => {
    for (const [options, option] of [
      [{ schema: 'x"; DROP SCHEMA public CASCADE; --' }, 'schema'],
      [{ tables: { state: "state'; DELETE FROM pg_class; --" } }, 'tables.state'],
      [{ tables: { lock: 'a b' } }, 'tables.lock'],
    ] as const) {
      await assert.rejects(
        connect(options as Partial<PostgresMachineMemoryOptions>),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
      );
    }
    const { rows } = await suite.admin.query(
      `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'public'`,
    );
    assert.equal(rows[0].n, 1);
  });

  it('validates every option at connect, naming it', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ migrate: 'create' }, 'migrate'],
      [{ tables: { state: 'same', lock: 'same' } }, 'tables.lock'],
      [{ tables: { history: 'arvo_workflow_state' } }, 'tables.history'],
      [{ lock: { ttlMs: -5 } }, 'lock.ttlMs'],
      [{ lock: { maxRetries: 2, maxAttempts: 3 } }, 'lock.maxRetries'],
      [{ lock: { backoff: 2 } }, 'lock.backoff'],
      [{ cleanup: { onCompletion: 'yes' } }, 'cleanup.onCompletion'],
      [{ retention: { sweepIntervalMs: 1000 } }, 'retention.sweepIntervalMs'],
      [{ retention: { finishedAfterMs: -1 } }, 'retention.finishedAfterMs'],
      [{ enableOtel: 1 }, 'enableOtel'],
      [{ statementTimeoutMillis: -1 }, 'statementTimeoutMillis'],
      [{ lockConfig: {} }, 'lockConfig'],
      [{ logger: { log() {} } }, 'logger'],
    ];
    for (const [options, option] of cases) {
      await assert.rejects(
        connectPostgresMachineMemory({
          connectionString: suite.db.url,
          ...options,
        } as PostgresMachineMemoryOptions),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
  });

  it('never puts the password into a thrown error or a log line', async () => {
    const url = new URL(suite.db.url);
    url.password = 'M3m0ry-Secr3t-Pw';
    const lines: string[] = [];
    const capture = (...args: unknown[]) => lines.push(JSON.stringify(args));
    const error = await connectPostgresMachineMemory({
      connectionString: url.toString(),
      logger: { info: capture, warn: capture, error: capture },
    }).catch((e: unknown) => e);
    assert.ok(error instanceof Error);
    const text = `${error.message}\n${error.stack}\n${lines.join('\n')}`;
    assert.ok(!text.includes('M3m0ry-Secr3t-Pw'), text);
  });
});

describe('PostgresMachineMemory: records', () => {
  it('stores and reads back exactly the record, with extracted columns and no version inside', async () => {
    const memory = await connect();
    const subject = rootSubject();
    assert.equal(await memory.read(subject), null);
    const data = record(subject, { value: { nested: [1, 'two', null] }, count: 3 });
    await memory.write(subject, data, null, { source: 'arvo.orc.parent', initiator: 'com.test.client' });
    const read = await memory.read(subject);
    assert.deepEqual(read, data);
    const { rows } = await suite.admin.query(
      `SELECT version, parent_subject, root_subject, status, execution_status, orchestrator, initiator, source,
              created_at <= updated_at AS ordered
       FROM public.arvo_workflow_state WHERE subject = $1`,
      [subject],
    );
    assert.deepEqual(rows[0], {
      version: '1',
      parent_subject: null,
      root_subject: subject,
      status: 'active',
      execution_status: 'normal',
      orchestrator: 'arvo.orc.parent',
      initiator: 'com.test.client',
      source: 'arvo.orc.parent',
      ordered: true,
    });
  });

  it("stores arvo 3's write metadata: a string, a resolved materialized value, and NULL for a pending one", async () => {
    const memory = await connect();
    const stored = async (subject: string) =>
      (
        await suite.admin.query(
          `SELECT initiator, source FROM public.arvo_workflow_state WHERE subject = $1`,
          [subject],
        )
      ).rows[0];
    const cases: Array<[unknown, string | null]> = [
      ['com.test.client', 'com.test.client'],
      // arvo 3 (arvo-event-handler 3.0.28) passes `initiator` materialized: `{ value }` once resolved.
      [{ value: 'com.my.client', resolved: true }, 'com.my.client'],
      [{ resolved: false }, null],
      [{ value: undefined }, null],
      [undefined, null],
    ];
    for (const [initiator, expected] of cases) {
      const subject = rootSubject();
      await memory.write(subject, record(subject), null, { source: 'arvo.orc.parent', initiator });
      assert.deepEqual(
        await stored(subject),
        { initiator: expected, source: 'arvo.orc.parent' },
        String(expected),
      );
    }
    // A later write with a pending initiator keeps the value stored before.
    const subject = rootSubject();
    await memory.write(subject, record(subject), null, { initiator: { value: 'com.my.client' } });
    const read = await memory.read(subject);
    await memory.write(subject, { ...read!, step: 1 }, read, { initiator: { resolved: false } });
    assert.equal((await stored(subject)).initiator, 'com.my.client');
  });

  it('refuses to create a record twice, but accepts a failure record over an existing one', async () => {
    const memory = await connect();
    const subject = rootSubject();
    await memory.write(subject, record(subject), null);
    await assert.rejects(
      memory.write(subject, record(subject, { again: true }), null),
      (error: unknown) =>
        error instanceof MachineMemoryConflictError &&
        error.subject === subject &&
        error.expectedVersion === null,
    );
    const failure = record(subject, { status: 'error', executionStatus: 'failure', error: 'boom' });
    await memory.write(subject, failure, null);
    const stored = await memory.read(subject);
    assert.deepEqual(stored, failure);
    const { rows } = await suite.admin.query(
      'SELECT version, execution_status FROM public.arvo_workflow_state WHERE subject = $1',
      [subject],
    );
    assert.deepEqual(rows[0], { version: '2', execution_status: 'failure' });
    // The version history stays consistent: a CAS from the record read after the overwrite works.
    await memory.write(subject, { ...stored!, note: 'after failure' }, stored);
    assert.equal((await memory.read(subject))?.note, 'after failure');
  });

  it('compare-and-swaps against the version of the record read, and reports a stale writer', async () => {
    const memory = await connect();
    const subject = rootSubject();
    await memory.write(subject, record(subject, { step: 0 }), null);
    const first = await memory.read(subject);
    const second = await memory.read(subject);
    await memory.write(subject, { ...first!, step: 1 }, first);
    await assert.rejects(
      memory.write(subject, { ...second!, step: 99 }, second),
      (error: unknown) =>
        error instanceof MachineMemoryConflictError &&
        error.expectedVersion === '1' &&
        /expected version 1/.test(error.message),
    );
    assert.equal((await memory.read(subject))?.step, 1);
  });

  it('lets exactly one of several writers from the same prevData win', async () => {
    const memory = await connect();
    const subject = rootSubject();
    await memory.write(subject, record(subject, { step: 0 }), null);
    const writers = await Promise.all(Array.from({ length: 6 }, () => connect({ max: 1 })));
    const reads = await Promise.all(writers.map((writer) => writer.read(subject)));
    const outcomes = await Promise.allSettled(
      writers.map((writer, index) =>
        writer.write(subject, { ...reads[index]!, step: 1, by: index }, reads[index]!),
      ),
    );
    const winners = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    assert.equal(winners.length, 1);
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') assert.ok(outcome.reason instanceof MachineMemoryConflictError);
    }
    const winner = outcomes.findIndex((outcome) => outcome.status === 'fulfilled');
    assert.equal((await memory.read(subject))?.by, winner);
  });

  it('compares a prevData it never returned by content', async () => {
    const memory = await connect();
    const subject = rootSubject();
    await memory.write(subject, record(subject, { step: 0 }), null);
    const copy = structuredClone(await memory.read(subject));
    await memory.write(subject, { ...copy!, step: 1 }, copy);
    await assert.rejects(memory.write(subject, { ...copy!, step: 2 }, copy), MachineMemoryConflictError);
    assert.equal((await memory.read(subject))?.step, 1);
  });

  it('rejects writes to a deleted record and bad arguments with typed errors', async () => {
    const memory = await connect();
    const subject = rootSubject();
    await memory.write(subject, record(subject), null);
    const read = await memory.read(subject);
    assert.equal(await memory.deleteWorkflow(subject), 1);
    await assert.rejects(memory.write(subject, { ...read! }, read), MachineMemoryConflictError);
    await assert.rejects(memory.write('', record('x'), null), (e: unknown) => e instanceof ArvoPostgresError);
    await assert.rejects(
      memory.write(subject, [] as unknown as Record<string, unknown>, null),
      (e: unknown) => e instanceof ArvoPostgresError && e.code === 'INVALID_ARGUMENT',
    );
    // Records JSON cannot represent fail for good, with a typed error (not a retryable TypeError).
    const cyclic: Record<string, unknown> = { subject };
    cyclic.self = cyclic;
    for (const data of [{ subject, big: 1n }, cyclic]) {
      await assert.rejects(
        memory.write(subject, data, null),
        (e: unknown) =>
          e instanceof ArvoPostgresError &&
          e.code === 'INVALID_ARGUMENT' &&
          /not JSON-serializable/.test(e.message),
      );
    }
    assert.equal(await memory.read(subject), null);
    // Ages beyond PostgreSQL's timestamps are refused up front, naming the option.
    await assert.rejects(
      memory.sweep({ olderThanMs: Number.MAX_SAFE_INTEGER }),
      (e: unknown) => e instanceof InvalidOptionError && e.option === 'sweep.options.olderThanMs',
    );
  });

  it('validates the options of memoryMigrationSql like those of connect', () => {
    for (const [options, option] of [
      [{ table: { state: 's' } }, 'table'],
      [{ tables: { state: 'same', lock: 'same' } }, 'tables.lock'],
      [{ schema: 'a;b' }, 'schema'],
    ] as const) {
      assert.throws(
        () => memoryMigrationSql(options as never),
        (e: unknown) => e instanceof InvalidOptionError && e.option === option,
        option,
      );
    }
  });

  it('handles subjects of 300+ characters', async () => {
    const memory = await connect();
    let subject = rootSubject('arvo.orc.a.very.long.orchestrator.name.for.testing.subject.lengths');
    for (let depth = 0; depth < 3; depth++) {
      subject = ArvoOrchestrationSubject.from({
        orchestator: `arvo.orc.child.level${depth}`,
        version: '1.0.0',
        subject,
        meta: { [`key${depth}`]: randomBytes(30).toString('hex') },
      });
    }
    assert.ok(subject.length > 300, `subject has ${subject.length} characters`);
    await memory.write(subject, record(subject), null);
    assert.equal((await memory.read(subject))?.subject, subject);
    assert.equal(await memory.lock(subject), true);
    assert.equal(await memory.unlock(subject), true);
  });
});

describe('PostgresMachineMemory: hierarchy and cleanup', () => {
  it('resolves the root when a child is created, lists descendants and deletes whole trees', async () => {
    const memory = await connect(TREE_TABLES);
    const root = rootSubject();
    const child = childSubject(root);
    const grandchild = childSubject(child, 'arvo.orc.grandchild');
    const sibling = childSubject(root, 'arvo.orc.sibling');
    await memory.write(root, record(root), null);
    await memory.write(child, record(child, { parentSubject: root }), null);
    await memory.write(grandchild, record(grandchild, { parentSubject: child }), null);
    await memory.write(sibling, record(sibling, { parentSubject: root }), null);
    assert.equal(await memory.getRootSubject(grandchild), root);
    assert.equal(await memory.getRootSubject(root), root);
    assert.equal(await memory.getRootSubject(rootSubject()), null);
    // The descendants, oldest first, without the root (as @arvo-tools/postgres returns them).
    assert.deepEqual(await memory.getSubjectsByRoot(root), [child, grandchild, sibling]);
    assert.deepEqual(await memory.getSubjectsByRoot(sibling), [], 'a subject that is no root has none');
    const lonely = rootSubject();
    await memory.write(lonely, record(lonely), null);
    assert.deepEqual(await memory.getSubjectsByRoot(lonely), [], 'a root without children');
    assert.deepEqual(await memory.getSubjectsByRoot(rootSubject()), [], 'an unknown subject');

    assert.equal(await memory.deleteWorkflow(child), 2, 'child and grandchild');
    assert.deepEqual(await memory.getSubjectsByRoot(root), [sibling]);
    assert.equal(await memory.deleteWorkflow(root), 2);
    assert.equal(await treeSize(memory, root), 0);
    assert.equal(await memory.deleteWorkflow(root), 0);
  });

  it('cleanup(subject) is a completion hook: by default it keeps every record', async () => {
    const memory = await connect(TREE_TABLES);
    const root = rootSubject();
    const child = childSubject(root);
    await memory.write(root, record(root, { status: 'done' }), null);
    await memory.write(child, record(child, { parentSubject: root, status: 'done' }), null);
    assert.equal(await memory.cleanup(child), undefined);
    assert.equal(await memory.cleanup(root), undefined);
    assert.equal(await treeSize(memory, root), 2, 'kept: arvo 3 calls cleanup on every completion');
    assert.equal((await memory.read(root))?.status, 'done');
  });

  it('cleanup(subject) with cleanup.onCompletion deletes the tree of a finished root only', async () => {
    const memory = await connect(TREE_TABLES);
    const cleaning = await connect({
      tables: { state: 'tree_state', lock: 'tree_lock' },
      cleanup: { onCompletion: true },
    });
    // Written by a memory without the policy, so only the hook can delete them.
    const root = rootSubject();
    const child = childSubject(root);
    await memory.write(root, record(root), null);
    await memory.write(child, record(child, { parentSubject: root, status: 'done' }), null);
    await cleaning.cleanup(child);
    await cleaning.cleanup(root);
    assert.equal(await treeSize(memory, root), 2, 'an unfinished root and a child are kept');
    const rootRecord = await memory.read(root);
    await memory.write(root, { ...rootRecord!, status: 'done' }, rootRecord);
    await cleaning.cleanup(root);
    assert.equal(await treeSize(memory, root), 0, 'the finished root tree is deleted');
  });

  it('deletes a finished root tree on completion when cleanup.onCompletion is set', async () => {
    const cleaning = await connect({ ...TREE_TABLES, cleanup: { onCompletion: true } });
    const { root, child } = await writeRootAndChild(cleaning);
    const childRecord = await cleaning.read(child);
    await cleaning.write(child, { ...childRecord!, status: 'done' }, childRecord);
    assert.equal(await treeSize(cleaning, root), 2, 'a finished child alone deletes nothing');
    const rootRecord = await cleaning.read(root);
    await cleaning.write(root, { ...rootRecord!, status: 'done' }, rootRecord);
    assert.equal(await treeSize(cleaning, root), 0);
  });

  it('also deletes a root tree on completion when the root is a failure record (as the sweep counts it)', async () => {
    const cleaning = await connect({ ...TREE_TABLES, cleanup: { onCompletion: true } });
    const { root } = await writeRootAndChild(cleaning);
    // arvo 3 writes a failure record over the existing row; its machine status may still say active.
    await cleaning.write(root, record(root, { executionStatus: 'failure' }), null);
    assert.equal(await treeSize(cleaning, root), 0);
  });

  it('sweeps finished and abandoned trees past their retention and keeps the rest', async () => {
    const sweeper = await connect({ tables: { state: 'sweep_state', lock: 'sweep_lock' } });
    const make = async (status: string, ageMs: number) => {
      const root = rootSubject();
      const child = childSubject(root);
      await sweeper.write(root, record(root, { status }), null);
      await sweeper.write(child, record(child, { parentSubject: root, status }), null);
      await suite.admin.query(
        `UPDATE public.sweep_state SET updated_at = now() - $2::bigint * interval '1 millisecond' WHERE root_subject = $1`,
        [root, ageMs],
      );
      return root;
    };
    const oldDone = await make('done', 3_600_000);
    const recentDone = await make('done', 1_000);
    const oldActive = await make('active', 3_600_000);
    const veryOldActive = await make('active', 10 * 86_400_000);

    const finishedOnly = await sweeper.sweep({ olderThanMs: 600_000 });
    assert.deepEqual(finishedOnly, {
      finishedTrees: 1,
      abandonedTrees: 0,
      deletedRecords: 2,
      expiredLocks: 0,
    });
    assert.equal(await treeSize(sweeper, oldDone), 0);
    assert.equal(await treeSize(sweeper, oldActive), 2);

    const abandoned = await sweeper.sweep({ abandonedOlderThanMs: 86_400_000, batchSize: 1 });
    assert.equal(abandoned.abandonedTrees, 1);
    assert.equal(await treeSize(sweeper, veryOldActive), 0);
    assert.equal(await treeSize(sweeper, oldActive), 2);
    assert.equal(await treeSize(sweeper, recentDone), 2);
  });

  it('runs the retention sweep periodically when configured', async () => {
    const periodic = await connect({
      tables: { state: 'periodic_state', lock: 'periodic_lock' },
      retention: { finishedAfterMs: 1_000, sweepIntervalMs: 100 },
    });
    const root = rootSubject();
    await periodic.write(root, record(root, { status: 'done' }), null);
    await suite.admin.query(`UPDATE public.periodic_state SET updated_at = now() - interval '1 hour'`);
    await waitFor(
      'the periodic sweep deleted the finished tree',
      async () => (await treeSize(periodic, root)) === 0,
    );
  });

  it('the periodic retention sweep deletes expired lock rows as well', async () => {
    // Tables of its own: the previous test's memory, still open, sweeps `periodic_lock` too.
    const periodic = await connect({
      tables: { state: 'periodic_lock_state', lock: 'periodic_lock_lock' },
      lock: { ttlMs: 50 },
      retention: { finishedAfterMs: 3_600_000, sweepIntervalMs: 100 },
    });
    const subject = rootSubject();
    assert.equal(await periodic.lock(subject), true);
    await waitFor('the expired lock row is swept', async () => {
      const { rowCount } = await suite.admin.query('SELECT 1 FROM public.periodic_lock_lock WHERE key = $1', [
        subject,
      ]);
      return rowCount === 0;
    });
  });
});

describe('PostgresMachineMemory: locks', () => {
  it('gives the lock to exactly one of 10 concurrent memories', async () => {
    const memories = await Promise.all(
      Array.from({ length: 10 }, () =>
        connect({ max: 1, tables: { state: 'lk_state', lock: 'lk_lock' }, lock: { maxAttempts: 1 } }),
      ),
    );
    const subject = rootSubject();
    const results = await Promise.all(memories.map((memory) => memory.lock(subject)));
    assert.equal(results.filter(Boolean).length, 1);
    const holder = results.indexOf(true);
    const other = memories[(holder + 1) % memories.length]!;
    assert.equal(await other.unlock(subject), false, 'an instance cannot release a lock it does not hold');
    assert.equal(await other.lock(subject), false);
    assert.equal(await memories[holder]!.unlock(subject), true);
    assert.equal(await memories[holder]!.unlock(subject), false, 'released already');
    assert.equal(await other.lock(subject), true);
    assert.equal(await other.unlock(subject), true);
    assert.equal(await other.unlock(rootSubject()), false, 'unknown subject');
  });

  it('waits for a held lock with backoff and gets it once released', async () => {
    const a = await connect({ tables: { state: 'lk_state', lock: 'lk_lock' } });
    const b = await connect({
      max: 1,
      tables: { state: 'lk_state', lock: 'lk_lock' },
      lock: { maxAttempts: 100, initialDelayMs: 10, backoffExponent: 1.2, maxDelayMs: 50 },
    });
    const subject = rootSubject();
    assert.equal(await a.lock(subject), true);
    const waiting = b.lock(subject);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // b's only connection is free while it waits.
    assert.equal((await b.pool.query('SELECT 1 AS one')).rows[0].one, 1);
    assert.equal(await a.unlock(subject), true);
    assert.equal(await waiting, true);
    assert.equal(await b.unlock(subject), true);
  });

  it('after a TTL takeover the stale instance cannot release the new holder', async () => {
    const a = await connect({
      tables: { state: 'lk_state', lock: 'lk_lock' },
      lock: { ttlMs: 100, maxAttempts: 1 },
    });
    const b = await connect({
      tables: { state: 'lk_state', lock: 'lk_lock' },
      lock: { ttlMs: 30_000, maxAttempts: 200, initialDelayMs: 20, backoffExponent: 1, maxDelayMs: 20 },
    });
    const subject = rootSubject();
    assert.equal(await a.lock(subject), true);
    assert.equal(await b.lock(subject), true, 'taken over after the TTL');
    assert.equal(await a.unlock(subject), false);
    const { rows } = await suite.admin.query('SELECT count(*)::int AS n FROM public.lk_lock WHERE key = $1', [
      subject,
    ]);
    assert.equal(rows[0].n, 1, "the new holder's lock is still there");
    assert.equal(await b.unlock(subject), true);
  });
  it("a job's late unlock does not free the lock another job of the same process took over", async () => {
    const memory = await connect({
      tables: { state: 'lk_state', lock: 'lk_lock' },
      lock: { ttlMs: 1000, maxAttempts: 1 },
    });
    // Two jobs the broker runs in one process: each in its own job context (another database here,
    // so the memory joins neither transaction; only the job identity matters).
    const job = (): AmbientTransaction => ({
      databaseId: 'another-database',
      query: () => Promise.reject(new Error('not joined')),
      onSettled: () => {},
    });
    const [first, second, third] = [job(), job(), job()];
    const subject = rootSubject();
    assert.equal(await runInAmbientTransaction(first, () => memory.lock(subject)), true);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal(await runInAmbientTransaction(second, () => memory.lock(subject)), true, 'taken over');
    assert.equal(await runInAmbientTransaction(first, () => memory.unlock(subject)), false);
    assert.equal(
      await runInAmbientTransaction(third, () => memory.lock(subject)),
      false,
      "the second job's lock is still held",
    );
    assert.equal(await runInAmbientTransaction(second, () => memory.unlock(subject)), true);
    assert.equal(await runInAmbientTransaction(third, () => memory.lock(subject)), true);
    assert.equal(await runInAmbientTransaction(third, () => memory.unlock(subject)), true);
  });
});

describe('PostgresMachineMemory: round trips and lifecycle', () => {
  it('needs one statement for lock+read and two for write+unlock', async () => {
    const pool = new pg.Pool({ connectionString: suite.db.url, max: 2 });
    const statements = recordStatements(pool);
    try {
      const memory = await connectPostgresMachineMemory({
        pool,
        tables: { state: 'rt_state', lock: 'rt_lock' },
      });
      const subject = rootSubject();
      statements.reset();
      assert.equal(await memory.lock(subject), true);
      assert.equal(await memory.read(subject), null);
      assert.equal(statements.count, 1, 'lock+read of a new workflow');
      statements.reset();
      await memory.write(subject, record(subject), null);
      await memory.unlock(subject);
      assert.equal(statements.count, 2, 'write+unlock');

      statements.reset();
      assert.equal(await memory.lock(subject), true);
      const stored = await memory.read(subject);
      assert.deepEqual(stored, record(subject));
      assert.equal(statements.count, 1, 'lock+read of an existing workflow');
      statements.reset();
      await memory.write(subject, record(subject, { status: 'done' }), stored);
      await memory.unlock(subject);
      assert.equal(statements.count, 2, 'compare-and-swap write+unlock');

      await memory.close();
      assert.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1, 'a given pool stays open');
    } finally {
      await pool.end();
    }
  });

  it('keeps the prepared statements of two memories on one pool apart, also with one state table', async () => {
    const pool = new pg.Pool({ connectionString: suite.db.url, max: 1 });
    try {
      const first = await connectPostgresMachineMemory({
        pool,
        tables: { state: 'ps_state', lock: 'ps_lock_a' },
      });
      const second = await connectPostgresMachineMemory({
        pool,
        tables: { state: 'ps_state', lock: 'ps_lock_b' },
      });
      const subject = rootSubject();
      await first.write(subject, record(subject), null);
      for (const memory of [first, second]) {
        assert.equal(await memory.lock(subject), true, 'each memory locks in its own lock table');
        assert.deepEqual(await memory.read(subject), record(subject));
      }
      const { rows } = await pool.query(
        'SELECT (SELECT count(*)::int FROM public.ps_lock_a) AS a, (SELECT count(*)::int FROM public.ps_lock_b) AS b',
      );
      assert.deepEqual(rows[0], { a: 1, b: 1 });
      await Promise.all([first.close(), second.close()]);
    } finally {
      await pool.end();
    }
  });

  it('close() waits for a retention sweep in progress, which stops after its current batch', async () => {
    const tables = { state: 'cs_state', lock: 'cs_lock' };
    await connect({ tables });
    await suite.admin.query(
      `INSERT INTO public.cs_state (subject, data, version, root_subject, status, updated_at)
       SELECT 's' || i, '{}', 1, 's' || i, 'done', now() - interval '1 hour' FROM generate_series(1, 600) i`,
    );
    const warnings: string[] = [];
    await closeDuringSweep(suite.db.url, {
      table: 'cs_state',
      sweepFragment: 'WITH roots AS',
      open: (pool) =>
        connectPostgresMachineMemory({
          pool,
          tables,
          migrate: 'noop',
          logger: {
            debug() {},
            info() {},
            warn: (m: string) => warnings.push(m),
            error: (m: string) => warnings.push(m),
          },
          retention: { finishedAfterMs: 1_000, sweepIntervalMs: 50 },
        }),
      remaining: 100,
      batch: '500 trees',
    });
    assert.deepEqual(warnings, []);
  });

  it('refuses to work after close', async () => {
    const memory = await connectPostgresMachineMemory({ connectionString: suite.db.url });
    await releasePostgresMachineMemory(memory);
    await releasePostgresMachineMemory(memory);
    await assert.rejects(
      memory.read(rootSubject()),
      (e: unknown) => e instanceof ArvoPostgresError && e.code === 'MEMORY_CLOSED',
    );
  });
});

describe('PostgresMachineMemory: the record read with the lock', () => {
  const tables = { state: 'pf_state', lock: 'pf_lock' };

  it('serves it to the first read only; later reads and reads after unlock go to the database', async () => {
    const pool = new pg.Pool({ connectionString: suite.db.url, max: 2 });
    const statements = recordStatements(pool);
    try {
      const memory = await connectPostgresMachineMemory({ pool, tables });
      const other = await connect({ tables });
      const subject = rootSubject();
      await other.write(subject, record(subject, { step: 1 }), null);

      assert.equal(await memory.lock(subject), true);
      statements.reset();
      assert.deepEqual(await memory.read(subject), record(subject, { step: 1 }));
      assert.equal(statements.count, 0, 'the first read is served from the lock statement');
      assert.deepEqual(await memory.read(subject), record(subject, { step: 1 }));
      assert.equal(statements.count, 1, 'it is consumed by the first read');

      // Locked and released without a read: the record fetched with the lock is dropped with it.
      assert.equal(await memory.unlock(subject), true);
      assert.equal(await memory.lock(subject), true);
      assert.equal(await memory.unlock(subject), true);
      const current = await other.read(subject);
      await other.write(subject, record(subject, { step: 2 }), current);
      statements.reset();
      assert.deepEqual(await memory.read(subject), record(subject, { step: 2 }));
      assert.equal(statements.count, 1);

      // A write drops it too: the read after it sees the written record.
      assert.equal(await memory.lock(subject), true);
      await memory.write(subject, record(subject, { step: 3 }), record(subject, { step: 2 }));
      statements.reset();
      assert.deepEqual(await memory.read(subject), record(subject, { step: 3 }));
      assert.equal(statements.count, 1);
      assert.equal(await memory.unlock(subject), true);

      // So does any lock() call on the subject, also a failed one.
      assert.equal(await memory.lock(subject), true);
      assert.equal(await memory.lock(subject), false, 'this instance holds the lock already');
      statements.reset();
      assert.deepEqual(await memory.read(subject), record(subject, { step: 3 }));
      assert.equal(statements.count, 1, 'a failed lock leaves nothing to serve');
      assert.equal(await memory.unlock(subject), true);
      await memory.close();
    } finally {
      await pool.end();
    }
  });

  it('never outlives a change made by a memory of this process: deleteWorkflow, sweep, another writer', async () => {
    const memory = await connect({ tables });
    const other = await connect({ tables });
    const changes: Array<[string, (subject: string) => Promise<unknown>, unknown]> = [
      ['deleteWorkflow by the holder', (subject) => memory.deleteWorkflow(subject), null],
      ['deleteWorkflow by another memory', (subject) => other.deleteWorkflow(subject), null],
      ['a sweep', () => memory.sweep({ abandonedOlderThanMs: 0 }), null],
      ['a sweep by another memory', () => other.sweep({ abandonedOlderThanMs: 0 }), null],
      [
        'a write by another memory (a writer without the lock)',
        async (subject) => other.write(subject, record(subject, { step: 2 }), await other.read(subject)),
        'step 2',
      ],
    ];
    for (const [change, run, expected] of changes) {
      const subject = rootSubject();
      await memory.write(subject, record(subject, { step: 1 }), null);
      assert.equal(await memory.lock(subject), true);
      await run(subject);
      assert.deepEqual(
        await memory.read(subject),
        expected === null ? null : record(subject, { step: 2 }),
        `read after ${change}`,
      );
      assert.equal(await memory.unlock(subject), true);
      await memory.deleteWorkflow(subject);
    }
  });

  it('is still served after writes of other workflows (as under load), by this and other memories', async () => {
    const pool = new pg.Pool({ connectionString: suite.db.url, max: 2 });
    const statements = recordStatements(pool);
    try {
      const memory = await connectPostgresMachineMemory({ pool, tables });
      const other = await connect({ tables });
      const [subject, neighbour] = [rootSubject(), rootSubject()];
      await memory.write(subject, record(subject, { step: 1 }), null);
      assert.equal(await memory.lock(subject), true);
      await memory.write(neighbour, record(neighbour, { step: 1 }), null);
      await other.write(neighbour, record(neighbour, { step: 2 }), await other.read(neighbour));
      statements.reset();
      assert.deepEqual(await memory.read(subject), record(subject, { step: 1 }));
      assert.equal(statements.count, 0, 'served from the lock statement');
      assert.equal(await memory.unlock(subject), true);
      await memory.close();
    } finally {
      await pool.end();
    }
  });

  it('is not served to another holder: a failed lock reads what the holder wrote', async () => {
    const holder = await connect({ tables });
    const waiter = await connect({ tables, lock: { maxAttempts: 1 } });
    const subject = rootSubject();
    await holder.write(subject, record(subject, { step: 1 }), null);
    assert.equal(await waiter.lock(subject), true);
    assert.equal(await waiter.unlock(subject), true);
    assert.equal(await holder.lock(subject), true);
    assert.equal(await waiter.lock(subject), false);
    await holder.write(subject, record(subject, { step: 2 }), await holder.read(subject));
    assert.deepEqual(await waiter.read(subject), record(subject, { step: 2 }));
    assert.equal(await holder.unlock(subject), true);
  });

  it('a stale holder cannot write its old record over the version another process wrote after a TTL takeover', async () => {
    const stale = await connect({ tables, lock: { ttlMs: 200, maxAttempts: 1 } });
    const subject = rootSubject();
    await stale.write(subject, record(subject, { step: 1 }), null);

    assert.equal(await stale.lock(subject), true);
    await waitFor('the stale lock expired', async () => {
      const { rows } = await suite.admin.query(
        'SELECT expires_at <= clock_timestamp() AS expired FROM public.pf_lock WHERE key = $1',
        [subject],
      );
      return rows[0].expired === true;
    });
    // The successor runs in another process (its changes are not counted here): its statements by hand.
    const { rowCount: takenOver } = await suite.admin.query(
      `UPDATE public.pf_lock SET owner = 'successor', expires_at = clock_timestamp() + interval '1 minute'
       WHERE key = $1 AND expires_at <= clock_timestamp()`,
      [subject],
    );
    assert.equal(takenOver, 1, 'taken over after the TTL');
    await suite.admin.query(
      'UPDATE public.pf_state SET data = $2::jsonb, version = version + 1 WHERE subject = $1',
      [subject, JSON.stringify(record(subject, { step: 2 }))],
    );
    await suite.admin.query('DELETE FROM public.pf_lock WHERE key = $1', [subject]);

    const old = await stale.read(subject);
    assert.deepEqual(old, record(subject, { step: 1 }), 'the record as of the stale acquisition');
    await assert.rejects(
      stale.write(subject, record(subject, { step: 99 }), old),
      (e: unknown) => e instanceof MachineMemoryConflictError && e.expectedVersion === '1',
    );
    const { rows } = await suite.admin.query('SELECT data, version FROM public.pf_state WHERE subject = $1', [
      subject,
    ]);
    assert.deepEqual(rows[0], { data: record(subject, { step: 2 }), version: '2' });
    assert.equal(await stale.unlock(subject), false);
  });

  it('is not taken from a snapshot older than the release the lock statement waited for', async () => {
    // The previous holder's TTL runs out while the lock statement waits for its release: its lock was
    // live when the statement (and its snapshot) started, so the record read then is not served.
    const previous = await connect({ tables, lock: { ttlMs: 3_000 } });
    const next = await connect({ tables, lock: { maxAttempts: 1 } });
    const subject = rootSubject();
    await previous.write(subject, record(subject, { step: 1 }), null);
    assert.equal(await previous.lock(subject), true);

    // The previous holder's last write and its release, committed while `next`'s lock statement runs.
    const release = new pg.Client({ connectionString: suite.db.url });
    await release.connect();
    try {
      await release.query('BEGIN');
      await release.query(
        `UPDATE public.pf_state SET data = $2::jsonb, version = version + 1 WHERE subject = $1`,
        [subject, JSON.stringify(record(subject, { step: 2 }))],
      );
      await release.query('DELETE FROM public.pf_lock WHERE key = $1', [subject]);
      const locking = next.lock(subject);
      await waitUntilBlocked(suite.admin, 'held_before', 'the lock statement waits for the release');
      const { rows: started } = await suite.admin.query(
        `SELECT a.query_start < l.expires_at AS live_at_start FROM pg_stat_activity a, public.pf_lock l
         WHERE a.query LIKE '%held_before%' AND a.wait_event_type = 'Lock'
           AND a.datname = current_database() AND l.key = $1`,
        [subject],
      );
      assert.deepEqual(
        started,
        [{ live_at_start: true }],
        "the previous holder's lock was live at the start",
      );
      await waitFor("the previous holder's TTL passed while the statement waits", async () => {
        const { rows } = await suite.admin.query(
          'SELECT expires_at <= clock_timestamp() AS expired FROM public.pf_lock WHERE key = $1',
          [subject],
        );
        return rows[0].expired === true;
      });
      await release.query('COMMIT');
      assert.equal(await locking, true);
    } finally {
      await release.end();
    }
    const current = await next.read(subject);
    assert.deepEqual(current, record(subject, { step: 2 }), 'not the record of the older snapshot');
    await next.write(subject, record(subject, { step: 3 }), current);
    assert.equal(await next.unlock(subject), true);
  });
});
