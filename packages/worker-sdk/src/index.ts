// @usher/worker: the Node SDK for Usher workers and agents.

export type { Assignment, Envelope, MessagePage, Participant } from '@usher/protocol';
export { type BackoffPolicy, backoffDelayMs } from './backoff.ts';
export { WORKER_ERRORS, WorkerError, type WorkerErrorCode, WorkerServerError } from './errors.ts';
export { type Fetch, type HistoryOptions, messagesUrl } from './history.ts';
export type { RegisteredInfo, SessionStateInfo, ShutdownInfo, WorkerEventMap, WorkerHooks } from './hooks.ts';
export { MAX_MESSAGE_FRAME_BYTES, MAX_WORKER_FRAME_BYTES } from './limits.ts';
export { createConsoleLogger, type Logger, type LogLevel, truncate } from './logger.ts';
export {
  DEFAULT_RECONNECT,
  type ReconnectOptions,
  type ResolvedWorkerOptions,
  resolveWorkerOptions,
  type Timers,
  type WorkerOptions,
} from './options.ts';
export { OUTBOX_MAX_BYTES, OUTBOX_MAX_MESSAGES } from './outbox.ts';
export { DefaultWebSocket, type SocketConstructor, type SocketLike } from './socket.ts';
export { SILENT_HEARTBEATS_LIMIT, UsherWorker, type WorkerConnectionState } from './worker.ts';
