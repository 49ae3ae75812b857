// Options of UsherSession.start() and join(), their defaults, and resolution into a frozen, fully typed object.
import { UsherError } from './errors.ts';
import type {
  FetchLike,
  PeerConnectionConstructor,
  SocketConstructor,
  Timers,
  VideoLike,
} from './platform.ts';
import { DEFAULT_RECONNECT, type ReconnectPolicy } from './reconnect.ts';

export interface AfkOptions {
  /** false: the SDK neither watches input on the page nor applies its own thresholds (default true) */
  enabled?: boolean;
  /** keyboard, mouse, touch and wheel input on the video's document counts as activity (default true) */
  trackDom?: boolean;
  /**
   * Warn after this long without input while active, even if the project's own threshold is longer. The
   * server always enforces the project's thresholds; this can only make them stricter (default: none)
   */
  warnAfterMs?: number;
  /** with `warnAfterMs`: end the session this long after the SDK's own warning (default 30 000) */
  disconnectAfterMs?: number;
}

export interface CommonOptions {
  /** the stream is attached to this element (muted, inline); input on its document counts as activity */
  video?: HTMLVideoElement | VideoLike;
  afk?: AfkOptions;
  /** reconnection after a network drop (1006) or a lost session (4007); false never reconnects */
  reconnect?: Partial<ReconnectPolicy> | false;
  fetch?: FetchLike;
  WebSocket?: SocketConstructor;
  RTCPeerConnection?: PeerConnectionConstructor;
  timers?: Timers;
  /** the current time in milliseconds (default Date.now) */
  now?: () => number;
  /** a number in [0, 1), for the reconnect jitter (default Math.random) */
  random?: () => number;
}

export interface StartOptions extends CommonOptions {
  /** the server's HTTP base URL, e.g. http://localhost:8080 */
  server: string;
  projectId: string;
  region?: string;
  /** an admin API key; only needed for a project that is not public */
  apiKey?: string;
}

export interface JoinOptions extends CommonOptions {
  /** the session's socket URL, as POST /sessions or /sessions/{id}/join returned it */
  url: string;
  /** the session token, when `url` does not carry it as ?token= */
  token?: string;
  /** the server's HTTP base URL, for end(); default: derived from `url` */
  server?: string;
}

export interface AcceptInviteOptions extends JoinOptions {
  /** the identity to join as (shown to the room); default: one the server makes up */
  identity?: string;
  /** `user` (the server's default) talks in the room; `observer` only listens */
  role?: 'user' | 'viewer' | 'observer';
}

export interface ResolvedAfk {
  readonly trackDom: boolean;
  readonly warnAfterMs: number | null;
  readonly disconnectAfterMs: number;
}

export interface ResolvedOptions {
  readonly video: VideoLike | null;
  readonly afk: ResolvedAfk | null;
  readonly reconnect: Readonly<ReconnectPolicy> | null;
  readonly fetch: FetchLike;
  readonly WebSocket: SocketConstructor;
  readonly RTCPeerConnection: PeerConnectionConstructor | null;
  readonly timers: Timers;
  readonly now: () => number;
  readonly random: () => number;
}

const defaultTimers: Timers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as Parameters<typeof clearTimeout>[0]),
};

/** How long an HTTP call (start, join, end, history) waits for the server's answer before it fails. */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * `fetch` with a bound: a request the server has not answered within REQUEST_TIMEOUT_MS is aborted and fails
 * (the SDK reports it as NETWORK), rather than leaving start() or end() pending for ever.
 */
