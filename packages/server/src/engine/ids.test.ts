// newId: ids sort by creation time (the queue breaks ties of equal timestamps by id) and never repeat.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { newId } from './ids.ts';

/** Plain code-unit order: what ORDER BY id gives on SQLite (BINARY) and PostgreSQL (C collation). */
const sorted = (ids: string[]) => [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

describe('newId', () => {
  test('is the prefix, an underscore and 21 lower-case base-36 characters', () => {
    for (const prefix of ['s', 'w', 'm', 'viewer']) {
      assert.match(newId(prefix, 1_767_225_600_000), new RegExp(`^${prefix}_[0-9a-z]{21}$`));
    }
  });

  test('carries its creation time, by default the wall clock', () => {
    const at = Date.UTC(2026, 0, 1, 12);
    assert.equal(Number.parseInt(newId('s', at).slice(2, 11), 36), at);
    const before = Date.now();
    const t = Number.parseInt(newId('s').slice(2, 11), 36);
    assert.ok(t >= before && t <= Date.now(), `${t} is not now`);
  });

  test('ids made in the same millisecond sort in the order they were made', () => {
    const at = Date.UTC(2026, 0, 2);
    const ids = Array.from({ length: 2_000 }, () => newId('s', at));
    assert.deepEqual(sorted(ids), ids);
  });

  test('ids of one millisecond keep their order when ids of other times are made in between', () => {
    // a test's manual clock and the wall clock taking turns
    const manual = Date.UTC(2026, 0, 4);
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      ids.push(newId('s', manual));
      newId('w', Date.now() + i);
    }
    assert.deepEqual(sorted(ids), ids);
  });

  test('a later millisecond sorts after every id of an earlier one, however many there were', () => {
    const at = Date.UTC(2026, 0, 3);
    const ids = [
      ...Array.from({ length: 100 }, () => newId('s', at)),
      newId('s', at + 1),
      newId('s', at + 1_000),
      newId('s', at + 86_400_000),
    ];
    assert.deepEqual(sorted(ids), ids);
  });

  test('times of different lengths in base 36 still sort by time (zero padded)', () => {
    const ids = [newId('s', 1), newId('s', 36), newId('s', 36 ** 5), newId('s', Date.UTC(2026, 0, 1))];
    assert.deepEqual(sorted(ids), ids);
  });

  test('never repeats, within a millisecond or across them', () => {
    const at = Date.UTC(2026, 0, 4);
    const ids = new Set<string>();
    for (let i = 0; i < 20_000; i++) ids.add(newId('s', at));
    for (let i = 0; i < 5_000; i++) ids.add(newId('s', at + 1 + Math.floor(i / 7)));
    // the same moment under another prefix is another id
    ids.add(newId('w', at + 5_000));
    ids.add(newId('s', at + 5_000));
    assert.equal(ids.size, 25_002);
  });
});
