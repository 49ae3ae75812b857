// @usher/web: the browser SDK. Start or join a session, follow its state, queue and AFK, play its stream;
// talk in its room with acknowledged messages, invite others, and read its transcript.

export type { Envelope, MessagePage, Outcome, Participant, SessionState } from '@usher/protocol';
export { ACK_TIMEOUT_MS, type MessageAckInfo } from './acks.ts';
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
export { type HistoryOptions, MAX_HISTORY_LIMIT } from './history.ts';
export type { Invite, JoinRole } from './http.ts';
export type {
  AcceptInviteOptions,
  AfkOptions,
  CommonOptions,
  JoinOptions,
  StartOptions,
} from './options.ts';
export { REQUEST_TIMEOUT_MS } from './options.ts';
export { OUTBOX_LIMIT } from './outbox.ts';
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
export { CONNECT_TIMEOUT_MS, PING_INTERVAL_MS, UsherSession } from './session.ts';
