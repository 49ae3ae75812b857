// The message log: the recorded room messages of every session (SPEC §7), appended in batches and read back a
// page at a time, newest first. Each message is stamped in microseconds; a page ends at a (time, id) cursor,
// so paging neither skips nor repeats a message, however many share a timestamp.
import type { Envelope } from '@usher/protocol';
import type { Db, QueryOptions, SqlValue } from './db.ts';

/** A recorded message as stored: the envelope plus its time in microseconds since the epoch. */
export interface StoredMessage {
  message: Envelope;
  atUs: number;
}

export interface PageQuery {
  sessionId: string;
  /** 1–100 */
  limit: number;
  /** only messages older than this time (µs), or with the same time and an id below beforeId */
  beforeUs?: number;
  beforeId?: string;
  includeDebug: boolean;
}

export interface MessagePageResult {
  messages: Envelope[];
  hasMore: boolean;
  /** the cursor of the oldest message returned, to ask for the page before it */
  next: { atUs: number; id: string } | null;
}

const HOT: QueryOptions = { prepare: true };

const COLUMNS = 'session_id, at, id, type, from_identity, from_kind, data';

const INSERT: Record<Db['dialect'], string> = {
  // one statement whatever the batch size: the rows travel as one JSON array (`WHERE true` lets SQLite parse
  // the ON CONFLICT after a SELECT)
  sqlite: `INSERT INTO messages (${COLUMNS})
    SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6 FROM json_each(?) WHERE true
    ON CONFLICT DO NOTHING`,
  postgres: `INSERT INTO messages (${COLUMNS})
    SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
    ON CONFLICT DO NOTHING`,
};

const pageSql = (includeDebug: boolean) =>
  `SELECT id, at, type, from_identity, from_kind, data FROM messages
    WHERE session_id = ? AND (at, id) < (?, ?)${includeDebug ? '' : " AND type <> 'debug'"}
    ORDER BY at DESC, id DESC LIMIT ?`;
const PAGE = { all: pageSql(true), noDebug: pageSql(false) };

// the newest messages after a (time, id) cursor and up to a time, debug included: what a reopened socket missed (a
// worker's leaves out the agent's own, and in LiveKit mode all but arrivals and departures)
const missedSql = (filter: string) =>
  `SELECT id, at, type, from_identity, from_kind, data FROM messages
    WHERE session_id = ? AND (at, id) > (?, ?) AND at <= ?${filter} ORDER BY at DESC, id DESC LIMIT ?`;
const MISSED = {
  all: missedSql(''),
  notFromAgents: missedSql(" AND from_kind <> 'agent'"),
  presenceNotFromAgents: missedSql(
    " AND from_kind <> 'agent' AND type IN ('participant_joined', 'participant_left')",
  ),
};

export interface MessageRow {
  id: string;
  at: number;
  type: string;
  from_identity: string;
  from_kind: string;
  data: string;
}

export class MessageLog {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Stores the messages in one statement; a message already stored (same session, time and id) is skipped. */
  async append(batch: readonly StoredMessage[]): Promise<void> {
    if (batch.length === 0) return;
    const rows = batch.map(({ message: m, atUs }) => [
      m.sessionId,
      atUs,
      m.id,
      m.type,
      m.from.identity,
      m.from.kind,
      JSON.stringify(m.data ?? null),
    ]);
    if (this.#db.dialect === 'sqlite') {
      await this.#db.run(INSERT.sqlite, [JSON.stringify(rows)]);
      return;
    }
    const columns = rows[0]!.map((_, i) => rows.map((r) => r[i]!) as SqlValue[]);
    await this.#db.run(INSERT.postgres, columns, HOT);
  }

  /** The `limit` newest messages before the cursor, returned oldest first. */
  async page(q: PageQuery): Promise<MessagePageResult> {
    const raw = await this.pageRows(q);
    return {
      messages: raw.rows.map((r) => rowEnvelope(raw.sessionId, r)),
      hasMore: raw.hasMore,
      next: raw.next,
    };
  }

