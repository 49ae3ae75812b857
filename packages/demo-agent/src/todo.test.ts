// The demo agent's answers and its to-do list.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { answer, HELP, restoredTodos } from './todo.ts';

test('add, done, list and clear change the list and say so', () => {
  const a = answer('add buy milk', 'ana', []);
  assert.equal(a.text, 'Added #1: buy milk (for ana).');
  assert.deepEqual(a.todos, [{ text: 'buy milk', done: false }]);
  const b = answer('add call Bo', 'bo', a.todos!);
  const c = answer('done 1', 'bo', b.todos!);
  assert.deepEqual(c.todos, [
    { text: 'buy milk', done: true },
    { text: 'call Bo', done: false },
  ]);
  assert.equal(answer('list', 'ana', c.todos!).text, '1. [x] buy milk\n2. [ ] call Bo');
  assert.equal(answer('list', 'ana', c.todos!).todos, undefined, 'listing changes nothing');
  assert.deepEqual(answer('clear', 'ana', c.todos!).todos, []);
});

test('mistakes get a hint, anything else is repeated, help explains', () => {
  assert.match(answer('done 7', 'ana', []).text, /Which one/);
  assert.match(answer('add', 'ana', []).text, /Add what/);
  assert.equal(answer('hello there', 'ana', []).text, 'ana said: hello there');
  assert.equal(answer('help', 'ana', []).text, HELP);
});

test('a saved list comes back after a restart; anything malformed is dropped', () => {
  assert.deepEqual(restoredTodos({ todos: [{ text: 'a', done: true }, { text: 1 }, null] }), [
    { text: 'a', done: true },
  ]);
  assert.deepEqual(restoredTodos(null), []);
  assert.deepEqual(restoredTodos({ todos: 'x' }), []);
});
