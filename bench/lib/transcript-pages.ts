// A large transcript table and pages read from it: fills the messages table through the message log (the
// server's own multi-row append, from this process on the same database), then times
// `GET /sessions/{id}/messages` with random cursors over HTTP and the storage query alone.
import type { Envelope } from '@usher/protocol';
import type { Store } from '@usher/server';
import { type HttpClient, inParallel } from './harness.ts';

/** One session's filled rows: `count` messages from firstUs on, stepUs apart (row 0 is the oldest). */
export interface FilledSession {
  id: string;
  count: number;
  firstUs: number;
  stepUs: number;
}

const TEXT =
  'Sure, I have added oat milk, two lemons and a loaf of rye bread to your list. Anything else for Saturday, or shall I read the whole list back to you?';

/** every 20th filled row is a `debug` message, hidden from pages unless asked for */
const isDebug = (j: number) => j % 20 === 19;

function rowType(j: number): string {
  if (isDebug(j)) return 'debug';
  return ['user_text', 'agent_text', 'transcript'][j % 3]!;
}

const rowId = (s: FilledSession, j: number) => `m_fill_${s.id}_${String(j).padStart(7, '0')}`;
const atUs = (s: FilledSession, j: number) => s.firstUs + j * s.stepUs;

/** `2026-12-04T16:44:35.123004Z`: an ISO time to the microsecond, as the API takes it in `before`. */
export function microsToIso(us: number): string {
  const ms = Math.floor(us / 1000);
  return `${new Date(ms).toISOString().slice(0, -1)}${String(us - ms * 1000).padStart(3, '0')}Z`;
}

function message(s: FilledSession, j: number): { message: Envelope; atUs: number } {
  const type = rowType(j);
  const user = type === 'user_text';
  const at = atUs(s, j);
  return {
    atUs: at,
    message: {
      id: rowId(s, j),
      sessionId: s.id,
      type,
      from: user ? { identity: 'user-fill', kind: 'user' } : { identity: 'w_fill-agent', kind: 'agent' },
      at: microsToIso(at),
      data: type === 'debug' ? { tokens: j } : { text: TEXT.slice(0, 60 + (j % 90)) },
    },
  };
}

/**
 * Appends every session's rows through store.messages.append (one INSERT per batch of batchRows), with up to
 * `concurrency` batches in flight. Returns the time it took.
 */
export async function fillTranscripts(
  store: Store,
  sessions: readonly FilledSession[],
  o: { batchRows: number; concurrency: number; log?: (line: string) => void },
): Promise<number> {
  const batches: { s: FilledSession; from: number; to: number }[] = [];
  for (const s of sessions)
    for (let from = 0; from < s.count; from += o.batchRows)
      batches.push({ s, from, to: Math.min(s.count, from + o.batchRows) });
  const t = performance.now();
  let done = 0;
  let lastLog = t;
  await inParallel(batches.length, o.concurrency, async (i) => {
    const { s, from, to } = batches[i]!;
    const rows = [];
    for (let j = from; j < to; j++) rows.push(message(s, j));
    await store.messages.append(rows);
    done += to - from;
    if (o.log && performance.now() - lastLog > 5_000) {
      lastLog = performance.now();
      o.log(`  ${done.toLocaleString('en')} rows written`);
    }
  });
  return performance.now() - t;
}

/**
 * What PostgreSQL's autovacuum does shortly after a bulk load (it starts once a table has grown by a fifth):
 * done here, once, so that the pages are measured on a settled table rather than beside that work on the
 * same CPUs. SQLite has no background maintenance: nothing to do.
 */
export async function settleAfterFill(store: Store): Promise<number> {
  if (store.db.dialect !== 'postgres') return 0;
  const t = performance.now();
  await store.db.exec('VACUUM (ANALYZE) messages');
  return performance.now() - t;
}

/** A page to ask for: the session and a cursor at one of its filled rows, with the row the page must end at. */
export interface PageAsk {
  session: FilledSession;
  /** the page holds the newest rows before row j */
  j: number;
}

/** The newest row a page before row j holds (debug rows are left out). */
function expectedNewest(j: number): number {
  let k = j - 1;
  while (isDebug(k)) k--;
  return k;
}

/**
 * Cursors at random rows, each at least `min` rows from the oldest: half in the first session (the big one),
 * half in one of the others, chosen at random.
 */
export function randomAsks(sessions: readonly FilledSession[], n: number, min: number): PageAsk[] {
  return Array.from({ length: n }, () => {
    const session =
      Math.random() < 0.5 || sessions.length === 1
        ? sessions[0]!
        : sessions[1 + Math.floor(Math.random() * (sessions.length - 1))]!;
    return { session, j: min + Math.floor(Math.random() * (session.count - min)) };
  });
}

/** Cursors at rows 60–260 of one session: its oldest pages. */
export function deepAsks(session: FilledSession, n: number): PageAsk[] {
  return Array.from({ length: n }, () => ({ session, j: 60 + Math.floor(Math.random() * 200) }));
}

export interface PageTimes {
  latencies: number[];
  /** pages that were not the 50 rows expected (wrong status, count or newest row) */
  wrong: number;
  lastWrong: string | null;
  ms: number;
}

interface PageBody {
  messages: { id: string }[];
}

/** Each ask as `GET /sessions/{id}/messages?limit=50&before=…` with `concurrency` in flight (admin key). */
export async function httpPages(http: HttpClient, asks: readonly PageAsk[], concurrency: number) {
  const r: PageTimes = { latencies: [], wrong: 0, lastWrong: null, ms: 0 };
  const t = performance.now();
  await inParallel(asks.length, concurrency, async (i) => {
    const { session: s, j } = asks[i]!;
    const path = `/sessions/${s.id}/messages?limit=50&before=${encodeURIComponent(microsToIso(atUs(s, j)))}`;
    const a = performance.now();
    const res = await http.call('GET', path);
    r.latencies.push(performance.now() - a);
    const body = res.status === 200 ? (JSON.parse(res.body) as PageBody) : null;
    const newest = body?.messages[body.messages.length - 1]?.id;
    if (body?.messages.length !== 50 || newest !== rowId(s, expectedNewest(j))) {
      r.wrong++;
      r.lastWrong = `${path}: ${res.status} ${res.body.slice(0, 200)}`;
    }
  });
  r.ms = performance.now() - t;
  return r;
}

/** Each ask as store.messages.page() on this process's own connection, one at a time. */
export async function storagePages(store: Store, asks: readonly PageAsk[]): Promise<PageTimes> {
  const r: PageTimes = { latencies: [], wrong: 0, lastWrong: null, ms: 0 };
  const t = performance.now();
  for (const { session: s, j } of asks) {
    const a = performance.now();
    const page = await store.messages.page({
      sessionId: s.id,
      limit: 50,
      beforeUs: atUs(s, j),
      includeDebug: false,
    });
    r.latencies.push(performance.now() - a);
    const newest = page.messages[page.messages.length - 1]?.id;
    if (page.messages.length !== 50 || newest !== rowId(s, expectedNewest(j))) {
      r.wrong++;
      r.lastWrong = `${s.id} before row ${j}: ${page.messages.length} messages, newest ${newest}`;
    }
  }
  r.ms = performance.now() - t;
  return r;
}
