// The session directory on its own: reads batched per turn, calls run in order, unknown sessions dropped, times
// kept from events, ended sessions kept for their last lines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SessionEvent } from '@usher/protocol';
import { SessionDirectory, type SessionKey } from './session-directory.ts';

const T = Date.UTC(2026, 0, 1);
const iso = (ms: number) => new Date(ms).toISOString();

/** A session's key: project `p` in `eu`, created at T, unless told otherwise. */
const sessionKey = (over: Partial<SessionKey> = {}): SessionKey => ({
  projectId: 'p',
  region: 'eu',
  createdAt: T,
  queuedAt: null,
  activeAt: null,
  endedAt: null,
  ...over,
});
const key = (projectId: string) => sessionKey({ projectId });

function directory(known: Record<string, Partial<SessionKey>>) {
  const reads: string[][] = [];
  const errors: unknown[] = [];
  const dir = new SessionDirectory(
    async (ids) => {
      reads.push([...ids]);
      const out = new Map<string, SessionKey>();
      for (const id of ids) if (known[id]) out.set(id, sessionKey(known[id]));
      return out;
    },
    (err) => errors.push(err),
  );
  return { dir, reads, errors };
}

function status(sessionId: string, status: string, previous: string | null, at: number): SessionEvent {
  return {
    type: 'session.status_changed',
    sessionId,
    at: iso(at),
    status,
    previous,
    cause: 'test',
  } as SessionEvent;
}

test('what one turn asks about is read in one call; calls for a session run in the order made', async () => {
  const { dir, reads } = directory({ a: { projectId: 'pa' }, b: { projectId: 'pb' } });
  const seen: string[] = [];
  dir.with('a', (k) => seen.push(`a1:${k.projectId}`));
  dir.with('b', (k) => seen.push(`b:${k.projectId}`));
  dir.with('a', (k) => seen.push(`a2:${k.projectId}`));
  dir.with('nope', () => seen.push('nope'));
  assert.equal(seen.length, 0, 'nothing is known before the read');
  await dir.idle();
  assert.deepEqual(reads, [['a', 'b', 'nope']]);
  // in order per session
  assert.deepEqual(seen, ['a1:pa', 'a2:pa', 'b:pb']);
  // known now: at once, without a read
  dir.with('a', (k) => seen.push(`a3:${k.projectId}`));
  assert.equal(seen.at(-1), 'a3:pa');
  assert.equal(dir.peek('b')?.projectId, 'pb');
  assert.equal(dir.peek('nope'), undefined);
  await dir.idle();
  assert.equal(reads.length, 1);
});

test('observe keeps the queue and first-active times, reads nothing for sessions it does not hold, and keeps ended ones', async () => {
  const { dir, reads } = directory({ s: {} });
  dir.observe(status('other', 'queued', 'requesting', T));
  await dir.idle();
  assert.deepEqual(reads, [], 'an event about a session not in memory reads nothing');

  dir.with('s', () => {});
  dir.observe(status('s', 'queued', 'requesting', T + 1));
  await dir.idle();
  assert.equal(dir.peek('s')?.queuedAt, T + 1, 'applied after the read, in order');
  dir.observe(status('s', 'connecting', 'queued', T + 2));
  dir.observe(status('s', 'active', 'connecting', T + 3));
  dir.observe(status('s', 'connecting', 'active', T + 4));
  dir.observe(status('s', 'active', 'connecting', T + 5));
  assert.equal(dir.peek('s')?.activeAt, T + 3, 'the first activation is kept');
  dir.observe(status('s', 'ended', 'active', T + 6));
  assert.equal(dir.peek('s')?.endedAt, T + 6, 'an ended session is still found');
  assert.equal(reads.length, 1);
});

test('a failed read is reported and drops what waited for it; the next call reads again', async () => {
  let fail = true;
  const errors: unknown[] = [];
  const dir = new SessionDirectory(
    async (ids) => {
      if (fail) throw new Error('database down');
      return new Map(
        ids.map((id) => [
          id,
          { projectId: 'p', region: 'eu', createdAt: T, queuedAt: null, activeAt: null, endedAt: null },
        ]),
      );
    },
    (err) => errors.push(err),
  );
  const seen: string[] = [];
  dir.with('x', () => seen.push('first'));
  await dir.idle();
  assert.deepEqual([seen, errors.map((e) => (e as Error).message)], [[], ['database down']]);
  fail = false;
  dir.with('x', () => seen.push('second'));
  await dir.idle();
  assert.deepEqual(seen, ['second']);
});

