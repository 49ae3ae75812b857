// What the store keeps, as the engine sees it: plain records with times in epoch milliseconds.
import type { CloseCode, EndReason, Outcome, Project, SessionState, WorkerState } from '@usher/protocol';

export type ProjectSettings = Omit<Project, 'createdAt' | 'updatedAt'>;

export interface ProjectRecord {
  settings: ProjectSettings;
  createdAt: number;
  updatedAt: number;
}

export interface SessionRecord {
  id: string;
  projectId: string;
  region: string;
  agentType: string | null;
  config: Record<string, unknown>;
  state: SessionState;
  workerId: string | null;
  /** set while queued; the queue is ordered by (queuedAt, id) */
  queuedAt: number | null;
  restarts: number;
  savedState: unknown;
  /** the viewer's connection is up (streaming sessions go active only with it) */
  viewerAttached: boolean;
  /** the server the viewer's connection is on, while it is attached */
  viewerServer: string | null;
  /** the worker took the assignment (`session_started`) */
  workerStarted: boolean;
  /** the end decided when the session entered `ending` */
  pendingEnd: { code: CloseCode; reason: EndReason; cause: string } | null;
  createdAt: number;
  updatedAt: number;
  activeAt: number | null;
  endedAt: number | null;
  endCode: CloseCode | null;
  endReason: EndReason | null;
  outcome: Outcome | null;
}

export interface TransitionRecord {
  from: SessionState | null;
  to: SessionState;
  at: number;
  cause: string;
}

export interface WorkerRecord {
  id: string;
  projectId: string;
  region: string;
  driver: string;
  state: WorkerState;
  sessionId: string | null;
  /** the driver's handle (pid, pod name) to find the worker again after a restart */
  handle: string | null;
  /** the server whose driver started the worker, or that holds its socket */
  serverId: string | null;
  /** the server the worker's socket is on now, or null while it has none */
  attachedTo: string | null;
  draining: boolean;
  createdAt: number;
  readyAt: number | null;
  updatedAt: number;
  stoppedAt: number | null;
}

/** Durable deadlines, one per (session, kind). */
export const TimerKind = {
  Pending: 'pending',
  Connecting: 'connecting',
  SeatHold: 'seat_hold',
  AfkWarning: 'afk_warning',
  AfkDisconnect: 'afk_disconnect',
  Idle: 'idle',
  Paused: 'paused',
  MaxRuntime: 'max_runtime',
  Reconnect: 'reconnect',
  Ending: 'ending',
} as const;
export type TimerKind = (typeof TimerKind)[keyof typeof TimerKind];

export interface TimerRecord {
  sessionId: string;
  kind: TimerKind;
  dueAt: number;
}

/** A new worker record: starting, not draining, nothing stopped yet. */
export function newWorkerRecord(
  fields: Pick<WorkerRecord, 'id' | 'projectId' | 'region' | 'driver' | 'sessionId' | 'handle' | 'serverId'>,
  now: number,
): WorkerRecord {
  return {
    ...fields,
    state: 'starting',
    attachedTo: null,
    draining: false,
    createdAt: now,
    readyAt: null,
    updatedAt: now,
    stoppedAt: null,
  };
}

/** A new session record in `requesting`. */
export function newSessionRecord(
  fields: Pick<SessionRecord, 'id' | 'projectId' | 'region' | 'agentType' | 'config'>,
  now: number,
): SessionRecord {
  return {
    ...fields,
    state: 'requesting',
    workerId: null,
    queuedAt: null,
    restarts: 0,
    savedState: null,
    viewerAttached: false,
    viewerServer: null,
    workerStarted: false,
    pendingEnd: null,
    createdAt: now,
    updatedAt: now,
    activeAt: null,
    endedAt: null,
    endCode: null,
    endReason: null,
    outcome: null,
  };
}
