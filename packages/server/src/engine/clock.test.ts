// The clocks: ManualClock fires due timers in order as time is moved; systemClock arms real timers.
import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';
import { ManualClock, systemClock } from './clock.ts';

const START = Date.UTC(2026, 0, 1);

describe('ManualClock', () => {
  test('starts where told (2026-01-01 by default) and only moves on advance', async () => {
    assert.equal(new ManualClock().now(), START);
    const c = new ManualClock(1_000);
    assert.equal(c.now(), 1_000);
    await c.advance(250);
    assert.equal(c.now(), 1_250);
    await c.advance(0);
    assert.equal(c.now(), 1_250);
  });

  test('fires due timers earliest first, each seeing its own due time as now', async () => {
    const c = new ManualClock(0);
    const fired: [string, number][] = [];
    c.setTimer(30, () => void fired.push(['c', c.now()]));
    c.setTimer(10, () => void fired.push(['a', c.now()]));
    c.setTimer(20, () => void fired.push(['b', c.now()]));
    await c.advance(100);
    assert.deepEqual(fired, [
      ['a', 10],
      ['b', 20],
      ['c', 30],
    ]);
    assert.equal(c.now(), 100);
    assert.equal(c.pending, 0);
  });

  test('timers due at the same time fire in the order they were set', async () => {
    const c = new ManualClock(0);
    const fired: number[] = [];
    for (const n of [1, 2, 3, 4]) c.setTimer(50, () => void fired.push(n));
    await c.advance(50);
    assert.deepEqual(fired, [1, 2, 3, 4]);
  });

  test('a timer fires at its due time, not before', async () => {
    const c = new ManualClock(0);
    let fired = 0;
    c.setTimer(100, () => void fired++);
    await c.advance(99);
    assert.equal(fired, 0);
    assert.equal(c.pending, 1);
    await c.advance(1);
    assert.equal(fired, 1);
    assert.equal(c.pending, 0);
    await c.advance(1_000);
    assert.equal(fired, 1, 'fires once');
  });

  test('timers set while advancing fire in the same advance when they fall within the target', async () => {
    const c = new ManualClock(0);
    const fired: [string, number][] = [];
    c.setTimer(10, () => {
      fired.push(['first', c.now()]);
      c.setTimer(c.now() + 20, () => {
        fired.push(['chained', c.now()]);
        c.setTimer(c.now() + 1_000, () => void fired.push(['too late', c.now()]));
      });
      c.setTimer(5, () => void fired.push(['overdue', c.now()])); // already past: fires at once
    });
    c.setTimer(25, () => void fired.push(['second', c.now()]));
    await c.advance(50);
    assert.deepEqual(fired, [
      ['first', 10],
      ['overdue', 10], // time never goes backwards
      ['second', 25],
      ['chained', 30],
    ]);
    assert.equal(c.now(), 50);
    assert.equal(c.pending, 1, 'the timer beyond the target waits');
    await c.advance(980);
    assert.deepEqual(fired.at(-1), ['too late', 1_030]);
  });

  test('advance awaits each timer before firing the next', async () => {
    const c = new ManualClock(0);
    const log: string[] = [];
    c.setTimer(1, async () => {
      log.push('a start');
      await new Promise((r) => setImmediate(r));
      log.push('a end');
    });
    c.setTimer(2, () => void log.push('b'));
    await c.advance(5);
    assert.deepEqual(log, ['a start', 'a end', 'b']);
  });

  test('clearTimer disarms a timer, also from inside another timer', async () => {
    const c = new ManualClock(0);
    const fired: string[] = [];
    const a = c.setTimer(10, () => void fired.push('a'));
    c.setTimer(20, () => {
      fired.push('b');
      c.clearTimer(d);
    });
    const d = c.setTimer(30, () => void fired.push('d'));
    c.setTimer(40, () => void fired.push('e'));
    assert.equal(c.pending, 4);
    c.clearTimer(a);
    assert.equal(c.pending, 3);
    c.clearTimer(a); // twice is harmless
    assert.equal(c.pending, 3);
    await c.advance(100);
    assert.deepEqual(fired, ['b', 'e']);
    assert.equal(c.pending, 0);
  });

  test('handles have distinct ids, and clearing one leaves the others armed', async () => {
    const c = new ManualClock(0);
    const h = [c.setTimer(5, () => {}), c.setTimer(5, () => {}), c.setTimer(5, () => {})];
    assert.equal(new Set(h.map((x) => x.id)).size, 3);
    c.clearTimer(h[1]!);
    assert.equal(c.pending, 2);
  });
});

describe('systemClock', () => {
  test('now is the wall clock', () => {
    const before = Date.now();
    const now = systemClock.now();
    assert.ok(now >= before && now <= Date.now());
  });

  test('a timer due now fires; a cleared one does not', async () => {
    const fired: string[] = [];
    const cleared = systemClock.setTimer(Date.now(), () => void fired.push('cleared'));
    systemClock.clearTimer(cleared);
    // timers of equal delay run in the order they were set, so once this one fires the cleared one would have
    await new Promise<void>((resolve) =>
      systemClock.setTimer(Date.now(), () => {
        fired.push('kept');
        resolve();
      }),
    );
    assert.deepEqual(fired, ['kept']);
  });

  test('a deadline beyond the 2^31-1 ms limit of setTimeout re-arms and fires on time', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    t.after(() => mock.timers.reset());
    const MAX = 2_147_483_647;
    const at = MAX + 1_000_000;
    let firedAt: number | null = null;
    systemClock.setTimer(at, () => {
      firedAt = Date.now();
    });
    t.mock.timers.tick(MAX);
    assert.equal(firedAt, null, 'the first arming is capped at the limit and must re-arm, not fire');
    t.mock.timers.tick(999_999);
    assert.equal(firedAt, null);
    t.mock.timers.tick(1);
    assert.equal(firedAt, at);
  });
});