function bounded(fetchFn: FetchLike, timers: Timers): FetchLike {
  return (url, init) =>
    new Promise((resolve, reject) => {
      const abort = new AbortController();
      const timer = timers.setTimeout(() => {
        abort.abort();
        reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      fetchFn(url, { ...init, signal: abort.signal }).then(
        (res) => {
          timers.clearTimeout(timer);
          resolve(res);
        },
        (err: unknown) => {
          timers.clearTimeout(timer);
          reject(err);
        },
      );
    });
}

/** Applies the defaults; throws one UsherError (BAD_OPTIONS) naming every option to fix. */
export function resolveOptions(options: CommonOptions): ResolvedOptions {
  const problems: string[] = [];
  const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
  if (typeof WebSocketClass !== 'function')
    problems.push('no WebSocket in this environment: pass the `WebSocket` option');
  const fetchFn =
    options.fetch ?? (globalThis.fetch ? (url, init) => globalThis.fetch(url, init) : undefined);
  if (typeof fetchFn !== 'function') problems.push('no fetch in this environment: pass the `fetch` option');

  const reconnect = options.reconnect === false ? null : { ...DEFAULT_RECONNECT, ...options.reconnect };
  if (reconnect) {
    if (!(Number.isInteger(reconnect.maxAttempts) && reconnect.maxAttempts >= 0))
      problems.push(`\`reconnect.maxAttempts\` must be an integer ≥ 0, got ${reconnect.maxAttempts}`);
    if (!(reconnect.baseDelayMs >= 0))
      problems.push(`\`reconnect.baseDelayMs\` must be ≥ 0, got ${reconnect.baseDelayMs}`);
    if (!(reconnect.maxDelayMs >= reconnect.baseDelayMs))
      problems.push('`reconnect.maxDelayMs` must be ≥ `reconnect.baseDelayMs`');
  }

  const afkOptions = options.afk ?? {};
  const afk =
    afkOptions.enabled === false
      ? null
      : {
          trackDom: afkOptions.trackDom ?? true,
          warnAfterMs: afkOptions.warnAfterMs ?? null,
          disconnectAfterMs: afkOptions.disconnectAfterMs ?? 30_000,
        };
  if (afk?.warnAfterMs != null && !(afk.warnAfterMs > 0))
    problems.push(`\`afk.warnAfterMs\` must be a positive number of milliseconds, got ${afk.warnAfterMs}`);
  if (afk && !(afk.disconnectAfterMs >= 0))
    problems.push(`\`afk.disconnectAfterMs\` must be ≥ 0, got ${afk.disconnectAfterMs}`);

  if (problems.length > 0 || !WebSocketClass || !fetchFn) {
    throw new UsherError('BAD_OPTIONS', `Invalid Usher session options: ${problems.join('; ')}.`);
  }
  const timers = options.timers ?? defaultTimers;
  return Object.freeze({
    video: options.video ?? null,
    afk: afk ? Object.freeze(afk) : null,
    reconnect: reconnect ? Object.freeze(reconnect) : null,
    fetch: bounded(fetchFn, timers),
    WebSocket: WebSocketClass,
    RTCPeerConnection: options.RTCPeerConnection ?? globalThis.RTCPeerConnection ?? null,
    timers,
    now: options.now ?? Date.now,
    random: options.random ?? Math.random,
  });
}

/** `server` without a trailing slash; it must be an http(s) URL. */
export function resolveServer(server: string | undefined, option = 'server'): string {
  if (typeof server !== 'string' || !/^https?:\/\//.test(server)) {
    throw new UsherError(
      'BAD_OPTIONS',
      `\`${option}\` must be the server's http:// or https:// URL (e.g. http://localhost:8080), got ${JSON.stringify(server)}`,
    );
  }
  return server.replace(/\/+$/, '');
}

/** The session id, token and HTTP base URL that a session socket URL (…/sessions/{id}/ws?token=…) carries. */
export function parseSocketUrl(url: string): { id: string; token: string | null; server: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsherError('BAD_OPTIONS', `\`url\` is not a URL: ${JSON.stringify(url)}`);
  }
  const match = /^(.*)\/sessions\/([^/]+)\/ws$/.exec(u.pathname);
  if (!/^wss?:$/.test(u.protocol) || !match) {
    throw new UsherError(
      'BAD_OPTIONS',
      `\`url\` must be a session socket URL (ws(s)://host/sessions/{id}/ws?token=…), got ${JSON.stringify(url)}; a session whose project holds its rooms on LiveKit is joined with a LiveKit client, with the url and token its invitation gave`,
    );
  }
  const http = u.protocol === 'wss:' ? 'https:' : 'http:';
  return {
    id: decodeURIComponent(match[2]!),
    token: u.searchParams.get('token'),
    server: `${http}//${u.host}${match[1]}`,
  };
}
