// The watchdog: a key is lost at its deadline unless watched again or unwatched before, with one timer per key.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from './clock.ts';
import { Watchdog } from './watchdog.ts';

const setUp = () => {
  const clock = new ManualClock(0);
  const lost: string[] = [];
  const failed: [string, string][] = [];
  const dog = new Watchdog(clock, (err, key) => failed.push([key, (err as Error).message]));
  const watch = (key: string, ms: number, why = key) => dog.watch(key, ms, () => void lost.push(why));
  return { clock, lost, failed, dog, watch };
};

describe('Watchdog', () => {
  test('a key not watched again is lost at its deadline, once', async () => {
    const { clock, lost, watch } = setUp();
    watch('w1', 1_000);
    await clock.advance(999);
    assert.deepEqual(lost, []);
    await clock.advance(1);
    assert.deepEqual(lost, ['w1']);
    await clock.advance(10_000);
    assert.deepEqual(lost, ['w1']);
    assert.equal(clock.pending, 0);
  });

  test('watching again moves the deadline; one timer per key; the last onLost runs', async () => {
    const { clock, lost, watch } = setUp();
    watch('w1', 1_000, 'first');
    await clock.advance(600);
    watch('w1', 1_000, 'second');
    assert.equal(clock.pending, 1, 'one timer for the key');
    await clock.advance(600);
    assert.deepEqual(lost, [], 'the timer fired early and set itself again');
    await clock.advance(399);
    assert.deepEqual(lost, []);
    await clock.advance(1);
    assert.deepEqual(lost, ['second']);
  });

  test('a shorter watch brings the deadline forward', async () => {
    const { clock, lost, watch } = setUp();
    watch('w1', 15_000, 'long');
    watch('w1', 2_000, 'short');
    await clock.advance(2_000);
    assert.deepEqual(lost, ['short']);
    await clock.advance(20_000);
    assert.deepEqual(lost, ['short']);
  });

  test('unwatch and close cancel, and keys are independent', async () => {
    const { clock, lost, dog, watch } = setUp();
    watch('a', 1_000);
    watch('b', 1_000);
    watch('c', 2_000);
    dog.unwatch('a');
    dog.unwatch('unknown');
    await clock.advance(1_000);
    assert.deepEqual(lost, ['b']);
    dog.close();
    assert.equal(clock.pending, 0);
    await clock.advance(5_000);
    assert.deepEqual(lost, ['b']);
  });

  test('an onLost that fails is handed to onError, not left to reject where nobody awaits it', async () => {
    const { clock, failed, dog, lost, watch } = setUp();
    dog.watch('w1', 1_000, async () => {
      throw new Error('the database is away');
    });
    dog.watch('w2', 1_000, () => {
      throw new Error('thrown at once');
    });
    watch('w3', 1_000);
    await clock.advance(1_000);
    assert.deepEqual(failed, [
      ['w1', 'the database is away'],
      ['w2', 'thrown at once'],
    ]);
    assert.deepEqual(lost, ['w3'], 'the other keys are lost as usual');
  });
});
