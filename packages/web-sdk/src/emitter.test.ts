// Emitter: subscription, unsubscription, and listeners that throw.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Emitter } from './emitter.ts';

interface Events {
  tick: number;
  done: { ok: boolean };
}

test('on() returns its unsubscribe function; off() does the same', () => {
  const e = new Emitter<Events>();
  const a: number[] = [];
  const b: number[] = [];
  const stopA = e.on('tick', (n) => a.push(n));
  const listenerB = (n: number) => b.push(n);
  e.on('tick', listenerB);
  e.emit('tick', 1);
  stopA();
  e.emit('tick', 2);
  e.off('tick', listenerB);
  e.emit('tick', 3);
  assert.deepEqual(a, [1]);
  assert.deepEqual(b, [1, 2]);
});

test('a listener that throws stops neither the others nor the emitter; its error is reported', () => {
  const errors: unknown[] = [];
  const e = new Emitter<Events>((err) => errors.push(err));
  const seen: boolean[] = [];
  e.on('done', () => {
    throw new Error('listener bug');
  });
  e.on('done', (d) => seen.push(d.ok));
  e.emit('done', { ok: true });
  e.emit('done', { ok: false });
  assert.deepEqual(seen, [true, false]);
  assert.deepEqual(
    errors.map((err) => (err as Error).message),
    ['listener bug', 'listener bug'],
  );
});

test('clear() removes every listener', () => {
  const e = new Emitter<Events>();
  let calls = 0;
  e.on('tick', () => calls++);
  e.clear();
  e.emit('tick', 1);
  assert.equal(calls, 0);
});