test('keys(): those in memory at once, the others in the read of the turn; unknown ones left out', async () => {
  const { dir, reads } = directory({
    a: { projectId: 'pa' },
    b: { projectId: 'pb' },
    c: { projectId: 'pc' },
  });
  dir.with('a', () => {});
  await dir.idle();
  const seen: string[] = [];
  dir.with('b', (k) => seen.push(k.projectId));
  const keys = await dir.keys(['a', 'b', 'c', 'nope', 'c']);
  assert.deepEqual(
    [...keys].map(([id, k]) => `${id}:${k.projectId}`),
    ['a:pa', 'b:pb', 'c:pc'],
  );
  assert.deepEqual(reads, [['a'], ['b', 'c', 'nope']], 'a was in memory; b, c and nope in one read');
  assert.deepEqual(seen, ['pb']);
  assert.deepEqual(await dir.keys([]), new Map());
  assert.equal(reads.length, 2);
});

test('keys() rejects when the read fails; what waited with with() is dropped', async () => {
  const errors: unknown[] = [];
  const dir = new SessionDirectory(
    async () => {
      throw new Error('database down');
    },
    (err) => errors.push(err),
  );
  const seen: string[] = [];
  dir.with('x', () => seen.push('x'));
  await assert.rejects(dir.keys(['x', 'y']), /database down/);
  assert.deepEqual(seen, []);
  assert.equal(errors.length, 1, 'the failed read is reported once');
});

test('idle() waits for the reads asked for before it and what they started, not for the reads that follow', async () => {
  const reads: { ids: string[]; answer: (keys: Map<string, SessionKey>) => void }[] = [];
  const dir = new SessionDirectory(
    (ids) =>
      new Promise((answer) => {
        reads.push({ ids: [...ids], answer });
      }),
    () => {},
  );
  // what the key of a starts (as the metrics read a timeline): idle() waits for it too
  const started = Promise.withResolvers<void>();
  dir.with('a', () => void dir.track(started.promise));
  let idle = false;
  const waited = dir.idle().then(() => {
    idle = true;
  });
  await Promise.resolve(); // the read of a has started
  assert.deepEqual(
    reads.map((r) => r.ids),
    [['a']],
  );
  /** Whether idle() has resolved once everything that is ready has run (microtasks run before setImmediate). */
  const settledNow = () => new Promise<boolean>((r) => setImmediate(() => r(idle)));

  // steady load: while a is read, and after, new sessions keep being asked about
  dir.with('b', () => {});
  await Promise.resolve();
  assert.equal(reads.length, 2, 'the read of b has started');
  reads[0]!.answer(new Map([['a', key('pa')]]));
  assert.equal(await settledNow(), false, 'a is read, but what its key started is not done');
  dir.with('c', () => {});
  started.resolve();
  assert.equal(await settledNow(), true, 'the reads of b and c, asked for later, are not waited for');
  await waited;
  for (const r of reads.slice(1)) r.answer(new Map());
  await dir.idle();
});

test('learn(): a session created here is known without a read; one being read is left to its read', async () => {
  const { dir, reads } = directory({ read: { projectId: 'from-store' } });
  dir.learn('new', key('learned'));
  const seen: string[] = [];
  dir.with('new', (k) => seen.push(k.projectId));
  dir.observe(status('new', 'queued', 'requesting', T + 1));
  assert.deepEqual(seen, ['learned'], 'at once');
  assert.equal(dir.peek('new')?.queuedAt, T + 1, 'and kept up to date by its events');

  dir.with('read', (k) => seen.push(k.projectId));
  dir.learn('read', key('learned'));
  await dir.idle();
  assert.deepEqual(seen, ['learned', 'from-store']);
  assert.deepEqual(reads, [['read']], 'only the session not learned was read');
});
