// Lifecycle hooks and typed events of a worker: the same moments, as overridable callbacks and as events.
import type { Assignment, Envelope, Participant } from '@usher/protocol';
import type { UsherWorker } from './worker.ts';

export interface ShutdownInfo {
  reason: string;
  graceMs: number;
  sessionId: string | null;
  /**
   * true: only the session ends; the worker stays connected and is given the next one (a project with
   * `reuseWorkers`, or a worker started by hand). false: the worker stops.
   */
  reuse: boolean;
}

export interface SessionStateInfo {
  sessionId: string;
  state: string;
}

export interface RegisteredInfo {
  workerId: string;
  heartbeatIntervalMs: number;
}

type Hook<A extends unknown[]> = (...args: [...A, worker: UsherWorker]) => void | Promise<void>;

/** Hooks passed as options; a subclass may override the methods of the same names instead. */
export interface WorkerHooks {
  /**
   * a session was assigned; `session_started` is sent when this resolves. If it throws, the error is logged and
   * `session_failed` is sent instead: the session ends as a failed launch (4003)
   */
  onConnect?: Hook<[assignment: Assignment]>;
  onParticipantJoined?: Hook<[participant: Participant]>;
  onParticipantLeft?: Hook<[participant: Participant]>;
  /** a room message of the current session */
  onMessage?: Hook<[envelope: Envelope]>;
  onSessionState?: Hook<[info: SessionStateInfo]>;
  /**
   * the worker leaves its session, once per session that was set up (onConnect began): after onShutdown (even
   * one that outlived graceMs), on close(), or when reconnecting gave up (waited for at most closeGraceMs).
   * `assignment` is the session left: a reused worker whose onShutdown outlived graceMs may hold its next session
   * already
   */
  onDisconnect?: Hook<[assignment: Assignment]>;
  /**
   * the server asked the worker to stop; `stopped` is sent once this and onDisconnect have both finished, or
   * after graceMs
   */
  onShutdown?: Hook<[info: ShutdownInfo]>;
}

/** Events emitted by UsherWorker (Node EventEmitter, typed). */
export interface WorkerEventMap {
  registered: [info: RegisteredInfo];
  connect: [assignment: Assignment];
  participantJoined: [participant: Participant];
  participantLeft: [participant: Participant];
  message: [envelope: Envelope];
  sessionState: [info: SessionStateInfo];
  shutdown: [info: ShutdownInfo];
  disconnect: [assignment: Assignment];
  /** server `error` frames and failed hooks; logged instead when nobody listens */
  error: [error: Error];
  reconnecting: [info: { attempt: number; delayMs: number; code: number; reason: string }];
  /** the worker is closed for good */
  close: [];
}
