import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The files each `### src…` heading of CONTRIBUTING.md's architecture map lists, by heading. */
function architectureMap(): Map<string, string[]> {
  const map = new Map<string, string[]>();
  let heading: string[] | undefined;
  for (const line of readFileSync(path.join(root, 'CONTRIBUTING.md'), 'utf8').split('\n')) {
    const section = /^### (src(?:\/[\w-]+)?)$/.exec(line);
    if (section) {
      heading = [];
      map.set(section[1]!, heading);
      continue;
    }
    const entry = /^- `([^`]+)` — \S/.exec(line);
    if (entry && heading) heading.push(entry[1]!);
  }
  return map;
}

/** Every file under `dir` (relative to it), or only those directly in it when not `recursive`. */
function filesUnder(dir: string, recursive: boolean): string[] {
  return readdirSync(path.join(root, dir), { recursive, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(path.join(root, dir), path.join(entry.parentPath, entry.name)))
    .sort();
}

describe('CONTRIBUTING.md architecture map', () => {
  it('lists every file of each module it covers, one line each, and no file that is gone', () => {
    const map = architectureMap();
    assert.ok(map.size > 0, 'no `### src…` headings found');
    for (const [dir, listed] of map) {
      assert.deepEqual([...listed].sort(), filesUnder(dir, dir !== 'src'), `### ${dir}`);
    }
  });

  it('src/broker/pgboss.ts is the only module that imports pg-boss', () => {
    const importers = filesUnder('src', true)
      .filter((file) => /\.ts$/.test(file))
      .filter((file) =>
        /from '(pg-boss)(\/[^']*)?'/.test(readFileSync(path.join(root, 'src', file), 'utf8')),
      );
    assert.deepEqual(importers, [path.join('broker', 'pgboss.ts')]);
  });
});
