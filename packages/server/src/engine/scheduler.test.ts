// The scheduler over a real SQLite store: durable timers fire at their due time, follow pushes, survive being
// set mid-batch, and a failing handler neither spins nor stops the others.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { TimerKind, TimerRecord } from '../storage/records.ts';
import { openStore, type Store } from '../storage/store.ts';
import { type Clock, ManualClock, systemClock } from './clock.ts';
import { Scheduler } from './scheduler.ts';

interface Fired {
  sessionId: string;
  kind: TimerKind;
  at: number;
}

interface Harness {
  store: Store;
  clock: ManualClock;
  scheduler: Scheduler;
  fired: Fired[];
  errors: { message: string; timer: TimerRecord | null }[];
  /** runs inside the handler before the timer is cleared; may throw or set other timers */
  before: (timer: TimerRecord) => Promise<void>;
  /** a new scheduler on the same store (a restarted server) */
  restart(): Promise<Scheduler>;
}

async function open(): Promise<{ store: Store; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'usher-scheduler-'));
  return { store: await openStore({ type: 'sqlite', path: join(dir, 'usher.db') }), dir };
}

/** A scheduler whose handler does what the engine's does: fire only if still due, then clear the timer. */
async function harness(t: { after: (fn: () => Promise<void>) => void }, clock = new ManualClock(0)) {
  const { store, dir } = await open();
  const h = { store, clock, fired: [], errors: [], before: async () => {} } as unknown as Harness;
  const schedulers: Scheduler[] = [];
  const make = () => {
    const s = new Scheduler({
      store,
      clock: h.clock,
      handle: async (timer) => {
        const current = await store.read.getTimer(timer.sessionId, timer.kind);
        if (!current || current.dueAt > h.clock.now()) return; // pushed back meanwhile
        await h.before(timer);
        await store.read.clearTimer(timer.sessionId, timer.kind);
        h.fired.push({ sessionId: timer.sessionId, kind: timer.kind, at: h.clock.now() });
      },
      onError: (err, timer) => h.errors.push({ message: (err as Error).message, timer }),
    });
    schedulers.push(s);
    return s;
  };
  h.scheduler = make();
  h.restart = async () => {
    h.scheduler.stop();
    await h.scheduler.idle();
    h.scheduler = make();
    await h.scheduler.start();
    return h.scheduler;
  };
  t.after(async () => {
    for (const s of schedulers) {
      s.stop();
      await s.idle();
    }
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return h;
}

/** Sets a durable timer and tells the scheduler, as the engine does after its transaction commits. */
async function set(h: Harness, sessionId: string, dueAt: number, kind: TimerKind = 'pending') {
  await h.store.read.setTimer(sessionId, kind, dueAt);
  h.scheduler.notify(dueAt);
}

describe('Scheduler', () => {
  test('a timer fires at its due time and not before', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    await set(h, 's1', 1_000);
    await h.clock.advance(999);
    assert.deepEqual(h.fired, []);
    await h.clock.advance(1);
    assert.deepEqual(h.fired, [{ sessionId: 's1', kind: 'pending', at: 1_000 }]);
    assert.equal(await h.store.read.nextTimerDue(), null);
    await h.clock.advance(10_000);
    assert.equal(h.fired.length, 1, 'fires once');
  });

  test('timers stored before start (by an earlier run) fire on time; overdue ones at once', async (t) => {
    const h = await harness(t);
    await h.store.read.setTimer('late', 'connecting', 0);
    await h.store.read.setTimer('later', 'paused', 500);
    await h.scheduler.start();
    await h.clock.advance(0);
    assert.deepEqual(h.fired, [{ sessionId: 'late', kind: 'connecting', at: 0 }]);
    await h.clock.advance(499);
    assert.equal(h.fired.length, 1);
    await h.clock.advance(1);
    assert.deepEqual(h.fired[1], { sessionId: 'later', kind: 'paused', at: 500 });
  });

  test('timers fire in due order, each at its own time', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    await set(h, 'a', 300);
    await set(h, 'b', 100);
    await set(h, 'c', 200);
    await set(h, 'b', 200, 'idle');
    await h.clock.advance(1_000);
    assert.deepEqual(
      h.fired.map((f) => `${f.sessionId}/${f.kind}@${f.at}`),
      ['b/pending@100', 'b/idle@200', 'c/pending@200', 'a/pending@300'],
    );
  });

  test('a timer pushed later fires later, not at its old time', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    await set(h, 's1', 1_000);
    // the engine pushes a deadline back without telling the scheduler (it only says when one comes earlier)
    await h.store.read.setTimer('s1', 'pending', 5_000);
    await h.clock.advance(1_000);
    assert.deepEqual(h.fired, []);
    await h.clock.advance(3_999);
    assert.deepEqual(h.fired, []);
    await h.clock.advance(1);
    assert.deepEqual(h.fired, [{ sessionId: 's1', kind: 'pending', at: 5_000 }]);
  });

  test('a timer brought earlier fires at the earlier time', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    await set(h, 's1', 5_000);
    await set(h, 's1', 2_000);
    await h.clock.advance(4_000);
    assert.deepEqual(h.fired, [{ sessionId: 's1', kind: 'pending', at: 2_000 }]);
  });

  test('timers set while a batch runs are not lost, told or not', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    h.before = async (timer) => {
      if (timer.sessionId !== 'a') return;
      const now = h.clock.now();
      await set(h, 'told-now', now); // due at once, scheduler told
      await h.store.read.setTimer('untold', 'idle', now + 50); // another server's, scheduler not told
      await set(h, 'told-later', now + 70);
    };
    await set(h, 'a', 100);
    await h.clock.advance(1_000);
    assert.deepEqual(
      h.fired.map((f) => `${f.sessionId}@${f.at}`),
      ['a@100', 'told-now@100', 'untold@150', 'told-later@170'],
    );
  });

  test('a timer set from outside while a handler is in flight is not lost', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => {
      entered = r;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    h.before = async (timer) => {
      if (timer.sessionId !== 'slow') return;
      entered();
      await gate;
    };
    await set(h, 'slow', 100);
    const advancing = h.clock.advance(1_000);
    await inHandler;
    await set(h, 'meanwhile', 100);
    release();
    await advancing;
    assert.deepEqual(
      h.fired.map((f) => `${f.sessionId}@${f.at}`),
      ['slow@100', 'meanwhile@100'],
    );
  });

  test('a clock firing during a running batch makes the batch run again (real clock)', async (t) => {
    // with the real clock a timer can fire while the previous firing still runs: it must not be dropped
    const clockFired: number[] = [];
    let waiter: { n: number; resolve: () => void } | null = null;
    const counting: Clock = {
      now: () => systemClock.now(),
      clearTimer: (handle) => systemClock.clearTimer(handle),
      setTimer: (at, fn) =>
        systemClock.setTimer(at, () => {
          clockFired.push(at);
          if (waiter && clockFired.length >= waiter.n) waiter.resolve();
          return fn();
        }),
    };
    const clockFiredTimes = (n: number) =>
      new Promise<void>((resolve) => {
        waiter = { n, resolve };
        if (clockFired.length >= n) resolve();
      });
    const h = await harness(t, counting as unknown as ManualClock);
    await h.scheduler.start();
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => {
      entered = r;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const done = new Promise<void>((resolve) => {
      h.before = async (timer) => {
        if (timer.sessionId === 'slow') {
          entered();
          await gate;
        }
        if (timer.sessionId === 'meanwhile') resolve();
      };
    });
    await set(h, 'slow', Date.now());
    await inHandler;
    await set(h, 'meanwhile', Date.now());
    await clockFiredTimes(2); // the second firing happened while the first batch was still running
    release();
    await done;
    await h.scheduler.idle();
    assert.deepEqual(
      h.fired.map((f) => f.sessionId),
      ['slow', 'meanwhile'],
    );
  });

  test('more due timers than one batch all fire in the same advance', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    await h.store.tx(async (r) => {
      for (let i = 0; i < 1_234; i++)
        await r.setTimer(`s${String(i).padStart(4, '0')}`, 'pending', 100 + (i % 7));
    });
    h.scheduler.notify(100);
    await h.clock.advance(200);
    assert.equal(h.fired.length, 1_234);
    assert.equal(new Set(h.fired.map((f) => f.sessionId)).size, 1_234);
    assert.equal(await h.store.read.nextTimerDue(), null);
  });

  test('a handler error pushes that timer back and does not stop the others', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    let failures = 1;
    h.before = async (timer) => {
      if (timer.sessionId === 'bad' && failures-- > 0) throw new Error('boom');
    };
    await set(h, 'bad', 100);
    await set(h, 'good', 100);
    await set(h, 'after', 150);
    await h.clock.advance(200);
    assert.deepEqual(
      h.fired.map((f) => `${f.sessionId}@${f.at}`),
      ['good@100', 'after@150'],
    );
    assert.deepEqual(h.errors, [
      { message: 'boom', timer: { sessionId: 'bad', kind: 'pending', dueAt: 100 } },
    ]);
    assert.deepEqual(await h.store.read.getTimer('bad', 'pending'), {
      sessionId: 'bad',
      kind: 'pending',
      dueAt: 1_100,
    });
    await h.clock.advance(899);
    assert.equal(h.fired.length, 2, 'not retried before its new time');
    await h.clock.advance(1);
    assert.deepEqual(h.fired.at(-1), { sessionId: 'bad', kind: 'pending', at: 1_100 });
  });

  test('a timer that keeps failing is tried again later and later (up to a minute), never in a tight loop', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    h.before = async (timer) => {
      if (timer.sessionId === 'bad') throw new Error('always');
    };
    await set(h, 'bad', 100);
    await set(h, 'good', 5_000);
    await h.clock.advance(200_000);
    // attempts 1, 2, 4 … 32 s apart, then a minute apart
    assert.deepEqual(
      h.errors.map((e) => e.timer?.dueAt),
      [100, 1_100, 3_100, 7_100, 15_100, 31_100, 63_100, 123_100, 183_100],
    );
    assert.deepEqual(
      h.fired.map((f) => `${f.sessionId}@${f.at}`),
      ['good@5000'],
    );
  });

  test('a timer moved while its handler failed keeps its new time (the retry does not overwrite it)', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    h.before = async (timer) => {
      if (timer.sessionId !== 'moved') return;
      // activity moved the deadline in another transaction, and then this handler failed
      await h.store.read.setTimer('moved', 'idle', 60_000);
      throw new Error('lost connection');
    };
    await set(h, 'moved', 100, 'idle');
    await h.clock.advance(5_000);
    assert.equal(h.errors.length, 1);
    assert.deepEqual(await h.store.read.getTimer('moved', 'idle'), {
      sessionId: 'moved',
      kind: 'idle',
      dueAt: 60_000,
    });
    h.before = async () => {};
    await h.clock.advance(55_000);
    assert.deepEqual(h.fired, [{ sessionId: 'moved', kind: 'idle', at: 60_000 }]);
  });

  test('timers that cannot be read are reported and read again a second later; nothing is lost', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    await set(h, 's1', 100);
    const read = h.store.read;
    const dueTimers = read.dueTimers.bind(read);
    let outage = true;
    read.dueTimers = async (at, limit) => {
      if (outage) throw new Error('connection terminated');
      return dueTimers(at, limit);
    };
    try {
      await h.clock.advance(100);
      assert.deepEqual(h.errors, [{ message: 'connection terminated', timer: null }]);
      assert.deepEqual(h.fired, []);
      outage = false;
      await h.clock.advance(1_000);
      assert.deepEqual(h.fired, [{ sessionId: 's1', kind: 'pending', at: 1_100 }]);
    } finally {
      read.dueTimers = dueTimers;
    }
  });

  test('a stopped scheduler fires nothing; a restarted one picks the stored timers up', async (t) => {
    const h = await harness(t);
    await h.scheduler.start();
    await set(h, 's1', 100);
    h.scheduler.stop();
    assert.equal(h.clock.pending, 0, 'no clock timer left armed');
    h.scheduler.notify(50);
    assert.equal(h.clock.pending, 0, 'notify after stop arms nothing');
    await h.clock.advance(1_000);
    assert.deepEqual(h.fired, []);
    await h.restart();
    await h.clock.advance(0);
    assert.deepEqual(h.fired, [{ sessionId: 's1', kind: 'pending', at: 1_000 }]);
  });
});
