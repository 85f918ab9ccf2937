/**
 * The configuration reference's tables (docs/configuration.md), generated from the option declarations: each row is an option of
 * an option table (`src/**\/options.ts`: what is validated), its default and meaning are the
 * `@defaultValue` and TSDoc of the matching field of the public options interface (what users read in
 * the `.d.ts`). `npm run docs:options` rewrites the tables between their `<!-- options:NAME -->`
 * markers; test/scripts/options-docs.test.ts fails when they are stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { BROKER_OPTIONS, QUEUE_OPTIONS, WORKER_OPTIONS } from '../src/broker/options';
import { LOCK_OPTIONS } from '../src/lock/options';
import { MEMORY_OPTIONS } from '../src/memory/options';
import type { OptionSpec } from '../src/shared/options';
import { CONNECTION_OPTIONS } from '../src/shared/pool';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CONFIGURATION_DOC = path.join(ROOT, 'docs', 'configuration.md');

type Table = Readonly<Record<string, OptionSpec<unknown> & { table?: Table }>>;

/** One generated table: its marker, the option table, and the file and interface documenting it. */
type DocumentedTable = [marker: string, table: Table, file: string, type: string];

const BROKER_TYPES = 'src/broker/types.ts';

const DOCUMENTED_TABLES: DocumentedTable[] = [
  ['connection', CONNECTION_OPTIONS, 'src/shared/pool.ts', 'ConnectionOptions'],
  ['broker', BROKER_OPTIONS, BROKER_TYPES, 'PostgresEventBrokerOptions'],
  ['queue', QUEUE_OPTIONS, BROKER_TYPES, 'BrokerQueueOptions'],
  ['worker', WORKER_OPTIONS, BROKER_TYPES, 'BrokerWorkerOptions'],
  ['memory', MEMORY_OPTIONS, 'src/memory/options.ts', 'PostgresMachineMemoryOptions'],
  ['lock', LOCK_OPTIONS, 'src/lock/options.ts', 'PostgresLockOptions'],
];

/** One documented option: its dotted path, spec, TSDoc summary and `@defaultValue`. */
export interface DocumentedOption {
  option: string;
  spec: OptionSpec<unknown> & { table?: Table };
  doc: string;
  defaultValue: string | undefined;
}

const program = ts.createProgram([...new Set(DOCUMENTED_TABLES.map(([, , file]) => path.join(ROOT, file)))], {
  strict: true,
  noEmit: true,
});
const checker = program.getTypeChecker();

/** The declared type of the interface `name` in `file`. */
function interfaceType(file: string, name: string): ts.Type {
  const source = program.getSourceFile(path.join(ROOT, file));
  const declaration = source?.statements.find(
    (statement): statement is ts.InterfaceDeclaration =>
      ts.isInterfaceDeclaration(statement) && statement.name.text === name,
  );
  if (declaration === undefined) throw new Error(`no interface ${name} in ${file}`);
  return checker.getTypeAtLocation(declaration.name);
}

/** The property `key` of `type`, looking into the object members of a union (`false | {…}`). */
function propertyOf(type: ts.Type, key: string): ts.Symbol | undefined {
  const members = type.isUnion() ? type.types : [type];
  for (const member of members) {
    const property = member.getProperty(key);
    if (property !== undefined) return property;
  }
  return undefined;
}

/**
 * Every option of `table` documented by `type`, at `prefix`: nested tables inline, unless `separate`
 * (a table generated on its own, or an option listed there).
 */
function documentedOptions(
  table: Table,
  type: ts.Type,
  prefix: string,
  separate: ReadonlySet<unknown>,
): DocumentedOption[] {
  const options: DocumentedOption[] = [];
  for (const [key, spec] of Object.entries(table)) {
    if (separate.has(spec)) continue;
    const option = `${prefix}${key}`;
    const property = propertyOf(type, key);
    if (property === undefined) throw new Error(`${option} has no TSDoc field`);
    const doc = ts
      .displayPartsToString(property.getDocumentationComment(checker))
      .replace(/\{@link\s+([^\s}|]+)[^}]*\}/g, '`$1`')
      .replace(/\s+/g, ' ');
    const tag = property.getJsDocTags(checker).find((candidate) => candidate.name === 'defaultValue');
    const defaultValue = tag && ts.displayPartsToString(tag.text).trim();
    const inline = spec.table !== undefined && !separate.has(spec.table);
    if (!inline || defaultValue !== undefined) options.push({ option, spec, doc, defaultValue });
    if (inline) {
      const nestedType = checker.getNonNullableType(checker.getTypeOfSymbol(property));
      options.push(...documentedOptions(spec.table!, nestedType, `${option}.`, separate));
    }
  }
  return options;
}

/** The documented options of each generated table, by marker. */
export function documentedTables(): Map<string, DocumentedOption[]> {
  // A table generated on its own (the connection's, the queue's) is left out of the others.
  const tables = new Map<string, DocumentedOption[]>();
  for (const [marker, table, file, type] of DOCUMENTED_TABLES) {
    const separate = new Set<unknown>();
    for (const [otherMarker, other] of DOCUMENTED_TABLES.filter((entry) => entry[1] !== table)) {
      separate.add(other);
      if (otherMarker === 'connection') for (const spec of Object.values(other)) separate.add(spec);
    }
    tables.set(marker, documentedOptions(table, interfaceType(file, type), '', separate));
  }
  return tables;
}

/** The Markdown table of `options`. */
function markdownTable(options: DocumentedOption[]): string {
  const cell = (text: string) => text.replaceAll('|', '\\|');
  const rows = options.map(
    ({ option, doc, defaultValue }) => `| \`${option}\` | ${cell(defaultValue ?? '—')} | ${cell(doc)} |`,
  );
  return ['| option | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

/** `markdown` with every table between its markers generated anew. */
export function withGeneratedTables(markdown: string): string {
  let text = markdown;
  for (const [marker, options] of documentedTables()) {
    const open = `<!-- options:${marker} -->`;
    const close = `<!-- /options:${marker} -->`;
    const start = text.indexOf(open);
    const end = text.indexOf(close);
    if (start < 0 || end < start) throw new Error(`docs/configuration.md has no ${open} … ${close}`);
    text = `${text.slice(0, start + open.length)}\n${markdownTable(options)}\n${text.slice(end)}`;
  }
  return text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(CONFIGURATION_DOC, withGeneratedTables(readFileSync(CONFIGURATION_DOC, 'utf8')));
}
