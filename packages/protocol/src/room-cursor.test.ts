import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RoomCursor } from './room-cursor.ts';

test('the cursor is the newest message heard, or a later mark; a message that comes twice is taken once', () => {
  const c = new RoomCursor(3);
  assert.equal(c.heard, null);
  c.mark('2026-01-01T00:00:01.000000Z');
  assert.deepEqual(c.heard, { at: '2026-01-01T00:00:01.000000Z' });
  assert.equal(c.message('m1', '2026-01-01T00:00:02.000000Z'), true);
  assert.equal(c.message('m1', '2026-01-01T00:00:02.000000Z'), false, 'replayed and live: once');
  // one of the same microsecond sorts by id; an older one (relayed late) does not move the cursor back
  assert.equal(c.message('m2', '2026-01-01T00:00:02.000000Z'), true);
  assert.equal(c.message('m0', '2026-01-01T00:00:01.500000Z'), true);
  assert.deepEqual(c.heard, { at: '2026-01-01T00:00:02.000000Z', id: 'm2' });
  c.mark('2026-01-01T00:00:01.900000Z');
  assert.deepEqual(
    c.heard,
    { at: '2026-01-01T00:00:02.000000Z', id: 'm2' },
    'an earlier mark changes nothing',
  );
  c.mark('2026-01-01T00:00:03.000000Z');
  assert.deepEqual(c.heard, { at: '2026-01-01T00:00:03.000000Z' });
  // it keeps the ids of the last few only
  c.message('m3', '2026-01-01T00:00:04.000000Z');
  assert.equal(c.message('m1', '2026-01-01T00:00:02.000000Z'), true, 'm1 was forgotten');
  c.reset('2026-01-01T00:00:05.000000Z');
  assert.deepEqual(c.heard, { at: '2026-01-01T00:00:05.000000Z' });
  assert.equal(c.message('m3', '2026-01-01T00:00:06.000000Z'), true, 'a new session remembers no id');
});
