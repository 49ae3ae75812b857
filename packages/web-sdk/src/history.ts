// A session's recorded messages (GET /sessions/{id}/messages): one page, every page back from the newest, or
// the whole transcript. Works after the session ended, with any participant's token of that session.
import type { Envelope, MessagePage } from '@usher/protocol';
import { UsherError } from './errors.ts';
import { call, isObject } from './http.ts';
import type { FetchLike } from './platform.ts';

export type { MessagePage };

/** The largest page the server gives. */
export const MAX_HISTORY_LIMIT = 100;

export interface HistoryOptions {
  /** messages per page, 1–100 (the server's default: 50) */
  limit?: number;
  /** only messages older than this: an ISO-8601 time (a page's `nextBefore`), or a Date */
  before?: string | Date;
  /** with `before`: the id of the oldest message already seen (a page's `nextBeforeId`), so that messages
   *  stamped with the same time are neither skipped nor repeated */
  beforeId?: string;
  /** include `debug` messages (default false) */
  includeDebug?: boolean;
}

/** Where history is read from, and how. */
export interface HistorySource {
  fetch: FetchLike;
  server: string;
  sessionId: string;
  token: string;
}

/** One page: GET /sessions/{id}/messages. Its messages are oldest first. */
export async function readHistory(source: HistorySource, options: HistoryOptions = {}): Promise<MessagePage> {
  const url = `${source.server}/sessions/${encodeURIComponent(source.sessionId)}/messages${historyQuery(options)}`;
  const json = await call(source.fetch, url, {
    method: 'GET',
    headers: { authorization: `Bearer ${source.token}` },
  });
  return parsePage(json, url);
}

/**
 * Every page from the newest back to the first message (or from `before`), newest page first; each page's
 * messages are oldest first. Stops when the server says there is nothing older.
 */
export async function* historyPages(
  source: HistorySource,
  options: HistoryOptions = {},
): AsyncGenerator<MessagePage, void, undefined> {
  let cursor: Pick<HistoryOptions, 'before' | 'beforeId'> = {
    before: options.before,
    beforeId: options.beforeId,
  };
  for (;;) {
    const page = await readHistory(source, { ...options, ...cursor });
    yield page;
    if (!page.hasMore) return;
    if (page.nextBefore === null) {
      throw new UsherError('BAD_RESPONSE', 'the server said older messages exist but gave no `nextBefore`');
    }
    const next = { before: page.nextBefore, beforeId: page.nextBeforeId ?? undefined };
    if (next.before === cursor.before && next.beforeId === cursor.beforeId) {
      throw new UsherError('BAD_RESPONSE', 'the server gave the same page cursor twice');
    }
    cursor = next;
  }
}

/** The whole transcript (or everything before `before`), oldest first. */
export async function readTranscript(
  source: HistorySource,
  options: Omit<HistoryOptions, 'limit' | 'beforeId'> & { pageSize?: number } = {},
): Promise<Envelope[]> {
  const { pageSize = MAX_HISTORY_LIMIT, ...rest } = options;
  const pages: Envelope[][] = [];
  for await (const page of historyPages(source, { ...rest, limit: pageSize })) pages.push(page.messages);
  return pages.reverse().flat();
}

/** `?limit=…&before=…&before_id=…&include_debug=…` for the options given; BAD_OPTIONS names a wrong one. */
export function historyQuery(options: HistoryOptions): string {
  const q = new URLSearchParams();
  const { limit, before, beforeId, includeDebug } = options;
  if (limit !== undefined) {
    if (!(Number.isInteger(limit) && limit >= 1 && limit <= MAX_HISTORY_LIMIT))
      throw new UsherError('BAD_OPTIONS', `\`limit\` must be an integer from 1 to 100, got ${limit}`);
    q.set('limit', String(limit));
  }
  if (before !== undefined) {
    const text = before instanceof Date ? before.toISOString() : before;
    if (typeof text !== 'string' || Number.isNaN(Date.parse(text)))
      throw new UsherError(
        'BAD_OPTIONS',
        `\`before\` must be an ISO-8601 time, got ${JSON.stringify(before)}`,
      );
    q.set('before', text);
  }
  if (beforeId !== undefined) {
    if (before === undefined)
      throw new UsherError('BAD_OPTIONS', '`beforeId` goes with `before`: pass both from the previous page');
    q.set('before_id', beforeId);
  }
  if (includeDebug !== undefined) q.set('include_debug', includeDebug ? 'true' : 'false');
  const text = q.toString();
  return text ? `?${text}` : '';
}

function parsePage(json: unknown, url: string): MessagePage {
  const ok =
    isObject(json) &&
    Array.isArray(json.messages) &&
    json.messages.every(isEnvelope) &&
    typeof json.hasMore === 'boolean' &&
    (json.nextBefore === null || typeof json.nextBefore === 'string') &&
    (json.nextBeforeId === null || json.nextBeforeId === undefined || typeof json.nextBeforeId === 'string');
  if (!ok)
    throw new UsherError('BAD_RESPONSE', `GET ${url} answered something that is not a page of messages`);
  return {
    messages: json.messages as Envelope[],
    hasMore: json.hasMore as boolean,
    nextBefore: json.nextBefore as string | null,
    nextBeforeId: (json.nextBeforeId as string | null | undefined) ?? null,
  };
}

function isEnvelope(value: unknown): value is Envelope {
  return (
    isObject(value) &&
    typeof value.id === 'string' &&
    typeof value.type === 'string' &&
    typeof value.at === 'string' &&
    isObject(value.from) &&
    typeof value.from.identity === 'string'
  );
}