  /**
   * The newest `limit` messages after the cursor and up to uptoUs (debug ones too), oldest first, and whether
   * older ones after the cursor were left out.
   */
  async missed(q: MissedQuery): Promise<{ rows: MessageRow[]; complete: boolean }> {
    // after a time alone: after every id at that time, i.e. from the next microsecond
    const cursor = q.afterId === undefined ? [q.afterUs + 1, ''] : [q.afterUs, q.afterId];
    const rows = await this.#db.all<MessageRow>(
      MISSED[q.filter ?? 'all'],
      [q.sessionId, ...cursor, q.uptoUs, q.limit + 1],
      HOT,
    );
    const complete = rows.length <= q.limit;
    if (!complete) rows.pop();
    return { rows: rows.reverse(), complete };
  }

  /** The same page as stored: each message's data still its JSON text (see pageJson). */
  async pageRows(q: PageQuery): Promise<StoredPage> {
    const rows = await this.#db.all<MessageRow>(
      q.includeDebug ? PAGE.all : PAGE.noDebug,
      [q.sessionId, q.beforeUs ?? Number.MAX_SAFE_INTEGER, q.beforeId ?? '', q.limit + 1],
      HOT,
    );
    const hasMore = rows.length > q.limit;
    if (hasMore) rows.pop();
    const oldest = rows[rows.length - 1];
    return {
      sessionId: q.sessionId,
      rows: rows.reverse(),
      hasMore,
      next: hasMore && oldest ? { atUs: Number(oldest.at), id: oldest.id } : null,
    };
  }
}

/** What a reopened socket missed: after a cursor, up to a time. */
export interface MissedQuery {
  sessionId: string;
  /** after this time (µs); with afterId, also the messages at exactly that time whose id sorts above it */
  afterUs: number;
  afterId?: string;
  /** up to this time (µs), inclusive */
  uptoUs: number;
  /** the newest `limit` are returned */
  limit: number;
  /** which rows: all (default), not the agents', or only the arrivals and departures of others than agents */
  filter?: keyof typeof MISSED;
}

/** A stored row as the envelope it was. */
export function rowEnvelope(sessionId: string, r: MessageRow): Envelope {
  return {
    id: r.id,
    sessionId,
    type: r.type,
    from: { identity: r.from_identity, kind: r.from_kind as Envelope['from']['kind'] },
    at: microsToIso(Number(r.at)),
    data: JSON.parse(r.data),
  };
}

/** A page as the database gave it, oldest first. */
export interface StoredPage {
  sessionId: string;
  rows: MessageRow[];
  hasMore: boolean;
  next: { atUs: number; id: string } | null;
}

/**
 * A page as the JSON text of the API's MessagePage, with each message's data spliced in as it was stored
 * (it was stored as JSON), so a page is neither parsed nor serialized again on its way out.
 */
export function pageJson(p: StoredPage): string {
  const sid = JSON.stringify(p.sessionId);
  let out = '{"messages":[';
  for (let i = 0; i < p.rows.length; i++) {
    const r = p.rows[i]!;
    out += `${i > 0 ? ',' : ''}{"id":${JSON.stringify(r.id)},"sessionId":${sid},"type":${JSON.stringify(r.type)},"from":{"identity":${JSON.stringify(r.from_identity)},"kind":${JSON.stringify(r.from_kind)}},"at":"${microsToIso(Number(r.at))}","data":${r.data}}`;
  }
  const next = p.next;
  return `${out}],"hasMore":${p.hasMore},"nextBefore":${next ? `"${microsToIso(next.atUs)}"` : 'null'},"nextBeforeId":${next ? JSON.stringify(next.id) : 'null'}}`;
}

/** The second microsToIso last wrote, and its text up to the decimal point. */
let isoSecond = Number.NaN;
let isoPrefix = '';

/** `2026-12-04T16:44:35.123004Z`: ISO-8601 to the microsecond. */
export function microsToIso(us: number): string {
  const second = Math.floor(us / 1_000_000);
  // a page's messages, like the messages of a room, come many to the second: its text is made once
  if (second !== isoSecond) {
    isoPrefix = new Date(second * 1000).toISOString().slice(0, -4);
    isoSecond = second;
  }
  return `${isoPrefix}${String(us - second * 1_000_000).padStart(6, '0')}Z`;
}

const ISO = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * An ISO-8601 date or date-time as microseconds since the epoch (fractions beyond the microsecond are cut), or
 * null when it is not one. A time without a zone is UTC.
 */
export function isoToMicros(text: string): number | null {
  const m = ISO.exec(text.trim());
  if (!m) return null;
  const [, date, time, fraction, zone] = m;
  let z = (zone ?? 'Z').toUpperCase();
  if (z !== 'Z' && !z.includes(':')) z = `${z.slice(0, 3)}:${z.slice(3)}`;
  const ms = Date.parse(
    time ? `${date}T${time.length === 5 ? `${time}:00` : time}${z}` : `${date}T00:00:00Z`,
  );
  if (!Number.isFinite(ms)) return null;
  const us = fraction ? Number(fraction.padEnd(6, '0').slice(0, 6)) : 0;
  return ms * 1000 + us;
}
