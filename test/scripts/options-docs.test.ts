/**
 * The configuration reference's tables (docs/configuration.md) are what `npm run docs:options` generates from the option tables
 * and the options interfaces' TSDoc,  and each `@defaultValue` states the default the code applies: an
 * option table, its interface and the docs cannot drift apart.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CONFIGURATION_DOC, documentedTables, withGeneratedTables } from '../../scripts/options-docs';

describe('configuration tables', () => {
  it('docs/configuration.md holds the tables generated from the option declarations (run `npm run docs:options`)', () => {
    const doc = readFileSync(CONFIGURATION_DOC, 'utf8');
    assert.equal(doc, withGeneratedTables(doc));
  });

  it("each option's @defaultValue states the default it is validated with", () => {
    let compared = 0;
    for (const options of documentedTables().values()) {
      for (const { option, spec, doc, defaultValue } of options) {
        assert.ok(doc.length > 0, `${option} has no TSDoc`);
        const primitive = ['string', 'number', 'boolean'].includes(typeof spec.default);
        if (primitive) assert.ok(defaultValue !== undefined, `${option} has no @defaultValue`);
        // A default stated as one literal (optionally followed by a note in parentheses) is the code's.
        const literal = /^`([^`]+)`( \(.*\))?$/.exec(defaultValue ?? '')?.[1];
        if (literal === undefined) continue;
        assert.equal(literal, primitive ? String(spec.default) : undefined, `@defaultValue of ${option}`);
        compared++;
      }
    }
    assert.ok(compared >= 60, `only ${compared} defaults compared`);
  });
});
