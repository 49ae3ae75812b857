// The HTTP API as the dashboard calls it: every call sends the admin key; a 401 signs the operator out.
import type { MessagePage, Participant, Project, ProjectInput, Session } from '@usher/protocol';

export type { MessagePage, Project, ProjectInput, Session };

export interface Worker {
  id: string;
  projectId: string;
  region: string;
  driver: string;
  state: string;
  sessionId: string | null;
  draining: boolean;
  connected: boolean;
  createdAt: string;
  readyAt: string | null;
}

export interface Server {
  id: string;
  url: string;
  version: string;
  startedAt: string;
  seenAt: string;
  draining: boolean;
  alive: boolean;
  self: boolean;
}

export interface Queue {
  projectId: string;
  region: string;
  length: number;
  estimatedWaitMs: number | null;
  sessions: { id: string; position: number; queuedAt: string; estimatedWaitMs: number | null }[];
}

export interface Stats {
  from: string;
  to: string;
  bucketMs: number;
  series: {
    at: string;
    states: Record<string, number>;
    queueLength: number;
    waitMsAvg: number | null;
    waitMsMax: number | null;
    ended: number;
  }[];
  closeCodes: { code: number; reason: string; count: number }[];
}

export interface ParticipantRow extends Participant {
  joinedAt: string;
  leftAt: string | null;
}

/** An error answer of the API: its HTTP status, code and message. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  readonly key: string;
  readonly #onUnauthorized: (message: string) => void;

  constructor(key: string, onUnauthorized: (message: string) => void) {
    this.key = key;
    this.#onUnauthorized = onUnauthorized;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }
  post<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('POST', path, body);
  }
  patch<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('PATCH', path, body);
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await request(this.key, method, path, body);
    if (res.status === 401) this.#onUnauthorized(res.error?.message ?? 'the admin key was refused');
    if (res.error) throw new ApiError(res.status, res.error.code, res.error.message);
    return res.body as T;
  }
}

/** One call, without the sign-out on 401 (the sign-in form uses it to try a key). */
export async function request(
  key: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown; error: { code: string; message: string } | null }> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (res.ok) return { status: res.status, body: parsed, error: null };
  const error = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
  return {
    status: res.status,
    body: parsed,
    error: {
      code: error?.code ?? `HTTP_${res.status}`,
      message: error?.message ?? `${method} ${path} answered ${res.status} ${res.statusText}`,
    },
  };
}

/**
 * How many sessions are in each live state now, counted by the server: the newest bucket of GET /stats. A one-hour
 * window in 5-minute buckets keeps the read small: the server caches the buckets that have settled.
 */
export async function liveCounts(api: Api, projectId = ''): Promise<Record<string, number>> {
  const scope = projectId ? `&projectId=${encodeURIComponent(projectId)}` : '';
  const stats = await api.get<Stats>(`/stats?hours=1&bucketMinutes=5${scope}`);
  return stats.series.at(-1)?.states ?? {};
}
