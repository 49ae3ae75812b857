// The chat history of the worker's session: GET /sessions/{id}/messages with the session's worker token, on
// the server the worker dialled (its ws(s)://…/workers/ws URL, as http(s)).
import type { Envelope, MessagePage } from '@usher/protocol';
import { WorkerError, WorkerServerError } from './errors.ts';

export interface HistoryOptions {
  /** messages per page, 1–100 (default 50) */
  limit?: number;
  /** ISO-8601 time: only older messages (a page's `nextBefore`) */
  before?: string;
  /** with `before`: a page's `nextBeforeId` */
  beforeId?: string;
  /** include `debug` messages (default false) */
  includeDebug?: boolean;
}

export type Fetch = (url: string, init: { headers: Record<string, string> }) => Promise<Response>;

/** The HTTP URL of a session's transcript, from the worker URL the worker dialled. */
export function messagesUrl(workerUrl: string, sessionId: string, o: HistoryOptions): string {
  const u = new URL(workerUrl);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  // the server's routes sit where /workers/ws does: keep any path prefix a proxy adds
  const prefix = u.pathname.replace(/\/workers\/ws\/?$/, '');
  u.pathname = `${prefix}/sessions/${encodeURIComponent(sessionId)}/messages`;
  u.search = '';
  if (o.limit !== undefined) u.searchParams.set('limit', String(o.limit));
  if (o.before !== undefined) u.searchParams.set('before', o.before);
  if (o.beforeId !== undefined) u.searchParams.set('before_id', o.beforeId);
  if (o.includeDebug) u.searchParams.set('include_debug', 'true');
  return u.toString();
}

export async function fetchHistory(
  fetcher: Fetch,
  workerUrl: string,
  sessionId: string,
  token: string,
  o: HistoryOptions,
): Promise<MessagePage> {
  const url = messagesUrl(workerUrl, sessionId, o);
  let res: Response;
  try {
    res = await fetcher(url, { headers: { authorization: `Bearer ${token}` } });
  } catch (err) {
    throw new WorkerError(
      'WORKER_HISTORY_FAILED',
      `history(): cannot reach ${url}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const body = (await res.json().catch(() => null)) as
    | (MessagePage & { error?: undefined })
    | { error?: { code: string; message: string } }
    | null;
  if (!res.ok || !body || body.error) {
    const e = body?.error;
    if (e) throw new WorkerServerError(e.code, `history(): ${e.message}`);
    throw new WorkerError('WORKER_HISTORY_FAILED', `history(): ${url} answered HTTP ${res.status}`);
  }
  return body as MessagePage;
}

/** Every message of the session so far, oldest first, paging back 100 at a time. */
export async function fetchTranscript(
  page: (o: HistoryOptions) => Promise<MessagePage>,
  includeDebug: boolean,
): Promise<Envelope[]> {
  const out: Envelope[][] = [];
  let cursor: { before: string; beforeId: string } | null = null;
  do {
    const p: MessagePage = await page({ limit: 100, includeDebug, ...(cursor ?? {}) });
    out.unshift(p.messages);
    cursor =
      p.hasMore && p.nextBefore && p.nextBeforeId ? { before: p.nextBefore, beforeId: p.nextBeforeId } : null;
  } while (cursor);
  return out.flat();
}
