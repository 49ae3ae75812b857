// Unit tests for the outbox: order, the newest state only, and its bounds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OUTBOX_MAX_BYTES, OUTBOX_MAX_MESSAGES, Outbox } from './outbox.ts';

test('frames come out in the order they went in; a state replaces the older one, in the place of the newer', () => {
  const outbox = new Outbox('ses_1');
  outbox.message('m1', 2);
  outbox.state('s1');
  outbox.message('m2', 2);
  outbox.state('s2');
  outbox.message('m3', 2);
  assert.equal(outbox.size, 4);
  assert.deepEqual(outbox.take(), ['m1', 'm2', 's2', 'm3']);
  assert.equal(outbox.size, 0);
  assert.deepEqual(outbox.take(), []);
});

test(`at most ${OUTBOX_MAX_MESSAGES} messages are kept: the oldest go first, and the state stays`, () => {
  const outbox = new Outbox('ses_1');
  outbox.state('state');
  let dropped = 0;
  for (let i = 0; i < OUTBOX_MAX_MESSAGES + 5; i++) dropped += outbox.message(`m${i}`, 10);
  assert.equal(dropped, 5);
  assert.equal(outbox.dropped, 5);
  const texts = outbox.take();
  assert.equal(texts.length, OUTBOX_MAX_MESSAGES + 1);
  assert.deepEqual(texts.slice(0, 2), ['state', 'm5']);
  assert.equal(texts.at(-1), `m${OUTBOX_MAX_MESSAGES + 4}`);
});

test(`at most ${OUTBOX_MAX_BYTES} bytes of messages are kept: the oldest go first`, () => {
  const outbox = new Outbox('ses_1');
  const quarter = OUTBOX_MAX_BYTES / 4;
  for (const text of ['a', 'b', 'c', 'd']) assert.equal(outbox.message(text, quarter), 0);
  assert.equal(outbox.message('e', 1), 1);
  assert.equal(outbox.message('f', quarter), 1);
  assert.deepEqual(outbox.take(), ['c', 'd', 'e', 'f']);
  // the count starts again once it is emptied
  assert.equal(outbox.message('g', quarter), 0);
});
