// The retry schedule: the documented waits, jittered within ±20 %, the last one repeating.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RETRY_JITTER, RETRY_SCHEDULE_MS, retryDelayMs } from './schedule.ts';

describe('webhook retry schedule', () => {
  test('without jitter: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, then 8 h every time', () => {
    const mid = () => 0.5;
    assert.deepEqual(
      Array.from({ length: 11 }, (_, i) => retryDelayMs(i + 1, RETRY_SCHEDULE_MS, mid)),
      [5e3, 30e3, 120e3, 600e3, 1800e3, 3600e3, 7200e3, 14400e3, 28800e3, 28800e3, 28800e3],
    );
  });

  test('jitter stays within ±20 % and spreads', () => {
    assert.equal(RETRY_JITTER, 0.2);
    assert.equal(
      retryDelayMs(1, RETRY_SCHEDULE_MS, () => 0),
      4_000,
    );
    assert.equal(
      retryDelayMs(1, RETRY_SCHEDULE_MS, () => 1),
      6_000,
    );
    // the random source swept evenly over [0, 1): the delays spread evenly over 30 s ± 20 %
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const d = retryDelayMs(2, RETRY_SCHEDULE_MS, () => i / 200);
      assert.ok(d >= 24_000 && d < 36_000, String(d));
      seen.add(d);
    }
    assert.equal(seen.size, 200, 'each draw of the random source gives another delay');
    assert.deepEqual([Math.min(...seen), Math.max(...seen)], [24_000, 35_940]);
  });

  test('a custom schedule', () => {
    assert.deepEqual(
      [1, 2, 3].map((n) => retryDelayMs(n, [100, 1_000], () => 0.5)),
      [100, 1_000, 1_000],
    );
  });
});
