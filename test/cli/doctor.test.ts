/**
 * `doctor` on the broker's own tables (the queue control table in pg-boss's schema and the event
 * history), with and without the machine memory. In process: the subprocess suite has its budget.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useTestDatabase } from '../broker/support';
import { runCliInProcess } from '../support/cli';

describe('arvo-postgres doctor: the broker tables', { timeout: 180_000 }, () => {
  const suite = useTestDatabase('cli_doctor_broker_tables');

  async function problemsOf(args: string[]): Promise<{ code: number; problems: Record<string, string[]> }> {
    const { code, output } = await runCliInProcess(['doctor', '--json', '--url', suite.db.url, ...args]);
    const report = JSON.parse(output);
    const problems = Object.fromEntries(report.checks.map((check: any) => [check.name, check.problems]));
    return { code, problems };
  }

  it('names a changed queue control table and history column, then a dropped history index', async () => {
    const { pool } = suite;
    assert.equal((await runCliInProcess(['migrate', '--url', suite.db.url])).code, 0);
    assert.equal((await problemsOf([])).code, 0);

    await pool.query('ALTER TABLE pgboss.arvo_queue_control DROP COLUMN default_priority');
    await pool.query('ALTER TABLE public.arvo_event_history DROP COLUMN root_subject');
    for (const args of [[], ['--broker-only']]) {
      const { code, problems } = await problemsOf(args);
      assert.equal(code, 1);
      assert.deepEqual(problems['broker tables']?.slice(0, 2), [
        'column pgboss.arvo_queue_control.default_priority is missing (expected integer)',
        'column public.arvo_event_history.root_subject is missing (expected text)',
      ]);
    }
    await pool.query('ALTER TABLE pgboss.arvo_queue_control ADD COLUMN default_priority integer');
    await pool.query('ALTER TABLE public.arvo_event_history ADD COLUMN root_subject text');
    // Dropping the column dropped its index: the memory's index check names it, and --broker-only's.
    const missing =
      'index arvo_event_history_root_subject_id_idx on public.arvo_event_history (root_subject, id) is missing';
    assert.deepEqual((await problemsOf([])).problems['memory indexes'], [missing]);
    assert.deepEqual((await problemsOf(['--broker-only'])).problems['broker tables'], [missing]);
    await pool.query(
      'CREATE INDEX arvo_event_history_root_subject_id_idx ON public.arvo_event_history (root_subject, id)',
    );
    assert.equal((await problemsOf([])).code, 0);
    assert.equal((await problemsOf(['--broker-only'])).code, 0);
  });

  it('reports a recorded layout version newer than this release knows', async () => {
    await suite.pool.query(
      "INSERT INTO pgboss.arvo_postgres_migrations (component, version, description) VALUES ('broker:arvo_queue_control', 9, 'from the future')",
    );
    try {
      const { code, problems } = await problemsOf(['--broker-only']);
      assert.equal(code, 1);
      assert.deepEqual(problems['broker migrations'], [
        'broker:arvo_queue_control is at layout version 9; this version of arvo-postgres knows version 1',
      ]);
    } finally {
      await suite.pool.query('DELETE FROM pgboss.arvo_postgres_migrations WHERE version = 9');
    }
  });
});
