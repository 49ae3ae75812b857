// The README's table of error codes lists every code the SDK raises, and nothing else.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { WORKER_ERRORS } from './errors.ts';

test('every WORKER_ERRORS code is in the README, and the README names no other', async () => {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  const listed = [...readme.matchAll(/^\| `(WORKER_[A-Z_]+)` /gm)].map((m) => m[1]);
  assert.deepEqual(listed.toSorted(), Object.keys(WORKER_ERRORS).toSorted());
});
