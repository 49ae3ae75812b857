import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BucketMap, TokenBucket } from './rate-limit.ts';

test('a burst passes, then the rate refills one token at a time', () => {
  let now = 0;
  const bucket = new TokenBucket({ perSecond: 10, burst: 3 }, () => now);
  assert.deepEqual([bucket.take(), bucket.take(), bucket.take(), bucket.take()], [true, true, true, false]);
  now += 99;
  assert.equal(bucket.take(), false, 'not yet a whole token after 99 ms at 10/s');
  now += 1;
  assert.equal(bucket.take(), true);
  assert.equal(bucket.take(), false);
  now += 10_000;
  assert.deepEqual(
    [bucket.take(), bucket.take(), bucket.take(), bucket.take()],
    [true, true, true, false],
    'never more than the burst',
  );
});

test('waitMs says how long until the next token', () => {
  let now = 0;
  const bucket = new TokenBucket({ perSecond: 2, burst: 1 }, () => now);
  assert.equal(bucket.waitMs(), 0);
  assert.equal(bucket.take(), true);
  assert.equal(bucket.waitMs(), 500);
  now += 200;
  assert.equal(bucket.waitMs(), 300);
  now += 300;
  assert.equal(bucket.waitMs(), 0);
  assert.equal(bucket.take(), true);
});

test('a clock that steps back does not mint tokens', () => {
  let now = 1_000;
  const bucket = new TokenBucket({ perSecond: 1, burst: 1 }, () => now);
  assert.equal(bucket.take(), true);
  now = 0;
  assert.equal(bucket.take(), false);
  now = 1_500;
  assert.equal(bucket.take(), false, 'time lost to the step back is not counted twice');
  now = 2_000;
  assert.equal(bucket.take(), true);
});

test('BucketMap: one bucket per key; a refused take says how long to wait', () => {
  const now = 0;
  const buckets = new BucketMap({ perSecond: 4, burst: 2 }, () => now);
  assert.deepEqual([buckets.take('a'), buckets.take('a')], [0, 0]);
  assert.equal(buckets.take('a'), 250);
  assert.equal(buckets.take('b'), 0, 'another key has its own bucket');
});

test('BucketMap keeps at most maxKeys buckets, dropping the least recently used', () => {
  const now = 0;
  const buckets = new BucketMap({ perSecond: 1, burst: 1 }, () => now, 3);
  for (const k of ['a', 'b', 'c']) assert.equal(buckets.take(k), 0);
  assert.ok(buckets.take('a') > 0, 'a is used again: now the most recent');
  assert.equal(buckets.take('d'), 0);
  assert.equal(buckets.size, 3);
  assert.ok(buckets.take('a') > 0, 'a was kept (b, the least recently used, went)');
  assert.equal(buckets.take('b'), 0, 'b starts again with a full bucket');
  assert.equal(buckets.size, 3);
});
