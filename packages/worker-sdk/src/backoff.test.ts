// Unit tests for the reconnect backoff.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelayMs } from './backoff.ts';

const policy = { initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2, jitter: 0.5 };

test('delays grow exponentially up to maxDelayMs', () => {
  const delays = [1, 2, 3, 4, 5, 6].map((attempt) => backoffDelayMs(attempt, policy, () => 0));
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
});

test('jitter takes away at most the jitter fraction', () => {
  assert.equal(
    backoffDelayMs(3, policy, () => 0.999999),
    200,
  );
  assert.equal(
    backoffDelayMs(3, { ...policy, jitter: 0 }, () => 0.9),
    400,
  );
  assert.equal(
    backoffDelayMs(3, { ...policy, jitter: 1 }, () => 0.5),
    200,
  );
});
