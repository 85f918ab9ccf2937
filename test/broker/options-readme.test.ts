/**
 * The broker's tables in the configuration reference (docs/configuration.md) list exactly the options the
 * code validates, with the defaults the code applies: a table row added, removed or changed without the
 * code (or the other way round) fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BROKER_KEYS, QUEUE_KEYS, resolveBrokerOptions, WORKER_KEYS } from '../../src/broker/options';
import { CONNECTION_OPTION_KEYS } from '../../src/shared/pool';

const reference = readFileSync(
  path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'configuration.md'),
  'utf8',
);

interface Row {
  option: string;
  /** The default as written, when it is one literal (`` `120` ``, optionally followed by a note in parentheses). */
  literal: string | undefined;
}

/** The rows of the `| option | default | meaning |` table that follows `heading` in docs/configuration.md. */
function tableAfter(heading: string): Row[] {
  const start = reference.indexOf(heading);
  assert.ok(start >= 0, `docs/configuration.md has no ${JSON.stringify(heading)}`);
  const lines = reference.slice(start).split('\n');
  const header = lines.findIndex((line) => line.startsWith('| option | default |'));
  const rows: Row[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const [names = '', defaults = ''] = line.split(' | ').map((cell) => cell.replace(/^\| /, ''));
    // `a.b` / `c` is a.b and a.c; `x`, `y` lists several options sharing a row.
    const options = [...names.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
    const prefix = options[0]!.includes('.') ? options[0]!.slice(0, options[0]!.lastIndexOf('.') + 1) : '';
    const literals = names.includes(' / ') ? defaults.split(' / ') : [defaults];
    options.forEach((option, index) => {
      const literal = /^`([^`]+)`( \(.*\))?$/.exec(literals[index]?.trim() ?? '')?.[1];
      rows.push({ option: index > 0 && prefix ? `${prefix}${option}` : option, literal });
    });
  }
  return rows;
}

const sorted = (names: readonly string[]) => [...names].sort();

describe('docs/configuration.md tables', () => {
  const resolved = resolveBrokerOptions({
    connectionString: 'postgres://user@localhost/db',
  }) as unknown as Record<string, Record<string, unknown>>;
  const connection = tableAfter('## Connection (all three components)');
  const broker = tableAfter('## `new PostgresEventBroker(options)`');
  const queue = tableAfter('Queue options (`register(handler, { queue })`');
  const worker = tableAfter('Worker options (`register(handler, { worker })`');

  it('list exactly the options the code accepts', () => {
    assert.deepEqual(sorted(connection.map((row) => row.option)), sorted(CONNECTION_OPTION_KEYS));
    const topLevel = [...new Set(broker.map((row) => row.option.split('.')[0]!))];
    assert.deepEqual(
      sorted(topLevel),
      sorted(BROKER_KEYS.filter((key) => !(CONNECTION_OPTION_KEYS as readonly string[]).includes(key))),
    );
    assert.deepEqual(
      sorted(broker.filter((row) => row.option.startsWith('circuitBreaker.')).map((row) => row.option)),
      sorted(Object.keys(resolved.circuitBreaker!).map((key) => `circuitBreaker.${key}`)),
    );
    assert.deepEqual(sorted(queue.map((row) => row.option)), sorted(QUEUE_KEYS));
    assert.deepEqual(sorted(worker.map((row) => row.option)), sorted(WORKER_KEYS));
  });

  it('state the defaults the code applies', () => {
    const lookup = (root: Record<string, unknown>, option: string) =>
      option.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown>)?.[key], root);
    const checks: Array<[Row[], Record<string, unknown>]> = [
      [broker, resolved],
      [queue, resolved.queue!],
      [worker, resolved.worker!],
    ];
    let compared = 0;
    for (const [rows, root] of checks) {
      for (const row of rows) {
        if (row.literal === undefined) continue;
        assert.equal(row.literal, String(lookup(root, row.option)), `documented default of ${row.option}`);
        compared++;
      }
    }
    assert.ok(compared >= 25, `only ${compared} defaults compared`);
  });
});
