// Close codes and end reasons (SPEC §4): every ended session carries exactly one of each.

export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  Abnormal: 1006,
  ProjectDisabled: 4000,
  NoWorkerAvailable: 4001,
  AppNotFound: 4002,
  AppUnableToLaunch: 4003,
  Timeout: 4004,
  StreamerNotFound: 4005,
  AppCrashed: 4006,
  ReconnectionFailed: 4007,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** What a client should do after a connection closed with a code. */
export type ReconnectPolicy = 'none' | 'resume' | 'fresh';

export const CLOSE_CODES: Readonly<
  Record<CloseCode, { meaning: string; reconnect: ReconnectPolicy; outcome: Outcome | null }>
> = {
  1000: { meaning: 'normal closure', reconnect: 'none', outcome: 'disconnected' },
  1001: { meaning: 'going away (tab closed)', reconnect: 'none', outcome: 'disconnected' },
  1006: { meaning: 'abnormal closure (network drop)', reconnect: 'resume', outcome: null },
  4000: { meaning: 'project disabled', reconnect: 'none', outcome: 'disconnected' },
  4001: {
    meaning: 'no worker available (queue full or pending timeout)',
    reconnect: 'none',
    outcome: 'failed',
  },
  4002: { meaning: 'app not found', reconnect: 'none', outcome: 'failed' },
  4003: { meaning: 'app unable to launch', reconnect: 'none', outcome: 'failed' },
  4004: { meaning: 'timeout (max runtime, AFK, idle or paused)', reconnect: 'none', outcome: 'disconnected' },
  4005: { meaning: 'streamer not found', reconnect: 'none', outcome: 'failed' },
  4006: { meaning: 'app crashed', reconnect: 'none', outcome: 'failed' },
  4007: { meaning: 'reconnection failed', reconnect: 'fresh', outcome: 'failed' },
};

/** `disconnected`: the session ended cleanly; `failed`: it ended unexpectedly. */
export type Outcome = 'disconnected' | 'failed';

/** Why a session ended. Each reason belongs to exactly one close code. */
export const EndReason = {
  Completed: 'completed',
  Canceled: 'canceled',
  ViewerLeft: 'viewer_left',
  ProjectDisabled: 'project_disabled',
  QueueFull: 'queue_full',
  PendingTimeout: 'pending_timeout',
  AppNotFound: 'app_not_found',
  LaunchFailed: 'launch_failed',
  ConnectingTimeout: 'connecting_timeout',
  MaxRuntime: 'max_runtime',
  AfkTimeout: 'afk_timeout',
  IdleTimeout: 'idle_timeout',
  PausedTimeout: 'paused_timeout',
  SeatExpired: 'seat_expired',
  WorkerLost: 'worker_lost',
  WorkerCrashed: 'worker_crashed',
  ReconnectFailed: 'reconnect_failed',
} as const;
export type EndReason = (typeof EndReason)[keyof typeof EndReason];

export const END_REASONS: Readonly<Record<EndReason, { code: CloseCode; description: string }>> = {
  completed: { code: 1000, description: 'ended on request (API, viewer or worker)' },
  canceled: {
    code: 1000,
    description: 'canceled while waiting for a worker (the API, or the viewer’s 1000)',
  },
  viewer_left: { code: 1001, description: 'the viewer closed the tab or went away' },
  project_disabled: { code: 4000, description: 'the project is disabled' },
  queue_full: { code: 4001, description: 'the queue was full' },
  pending_timeout: { code: 4001, description: 'no worker became free within the pending timeout' },
  app_not_found: { code: 4002, description: 'the project has no runnable app or agent type for the request' },
  launch_failed: { code: 4003, description: 'the worker failed to start' },
  connecting_timeout: {
    code: 4003,
    description: 'the worker did not take the session within the connecting timeout',
  },
  max_runtime: { code: 4004, description: 'the session reached its maximum runtime' },
  afk_timeout: { code: 4004, description: 'no viewer input after the AFK warning' },
  idle_timeout: { code: 4004, description: 'no activity at all within the idle timeout' },
  paused_timeout: { code: 4004, description: 'paused for longer than the paused timeout' },
  seat_expired: { code: 4005, description: 'the viewer did not take the seat held for them in time' },
  worker_lost: { code: 4005, description: 'the worker vanished before the viewer was seated' },
  worker_crashed: { code: 4006, description: 'the worker died while the session was live' },
  reconnect_failed: {
    code: 4007,
    description:
      'the viewer did not come back within the reconnect window, or its worker was lost while it was away',
  },
};

export function outcomeOf(code: CloseCode): Outcome {
  return CLOSE_CODES[code].outcome ?? 'failed';
}

export function isCloseCode(value: unknown): value is CloseCode {
  return typeof value === 'number' && Object.hasOwn(CLOSE_CODES, value);
}

/** WebSocket close codes used on control connections (not session end codes). */
export const SocketCloseCode = {
  /** the handshake or a frame broke the protocol: first frame not `register`, bad token, wrong session */
  PolicyViolation: 1008,
  /** a frame was larger than allowed */
  TooLarge: 1009,
  /** the server could not open or serve the socket (its database was away, say): try again (the Web SDK resumes) */
  InternalError: 1011,
  /** the server is shutting down or restarting (1012, service restart); reconnect to another server or later */
  ServerShutdown: 1012,
  /** the worker was replaced or reaped */
  Replaced: 4100,
  /** the client read its events too slowly (the operator's event socket): reconnect, then read the state again */
  SlowConsumer: 4101,
} as const;
