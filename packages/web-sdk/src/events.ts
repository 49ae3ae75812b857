// The events a session emits, and what each carries.
import type { Envelope, Outcome, Participant, SessionState } from '@usher/protocol';
import type { SessionErrorInfo } from './errors.ts';

export interface StateChange {
  state: SessionState;
  previous: SessionState;
  /** what made the change, e.g. "viewer:input", "timer:afk", "close:1006" */
  cause: string;
}

export interface QueueInfo {
  /** 1-based place in line */
  position: number;
  queueLength: number;
  /** null while the server has too little history to estimate */
  estimatedWaitMs: number | null;
}

export interface AfkWarningInfo {
  /** how long until the session ends unless there is input */
  remainingMs: number;
  /** when it ends, as an ISO-8601 time (the server's clock for the server's warning) */
  disconnectAt: string;
}

export interface EndInfo {
  /** the close code (SPEC §4); 4007 when the SDK gave up reconnecting */
  code: number;
  /** the end reason, e.g. "completed", "afk_timeout"; the SDK's own: "reconnect_failed", "reconnect_canceled" */
  reason: string;
  /** `disconnected` (ended cleanly) or `failed` */
  outcome: Outcome;
}

export interface ReconnectingInfo {
  /** 1-based attempt number */
  attempt: number;
  /** how long the SDK waits before the attempt */
  delayMs: number;
  /** the close code that caused it: 1006 resumes the session, 4007 starts a fresh one */
  code: number;
}

export interface ReconnectedInfo {
  /** attempts it took */
  attempts: number;
  /** the session now followed: a new id after a fresh start */
  sessionId: string;
  /** true when a new session replaced the lost one (close code 4007) */
  fresh: boolean;
}

export interface SessionEvents {
  state: StateChange;
  queue: QueueInfo;
  /** the viewer will be disconnected unless there is input */
  afkWarning: AfkWarningInfo;
  /** every second while the AFK warning shows */
  afkCountdown: { remainingMs: number };
  /** the warning is gone: input here (`input`), or the server saw input elsewhere (`server`) */
  afkDismissed: { by: 'input' | 'server' };
  /** the session is over; nothing is emitted after it */
  ended: EndInfo;
  error: SessionErrorInfo;
  /** a room message */
  message: Envelope;
  participantJoined: Participant;
  participantLeft: Participant;
  reconnecting: ReconnectingInfo;
  reconnected: ReconnectedInfo;
  reconnectFailed: { attempts: number; code: number };
  /** the worker's media stream started (it is already attached to the `video` option) */
  stream: MediaStream;
  /** a message from the worker on the WebRTC data channel */
  dataChannelMessage: string | ArrayBuffer;
}
