/**
 * The TypeScript blocks of the markdown the package ships, as `test/docs.test.ts` compiles and runs them.
 *
 * A block is a whole program unless the line before its fence says otherwise:
 * - `<!-- docs-test: run -->`: a whole program that the test also runs against PostgreSQL (with
 *   `DATABASE_URL`); when the next fenced block starts with `$ `, the rest of it is what it must print.
 * - `<!-- docs-test: uses broker, pool -->`: a fragment using names the surrounding text defines (declared
 *   from {@link CONTEXT}) or a module that cannot be installed (stubbed by {@link STUBBED_MODULES}); an
 *   unknown name fails the test.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export interface DocBlock {
  /** The markdown file, relative to the repository root. */
  file: string;
  /** 1-based line of the block's opening fence: its code starts on the next line. */
  fenceLine: number;
  code: string;
  run: boolean;
  uses: string[];
  /** What a `run` block prints, when the docs show it. */
  output?: string;
}

/** What a fragment may use without defining it: a declaration per name, appended to the fragment. */
export const CONTEXT: Readonly<Record<string, string>> = {
  admin: `declare const admin: import('pg').Pool;`,
  appUrl: `declare const appUrl: string;`,
  broker: `declare const broker: import('arvo-postgres').PostgresEventBroker;`,
  connectionString: `declare const connectionString: string;`,
  database: `declare const database: string;`,
  host: `declare const host: string;`,
  orderMachine: `declare const orderMachine: import('arvo-xstate').ArvoMachine;`,
  pager: `declare const pager: { notify(message: string): Promise<void> };`,
  password: `declare const password: string;`,
  pool: `declare const pool: import('pg').Pool;`,
  port: `declare const port: number;`,
  user: `declare const user: string;`,
};

/**
 * Modules a fragment may import that cannot be installed, as ambient declarations. `arvo-xstate` (Arvo 2's
 * orchestrators) is not on the npm registry; its stub is the signature its docs give, so the memory's
 * assignability to the orchestrator's `IMachineMemory<MachineMemoryRecord>` is still checked.
 */
export const STUBBED_MODULES: Readonly<Record<string, string>> = {
  'arvo-xstate': `declare module 'arvo-xstate' {
  import type { ArvoEvent } from 'arvo-core';
  interface IMachineMemory<T extends Record<string, any>> {
    read(id: string): Promise<T | null>;
    write(id: string, data: T, prevData: T | null): Promise<void>;
    lock(id: string): Promise<boolean>;
    unlock(id: string): Promise<boolean>;
  }
  type MachineMemoryRecord = {
    subject: string;
    parentSubject: string | null;
    status: string;
    value: string | Record<string, any> | null;
    state: object;
    consumed: ArvoEvent[];
    produced: ArvoEvent[];
    machineDefinition: string | null;
  };
  export interface ArvoMachine {
    readonly source: string;
  }
  export interface ArvoOrchestrator {
    readonly source: string;
    readonly memory: IMachineMemory<MachineMemoryRecord>;
    execute(event: ArvoEvent, opentelemetry?: { inheritFrom: 'EVENT' | 'CONTEXT' }): Promise<ArvoEvent[]>;
  }
  export function createArvoOrchestrator(param: {
    memory: IMachineMemory<MachineMemoryRecord>;
    executionunits: number;
    machines: ArvoMachine[];
  }): ArvoOrchestrator;
}`,
};

const MARKER = /^<!-- docs-test: (.*) -->$/;
const FENCE = /^```(\S*)/;

/** Every ```ts block of `file` (relative to `root`), with its marker; a malformed or stray marker throws. */
export function typeScriptBlocks(root: string, file: string): DocBlock[] {
  const lines = readFileSync(path.join(root, file), 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  let pendingRun: DocBlock | undefined;
  for (let index = 0; index < lines.length; index++) {
    const fence = FENCE.exec(lines[index]!);
    const marker = MARKER.exec(lines[index]!);
    if (marker && !/^```(ts|typescript)$/.test(lines[index + 1] ?? '')) {
      throw new Error(
        `${file}:${index + 1}: a docs-test marker must sit on the line before a \`\`\`ts fence`,
      );
    }
    if (!fence) continue;
    const end = lines.findIndex((line, at) => at > index && line.startsWith('```'));
    if (end < 0) throw new Error(`${file}:${index + 1}: unclosed code fence`);
    const body = lines.slice(index + 1, end);
    if (pendingRun && body[0]?.startsWith('$ ')) pendingRun.output = `${body.slice(1).join('\n')}\n`;
    pendingRun = undefined;
    if (fence[1] === 'ts' || fence[1] === 'typescript') {
      const block: DocBlock = {
        file,
        fenceLine: index + 1,
        code: body.join('\n'),
        run: false,
        uses: [],
        ...parseMarker(file, index, MARKER.exec(lines[index - 1] ?? '')?.[1]),
      };
      blocks.push(block);
      if (block.run) pendingRun = block;
    }
    index = end;
  }
  return blocks;
}

function parseMarker(file: string, fenceIndex: number, marker: string | undefined): Partial<DocBlock> {
  if (marker === undefined) return {};
  if (marker === 'run') return { run: true };
  const uses = /^uses (.+)$/.exec(marker)?.[1]?.split(/,\s*/);
  if (!uses) throw new Error(`${file}:${fenceIndex}: unknown docs-test marker ${JSON.stringify(marker)}`);
  for (const name of uses) {
    if (!(name in CONTEXT) && !(name in STUBBED_MODULES))
      throw new Error(`${file}:${fenceIndex}: docs-test knows no ${JSON.stringify(name)}`);
  }
  return { uses };
}
