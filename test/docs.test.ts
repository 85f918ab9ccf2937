/**
 * The docs cannot rot: every TypeScript block of the markdown the package ships (README.md, SECURITY.md,
 * docs/*.md) compiles with a strict tsc against the packed package, as a user's app would, and the
 * quick start runs as written against a real PostgreSQL and prints what the README shows.
 * Markers and fragments: test/support/doc-blocks.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type * as TypeScript from 'typescript';
import { createTestDatabase, type TestDatabase } from './support/database';
import { CONTEXT, type DocBlock, STUBBED_MODULES, typeScriptBlocks } from './support/doc-blocks';
import { type ConsumerApp, installPackedPackage, STRICT_NODE } from './support/packed-package';
import { root } from './support/process';

const run = promisify(execFile);

/** The markdown files that ship with the package and show code. */
const DOCS = [
  'README.md',
  'SECURITY.md',
  ...readdirSync(path.join(root, 'docs'))
    .filter((file) => file.endsWith('.md'))
    .map((file) => `docs/${file}`),
];

/** Packages the blocks import beyond what every user installs (README, "Install"). */
const BLOCK_PACKAGES = ['express', '@types/express'];

/** The source file a block compiles as, inside the consumer app. */
const sourceName = (block: DocBlock) =>
  `${block.file.replace(/\W+/g, '-').replace(/-md$/, '')}-line-${block.fenceLine}.ts`;

describe('the TypeScript in the docs', { timeout: 600_000 }, () => {
  const blocks = DOCS.flatMap((file) => typeScriptBlocks(root, file));
  const quickStart = blocks.filter((block) => block.run);
  let consumer: ConsumerApp;
  let folder: string;
  let db: TestDatabase;

  before(async () => {
    consumer = await installPackedPackage(BLOCK_PACKAGES);
    folder = path.join(consumer.dir, 'blocks');
    db = await createTestDatabase('docs');
  });

  after(async () => {
    await consumer?.remove();
    await db?.drop();
  });

  it('finds the blocks: the README has one quick start to run, and fragments name what they use', () => {
    assert.ok(blocks.length >= 10, `only ${blocks.length} blocks found`);
    assert.deepEqual(
      quickStart.map((block) => block.file),
      ['README.md'],
    );
    assert.ok(quickStart[0]!.output, 'the README shows what the quick start prints');
    for (const block of blocks) {
      for (const module of Object.keys(STUBBED_MODULES)) {
        assert.equal(
          block.code.includes(`from '${module}'`),
          block.uses.includes(module),
          `${block.file}:${block.fenceLine} imports ${module} only with "uses ${module}"`,
        );
      }
    }
  });

  it('every block compiles under strict tsc against the packed package, with no unused import', async () => {
    await mkdir(folder);
    const files: string[] = [];
    for (const block of blocks) {
      const declarations = block.uses.filter((name) => name in CONTEXT).map((name) => CONTEXT[name]);
      // Declarations go after the code, so a diagnostic's line is the block's line; `export {}` makes every
      // block a module (top-level await).
      files.push(path.join(folder, sourceName(block)));
      await writeFile(files.at(-1)!, [block.code, '', ...declarations, 'export {};', ''].join('\n'));
    }
    files.push(path.join(folder, 'stubbed-modules.d.ts'));
    await writeFile(files.at(-1)!, `${Object.values(STUBBED_MODULES).join('\n\n')}\n`);

    // The app's own TypeScript, so declarations resolve from its node_modules as a user's tsc would.
    const ts: typeof TypeScript = createRequire(path.join(consumer.dir, 'package.json'))('typescript');
    const { options, errors } = ts.convertCompilerOptionsFromJson(
      { ...STRICT_NODE, noUnusedLocals: true, outDir: path.join(folder, 'out'), rootDir: folder },
      folder,
    );
    assert.deepEqual(errors, []);
    const program = ts.createProgram(files, options);
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((diagnostic) => !isUnusedOutsideImports(ts, diagnostic, blocks))
      .map((diagnostic) => describeDiagnostic(ts, diagnostic, blocks));
    assert.deepEqual(problems, [], `blocks that do not compile:\n${problems.join('\n')}`);
    assert.equal(program.emit().emitSkipped, false);
  });

  it('the quick start runs as written against PostgreSQL and prints what the README shows', async () => {
    const [block] = quickStart;
    const script = path.join(folder, 'out', sourceName(block!).replace(/\.ts$/, '.js'));
    const { stdout, stderr } = await run(process.execPath, [script], {
      cwd: consumer.dir,
      env: { ...process.env, DATABASE_URL: db.url },
      timeout: 180_000,
    }).catch((error: { code?: number; stdout?: string; stderr?: string }) =>
      assert.fail(`the quick start exited with ${error.code}:\n${error.stdout}${error.stderr}`),
    );
    assert.equal(stdout, block!.output, stderr);
  });
});

/**
 * A fragment may leave a name it defines unused (it shows one step, not a program), but never an import;
 * a whole program (`run`) may leave nothing unused.
 */
function isUnusedOutsideImports(
  ts: typeof TypeScript,
  diagnostic: TypeScript.Diagnostic,
  blocks: DocBlock[],
): boolean {
  if (![6133, 6196, 6198].includes(diagnostic.code) || !diagnostic.file) return false;
  const block = blockOf(diagnostic.file, blocks);
  if (!block || block.run) return false;
  const start = diagnostic.start ?? 0;
  return !diagnostic.file.statements.some(
    (statement) => ts.isImportDeclaration(statement) && statement.pos <= start && start < statement.end,
  );
}

/** `README.md:57: TS2304 Cannot find name 'x'.`: where the problem is in the markdown. */
function describeDiagnostic(
  ts: typeof TypeScript,
  diagnostic: TypeScript.Diagnostic,
  blocks: DocBlock[],
): string {
  const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
  if (!diagnostic.file) return `TS${diagnostic.code} ${message}`;
  const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
  const block = blockOf(diagnostic.file, blocks);
  const where = block
    ? `${block.file}:${block.fenceLine + 1 + line}`
    : `${diagnostic.file.fileName}:${line + 1}`;
  return `${where}: TS${diagnostic.code} ${message}`;
}

function blockOf(file: TypeScript.SourceFile, blocks: DocBlock[]): DocBlock | undefined {
  return blocks.find((block) => path.basename(file.fileName) === sourceName(block));
}
