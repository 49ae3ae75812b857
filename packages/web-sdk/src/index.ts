// @usher/web: the browser SDK. Start or join a session, follow its state, queue and AFK, play its stream.

export type { Envelope, Outcome, Participant, SessionState } from '@usher/protocol';
export type { Listener } from './emitter.ts';
export { type SessionErrorInfo, UsherError, WEB_ERRORS, type WebErrorCode } from './errors.ts';
export type {
  AfkWarningInfo,
  EndInfo,
  QueueInfo,
  ReconnectedInfo,
  ReconnectingInfo,
  SessionEvents,
  StateChange,
} from './events.ts';
export type { AfkOptions, CommonOptions, JoinOptions, StartOptions } from './options.ts';
export type {
  FetchLike,
  PeerConnectionConstructor,
  PeerConnectionLike,
  SocketConstructor,
  SocketLike,
  Timers,
  VideoLike,
} from './platform.ts';
export { DEFAULT_RECONNECT, type ReconnectPolicy, reconnectDelayMs } from './reconnect.ts';
export { PING_INTERVAL_MS, UsherSession } from './session.ts';
