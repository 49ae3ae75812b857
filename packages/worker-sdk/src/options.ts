// Worker options, their defaults, and resolution (with env fallbacks) into a frozen, fully typed object.
import { WORKER_ENV } from '@usher/protocol';
import type { BackoffPolicy } from './backoff.ts';
import { WorkerError } from './errors.ts';
import type { Fetch } from './history.ts';
import type { WorkerHooks } from './hooks.ts';
import { createConsoleLogger, type Logger } from './logger.ts';
import { DefaultWebSocket, type SocketConstructor } from './socket.ts';

export interface ReconnectOptions extends Partial<BackoffPolicy> {
  /** give up after this many failed attempts in a row (default 10) */
  maxAttempts?: number;
}

/** Timer functions; injectable so tests can drive time. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface WorkerOptions extends WorkerHooks {
  /** full ws:// or wss:// URL of the server's /workers/ws endpoint; default env USHER_WORKER_URL */
  url?: string;
  /** the worker or pool token; default env USHER_WORKER_TOKEN */
  token?: string;
  /** a name shown in the dashboard */
  name?: string;
  /** heartbeat period until the server says otherwise in `registered` (default 10 000) */
  heartbeatIntervalMs?: number;
  /** send `ready` as soon as the worker is registered (default true) */
  autoReady?: boolean;
  /**
   * drop and retry a connection that is not registered within this time; also how long what was kept while
   * reconnecting waits for the server's replay of the session after registering again (default 10 000)
   */
  registerTimeoutMs?: number;
  /** how long close(), or a worker that gives up, waits for onDisconnect before it stops anyway (default 10 000) */
  closeGraceMs?: number;
  /** reconnect policy after an unexpected close, or false to never reconnect */
  reconnect?: ReconnectOptions | false;
  /** WebSocket implementation (default: the `ws` package) */
  WebSocket?: SocketConstructor;
  /** logger (default: console, level info) */
  logger?: Logger;
  /** where url and token defaults come from (default process.env) */
  env?: Record<string, string | undefined>;
  timers?: Timers;
  /** random source for jitter, in [0, 1) */
  random?: () => number;
  /** HTTP client for history() (default: the global fetch) */
  fetch?: Fetch;
}

export interface ResolvedWorkerOptions {
  readonly url: string;
  readonly token: string;
  readonly name: string | undefined;
  readonly heartbeatIntervalMs: number;
  readonly autoReady: boolean;
  readonly registerTimeoutMs: number;
  readonly closeGraceMs: number;
  readonly reconnect: Readonly<BackoffPolicy & { maxAttempts: number }> | null;
  readonly WebSocket: SocketConstructor;
  readonly logger: Logger;
  readonly timers: Timers;
  readonly random: () => number;
  readonly fetch: Fetch;
}

export const DEFAULT_RECONNECT = Object.freeze({
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  multiplier: 2,
  jitter: 0.5,
  maxAttempts: 10,
});

const defaultTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Applies defaults and env fallbacks; throws one WorkerError naming every option (and env var) to fix. */
export function resolveWorkerOptions(options: WorkerOptions = {}): ResolvedWorkerOptions {
  const env = options.env ?? process.env;
  const url = options.url ?? env[WORKER_ENV.url];
  const token = options.token ?? env[WORKER_ENV.token];
  const problems: string[] = [];
  if (!url) problems.push(`no server URL: pass the \`url\` option or set ${WORKER_ENV.url}`);
  else if (!/^wss?:\/\//.test(url))
    problems.push(`\`url\` (or ${WORKER_ENV.url}) must start with ws:// or wss://, got "${url}"`);
  if (!token) problems.push(`no worker token: pass the \`token\` option or set ${WORKER_ENV.token}`);

  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 10_000;
  const registerTimeoutMs = options.registerTimeoutMs ?? 10_000;
  const closeGraceMs = options.closeGraceMs ?? 10_000;
  requirePositive(problems, 'heartbeatIntervalMs', heartbeatIntervalMs);
  requirePositive(problems, 'registerTimeoutMs', registerTimeoutMs);
  requirePositive(problems, 'closeGraceMs', closeGraceMs);
  const reconnect = options.reconnect === false ? null : { ...DEFAULT_RECONNECT, ...options.reconnect };
  if (reconnect) {
    requirePositive(problems, 'reconnect.maxAttempts', reconnect.maxAttempts);
    requirePositive(problems, 'reconnect.multiplier', reconnect.multiplier);
    if (!(reconnect.initialDelayMs >= 0)) problems.push('`reconnect.initialDelayMs` must be ≥ 0');
    if (!(reconnect.maxDelayMs >= reconnect.initialDelayMs))
      problems.push('`reconnect.maxDelayMs` must be ≥ `reconnect.initialDelayMs`');
    if (!(reconnect.jitter >= 0 && reconnect.jitter <= 1))
      problems.push('`reconnect.jitter` must be between 0 and 1');
  }
  if (problems.length > 0 || !url || !token) {
    throw new WorkerError('WORKER_CONFIG', `Invalid worker options: ${problems.join('; ')}.`);
  }
  return Object.freeze({
    url,
    token,
    name: options.name,
    heartbeatIntervalMs,
    autoReady: options.autoReady ?? true,
    registerTimeoutMs,
    closeGraceMs,
    reconnect: reconnect ? Object.freeze(reconnect) : null,
    WebSocket: options.WebSocket ?? DefaultWebSocket,
    logger: options.logger ?? createConsoleLogger(),
    timers: options.timers ?? defaultTimers,
    random: options.random ?? Math.random,
    fetch: options.fetch ?? ((url: string, init: { headers: Record<string, string> }) => fetch(url, init)),
  });
}

function requirePositive(problems: string[], name: string, value: number): void {
  if (!(Number.isFinite(value) && value > 0))
    problems.push(`\`${name}\` must be a positive number, got ${value}`);
}
