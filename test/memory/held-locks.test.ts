import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StateChanges } from '../../src/memory/held-locks';

describe('StateChanges: when a record read with a lock is stale', () => {
  it("moves a subject's version on a change of its row or of any rows, not on another subject's", () => {
    const changes = new StateChanges();
    const before = changes.versionOf('a');
    changes.changed('b');
    assert.equal(changes.versionOf('a'), before, "another subject's change");
    changes.changed('a');
    const afterOwn = changes.versionOf('a');
    assert.notEqual(afterOwn, before, 'its own change');
    changes.changed();
    assert.notEqual(changes.versionOf('a'), afterOwn, 'a change of many rows');
  });

  it('moves every version, never back, when it stops telling 10,000 subjects apart', () => {
    const changes = new StateChanges();
    changes.changed('early');
    const early = changes.versionOf('early');
    const untouched = changes.versionOf('untouched');
    for (let index = 0; index < 10_000; index++) changes.changed(`subject ${index}`);
    assert.ok(changes.versionOf('early') > early, 'a subject forgotten while changed counts as changed');
    assert.ok(changes.versionOf('untouched') > untouched);
    const last = changes.versionOf('subject 9999');
    changes.changed('subject 9999');
    assert.ok(changes.versionOf('subject 9999') > last);
  });
});
