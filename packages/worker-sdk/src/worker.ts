// UsherWorker: dials /workers/ws, registers, heartbeats, reconnects, and turns server frames into hooks and events.
import { EventEmitter } from 'node:events';
import {
  type Assignment,
  type Envelope,
  type MessagePage,
  type Participant,
  PROTOCOL_VERSION,
  RoomCursor,
  ServerToWorkerFrame,
  SocketCloseCode,
  validator,
  type WorkerFrame,
} from '@usher/protocol';
import { backoffDelayMs } from './backoff.ts';
import { errorMessage, WorkerError, WorkerServerError } from './errors.ts';
import { fetchHistory, fetchTranscript, type HistoryOptions } from './history.ts';
import type { SessionStateInfo, ShutdownInfo, WorkerEventMap, WorkerHooks } from './hooks.ts';
import { frameBytes, MAX_MESSAGE_FRAME_BYTES, MAX_WORKER_FRAME_BYTES } from './limits.ts';
import { truncate } from './logger.ts';
import { type ResolvedWorkerOptions, resolveWorkerOptions, type WorkerOptions } from './options.ts';
import { OUTBOX_MAX_BYTES, OUTBOX_MAX_MESSAGES, Outbox } from './outbox.ts';
import { frameText, SOCKET_OPEN, type SocketLike } from './socket.ts';
import { surviveBrokenStdio } from './stdio.ts';

const serverFrame = validator(ServerToWorkerFrame);

/**
 * Heartbeat periods in a row with nothing from the server (no frame, no pong) after which the connection is
 * taken for dead and dropped (a half-open connection: the server's host died, a NAT forgot the connection).
 */
export const SILENT_HEARTBEATS_LIMIT = 2;

/** idle → connecting → registered → closing → closed; `connecting` again while reconnecting. */
export type WorkerConnectionState = 'idle' | 'connecting' | 'registered' | 'closing' | 'closed';

const HOOK_NAMES = [
  'onConnect',
  'onParticipantJoined',
  'onParticipantLeft',
  'onMessage',
  'onSessionState',
  'onDisconnect',
  'onShutdown',
] as const satisfies readonly (keyof WorkerHooks)[];

export class UsherWorker extends EventEmitter<WorkerEventMap> {
  readonly options: ResolvedWorkerOptions;
  readonly #hooks: WorkerHooks = {};
  #state: WorkerConnectionState = 'idle';
  #socket: SocketLike | null = null;
  #registered = false;
  #workerId: string | null = null;
  #session: Assignment | null = null;
  /** how onConnect went for #session: still running, done (session_started), or failed (session_failed) */
  #setup: 'running' | 'started' | 'failed' = 'running';
  /** why onConnect failed, for session_failed */
  #setupError = '';
  /** session_failed went out on a registered connection for #session */
  #failureSent = false;
  /** the session the last shutdown ended: nothing is said about its set-up any more */
  #endingSession: Assignment | null = null;
  /** the sessions onDisconnect has run (or is running) for: once each, whatever order the hooks end in */
  readonly #left = new WeakSet<Assignment>();
  /** the sessions whose set-up began (the `connect` event, onConnect): only those have anything to leave */
  readonly #connected = new WeakSet<Assignment>();
  /**
   * send() and saveState() frames made for #session while the worker is away (reconnecting, or registered again
   * but not yet told it still serves the session): sent in order once it is, dropped if the session is gone
   */
  #outbox: Outbox | null = null;
  /** the session the last `register` asked a replay for (`after`): its `replayed` says the worker still serves it */
  #askedReplay: string | null = null;
  /** heartbeat periods since the server was last heard from (a frame, a ping or a pong) */
  #silentBeats = 0;
  #wantReady: boolean;
  #heartbeatMs: number;
  #heartbeatTimer: unknown = null;
  #registerTimer: unknown = null;
  #reconnectTimer: unknown = null;
  /** runs out when the server has not said the worker still serves its session (`replayed`) after registering */
  #confirmTimer: unknown = null;
  #failures = 0;
  #lastServerError: WorkerServerError | null = null;
  /**
   * How far the worker has heard its room: a worker that comes back with its session registers with it (`after`),
   * and the server replays what it missed; a message that comes twice is handled once.
   */
  readonly #heard = new RoomCursor();
  /** who is in the session's room, as the worker was told: an arrival or departure is news once */
  #present = new Set<string>();
  /** the worker token the server gave at registration, or since (fresher than options.token) */
  #ownToken: string | null = null;
  /** the hooks of the current session, one at a time in order; a new session starts a queue of its own */
  #inbox: Promise<void> = Promise.resolve();
  #started: PromiseWithResolvers<void> | null = null;
  #startSettled = false;
  readonly #closed = Promise.withResolvers<void>();

  /** Resolves options (throws WorkerError WORKER_CONFIG naming what to fix); opens nothing until start(). */
  constructor(options: WorkerOptions = {}) {
    super();
    this.options = resolveWorkerOptions(options);
    for (const name of HOOK_NAMES) if (options[name]) Object.assign(this.#hooks, { [name]: options[name] });
    this.#wantReady = this.options.autoReady;
    this.#heartbeatMs = this.options.heartbeatIntervalMs;
  }

  /** The current assignment (with `savedState`), or null. */
  get session(): Assignment | null {
    return this.#session;
  }
  get workerId(): string | null {
    return this.#workerId;
  }
  get state(): WorkerConnectionState {
    return this.#state;
  }
  /** Resolves once the worker is closed for good (shutdown, close(), rejection or reconnect given up). */
  get closed(): Promise<void> {
    return this.#closed.promise;
  }

  // ---- lifecycle hooks: override in a subclass, or pass as options ----
  onConnect(assignment: Assignment): void | Promise<void> {
    return this.#hooks.onConnect?.(assignment, this);
  }
  onParticipantJoined(participant: Participant): void | Promise<void> {
    return this.#hooks.onParticipantJoined?.(participant, this);
  }
  onParticipantLeft(participant: Participant): void | Promise<void> {
    return this.#hooks.onParticipantLeft?.(participant, this);
  }
  onMessage(envelope: Envelope): void | Promise<void> {
    return this.#hooks.onMessage?.(envelope, this);
  }
  onSessionState(info: SessionStateInfo): void | Promise<void> {
    return this.#hooks.onSessionState?.(info, this);
  }
  /** `assignment` is the session being left (worker.session may already be the next one, or null) */
  onDisconnect(assignment: Assignment): void | Promise<void> {
    return this.#hooks.onDisconnect?.(assignment, this);
  }
  onShutdown(info: ShutdownInfo): void | Promise<void> {
    return this.#hooks.onShutdown?.(info, this);
  }

  // ---- public API ----
  /** Connects and registers; resolves when `registered` arrives, rejects if the server refuses or retries run out. */
  start(): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') {
      return Promise.reject(
        new WorkerError('WORKER_CLOSED', 'start(): the worker is closed; create a new UsherWorker'),
      );
    }
    if (!this.#started) {
      this.#started = Promise.withResolvers<void>();
      surviveBrokenStdio();
      this.#open();
    }
    return this.#started.promise;
  }

  /** Tells the server the worker can take a session; sent now if registered, else as soon as it is. */
  ready(): void {
    this.#wantReady = true;
    if (this.#canSend()) this.#sendFrame({ type: 'ready' });
  }

  /** Sends a room message of type `type` to the current session. */
  send(type: string, data: unknown = null): void {
    const sessionId = this.#requireSession('send');
    if (typeof type !== 'string' || type.length < 1 || type.length > 64) {
      throw new WorkerError(
        'WORKER_BAD_ARGUMENT',
        `send(type, data): \`type\` must be a string of 1 to 64 characters, got ${truncate(JSON.stringify(type) ?? String(type), 80)}`,
      );
    }
    const frame: WorkerFrame = { type: 'message', sessionId, messageType: type, data };
    const text = encodeFrame(frame, 'send(type, data)', 'the message', MAX_MESSAGE_FRAME_BYTES, SEND_ADVICE);
    this.#sendOrKeep(frame, text);
  }

  /**
   * A page of the session's chat history: the newest recorded messages before `before`, oldest first. After an
   * auto-restart, `session.transcript` already holds the newest page.
   */
  history(options: HistoryOptions = {}): Promise<MessagePage> {
    const sessionId = this.#requireSession('history');
    return fetchHistory(this.options.fetch, this.options.url, sessionId, this.#session!.token, options);
  }

  /** The session's whole chat history so far, oldest first. */
  transcript(options: { includeDebug?: boolean } = {}): Promise<Envelope[]> {
    this.#requireSession('transcript');
    return fetchTranscript((o) => this.history(o), options.includeDebug ?? false);
  }

  /**
   * Saves state that a replacement worker receives as `assignment.savedState` after a crash. Throws
   * WORKER_BAD_ARGUMENT, sending nothing, when the state is not JSON or its frame is over 1 MiB.
   */
  saveState(state: unknown): void {
    const sessionId = this.#requireSession('saveState');
    const frame: WorkerFrame = { type: 'save_state', sessionId, state: state ?? null };
    const text = encodeFrame(frame, 'saveState(state)', 'the state', MAX_WORKER_FRAME_BYTES, SAVE_ADVICE);
    this.#sendOrKeep(frame, text);
  }

  pause(): void {
    this.#sendFrame({ type: 'control', sessionId: this.#requireSession('pause'), action: 'pause' });
  }
  resume(): void {
    this.#sendFrame({ type: 'control', sessionId: this.#requireSession('resume'), action: 'resume' });
  }
  /** Asks the server to end the current session. */
  end(): void {
    this.#sendFrame({ type: 'control', sessionId: this.#requireSession('end'), action: 'end' });
  }

  /** Leaves the session (onDisconnect), sends `stopped`, closes the socket and never reconnects. */
  async close(): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return this.#closed.promise;
    this.#state = 'closing';
    this.#clearTimer('reconnect');
    // a caller may close() without awaiting start(); that rejection must not crash the process
    this.#started?.promise.catch(() => {});
    this.#settleStart(
      new WorkerError('WORKER_CLOSED', 'start(): the worker was closed before it registered'),
    );
    await this.#withinGrace(this.#leaveSession(this.#session), this.options.closeGraceMs, 'onDisconnect');
    this.#stopAndClose();
    return this.#closed.promise;
  }

  /** Waits for hooks at most graceMs; true when they were still running then (and are left to finish alone). */
  async #withinGrace(work: Promise<void>, graceMs: number, what: string): Promise<boolean> {
    let timer: unknown = null;
    const timedOut = await Promise.race([
      work.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = this.options.timers.setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    this.options.timers.clearTimeout(timer);
    if (timedOut) this.options.logger.warn(`${what} still running after ${graceMs} ms; stopping anyway`);
    return timedOut;
  }

  // ---- connection ----
  #open(): void {
    this.#state = 'connecting';
    this.#registered = false;
    const { url, name, logger } = this.options;
    // after a pool-token registration, the worker's own token: it reconnects as the same worker
    const token = this.#ownToken ?? this.options.token;
    let socket: SocketLike;
    try {
      socket = new this.options.WebSocket(url);
    } catch (err) {
      void this.#fail(
        new WorkerError('WORKER_CONFIG', `cannot open ${url}: ${errorMessage(err)}`, { cause: err }),
      );
      return;
    }
    this.#socket = socket;
    logger.debug('connecting', { url });
    socket.addEventListener('open', () => {
      if (socket !== this.#socket) return;
      const heard = this.#heard.heard;
      const session = this.#session?.sessionId;
      this.#askedReplay = heard && session ? session : null;
      this.#write({
        type: 'register',
        token,
        protocolVersion: PROTOCOL_VERSION,
        ...(name ? { name } : {}),
        ...(heard && session ? { after: { sessionId: session, ...heard } } : {}),
      });
    });
    socket.addEventListener('message', (event) => {
      if (socket !== this.#socket) return;
      this.#silentBeats = 0;
      this.#onData(event.data);
    });
    // `ws` reports control frames too: a pong answers the SDK's ping; they are signs of life, like any frame
    const heard = () => {
      if (socket === this.#socket) this.#silentBeats = 0;
    };
    socket.on?.('pong', heard);
    socket.on?.('ping', heard);
    socket.addEventListener('error', (event) => {
      if (socket !== this.#socket) return;
      const message = (event as { message?: unknown; error?: unknown }).message ?? 'socket error';
      logger.debug('socket error', { message: String(message) });
    });
    socket.addEventListener('close', (event) => {
      if (socket === this.#socket) this.#onSocketClose(event.code, event.reason);
    });
    this.#registerTimer = this.options.timers.setTimeout(() => {
      this.#registerTimer = null;
      if (socket !== this.#socket) return;
      // a connection that never answered may be dead: dropped at once, not after a close handshake
      this.#drop(socket, `not registered within ${this.options.registerTimeoutMs} ms`);
    }, this.options.registerTimeoutMs);
  }

  #onSocketClose(code: number, reason: string): void {
    this.#socket = null;
    this.#registered = false;
    this.#clearTimer('heartbeat');
    this.#clearTimer('register');
    // the outbox waits for the next registration
    this.#clearTimer('confirm');
    if (this.#state === 'closing' || this.#state === 'closed') {
      this.#finish();
      return;
    }
    const why = `${code}${reason ? ` ${reason}` : ''}`;
    if (code === SocketCloseCode.PolicyViolation || code === SocketCloseCode.Replaced) {
      const server = this.#lastServerError
        ? `: ${this.#lastServerError.code} ${this.#lastServerError.message}`
        : '';
      void this.#fail(
        new WorkerError('WORKER_REJECTED', `the server closed the worker connection (${why})${server}`),
      );
      return;
    }
    const policy = this.options.reconnect;
    this.#failures += 1;
    if (!policy || this.#failures > policy.maxAttempts) {
      const detail = policy
        ? `gave up after ${policy.maxAttempts} reconnect attempts`
        : 'reconnect is disabled';
      void this.#fail(
        new WorkerError(
          'WORKER_RECONNECT_FAILED',
          `connection to ${this.options.url} closed (${why}); ${detail}`,
        ),
      );
      return;
    }
    this.#state = 'connecting';
    const delayMs = backoffDelayMs(this.#failures, policy, this.options.random);
    this.options.logger.warn('connection closed; reconnecting', {
      code,
      reason,
      attempt: this.#failures,
      delayMs,
    });
    this.#reconnectTimer = this.options.timers.setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.#state === 'connecting') this.#open();
    }, delayMs);
    this.#notify('reconnecting', { attempt: this.#failures, delayMs, code, reason });
  }

  #onData(data: unknown): void {
    const { logger } = this.options;
    const text = frameText(data);
    if (text === null) {
      logger.warn('ignored a binary frame; the worker protocol is JSON text');
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      logger.warn(`ignored a frame that is not JSON: ${truncate(text)}`);
      return;
    }
    const parsed = serverFrame.parse(json);
    if (!parsed.ok) {
      logger.warn(`ignored an unexpected frame (${parsed.message}): ${truncate(text)}`);
      return;
    }
    try {
      this.#dispatch(parsed.value);
    } catch (err) {
      this.#emitError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Every server frame, in one switch. Session frames run in order through #inbox; shutdown does not wait. */
  #dispatch(frame: ServerToWorkerFrame): void {
    switch (frame.type) {
      case 'registered':
        if (frame.token) this.#ownToken = frame.token;
        // a cursor for the next reconnect, if the worker has none: the replay it may be given comes next
        if (frame.upto && !this.#heard.heard) this.#heard.mark(frame.upto);
        this.#onRegistered(frame.workerId, frame.heartbeatIntervalMs, frame.sessionId);
        return;
      case 'assign':
        // a new session: its room is heard from where it stood at the handover, with who was in it
        this.#heard.reset(frame.upto ?? null);
        this.#present = new Set(frame.assignment.participants.map((p) => p.identity));
        this.#beginSession(frame.assignment);
        return;
      case 'message':
        if (!this.#heard.message(frame.message.id, frame.message.at)) return;
        this.#enqueue('onMessage', () => {
          this.#notify('message', frame.message);
          return this.onMessage(frame.message);
        });
        return;
      case 'participant_joined':
        // a replay after a reconnect may tell an arrival already heard
        if (this.#present.has(frame.participant.identity)) return;
        this.#present.add(frame.participant.identity);
        this.#enqueue('onParticipantJoined', () => {
          this.#notify('participantJoined', frame.participant);
          return this.onParticipantJoined(frame.participant);
        });
        return;
      case 'participant_left':
        if (!this.#present.delete(frame.participant.identity)) return;
        this.#enqueue('onParticipantLeft', () => {
          this.#notify('participantLeft', frame.participant);
          return this.onParticipantLeft(frame.participant);
        });
        return;
      case 'session_state': {
        const info = { sessionId: frame.sessionId, state: frame.state };
        this.#enqueue('onSessionState', () => {
          this.#notify('sessionState', info);
          return this.onSessionState(info);
        });
        return;
      }
      case 'shutdown':
        void this.#onShutdown({
          reason: frame.reason,
          graceMs: frame.graceMs,
          sessionId: frame.sessionId,
          reuse: frame.reuse === true && frame.sessionId !== null,
        });
        return;
      case 'error':
        this.#lastServerError = new WorkerServerError(frame.code, frame.message);
        this.#emitError(this.#lastServerError);
        return;
      case 'replayed':
        this.#heard.mark(frame.upto);
        this.options.logger.info('missed room messages replayed', {
          sessionId: frame.sessionId,
          count: frame.count,
        });
        if (!frame.complete)
          this.options.logger.warn(
            `more room messages came while the connection was down than the server replays: the newest ${frame.count} were; read the older ones with history()`,
            { sessionId: frame.sessionId },
          );
        // the server still has the worker serving the session it came back with: what it said meanwhile goes now
        if (this.#outbox?.sessionId === frame.sessionId && this.#canSend()) this.#flushOutbox();
        return;
      case 'token':
        // fresh credentials before the old expire: to register with next time, and to read the transcript
        if (frame.worker) this.#ownToken = frame.worker;
        if (frame.session && this.#session?.sessionId === frame.session.sessionId)
          this.#session.token = frame.session.token;
        return;
      default: {
        const unknownFrame: never = frame;
        this.options.logger.warn(`unhandled frame: ${truncate(JSON.stringify(unknownFrame))}`);
      }
    }
  }

  /** @param serverSession  the session the server has the worker on (undefined: a server that does not say) */
  #onRegistered(workerId: string, heartbeatIntervalMs: number, serverSession?: string | null): void {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#clearTimer('register');
    this.#state = 'registered';
    this.#registered = true;
    this.#failures = 0;
    this.#lastServerError = null;
    this.#workerId = workerId;
    this.#silentBeats = 0;
    this.#heartbeatMs = heartbeatIntervalMs > 0 ? heartbeatIntervalMs : this.options.heartbeatIntervalMs;
    this.options.logger.info('registered', { workerId, heartbeatIntervalMs: this.#heartbeatMs });
    // the session it came back with ended while it was away: it leaves it, and is free for the next (one whose
    // shutdown is under way is left by its shutdown, once onShutdown is done)
    const lost = this.#session;
    if (lost && serverSession !== undefined && serverSession !== lost.sessionId) this.#lose(lost);
    // after a reconnect a worker that holds a session does not announce itself free
    if (this.#wantReady && !this.#session) this.#sendFrame({ type: 'ready' });
    // what the old connection said about the session may have been lost with it (the server takes a repeated
    // session_started as a no-op); a set-up that finished while the socket was down is reported now
    this.#reportSetup();
    this.#confirmOutbox(serverSession);
    this.#scheduleHeartbeat();
    this.#settleStart();
    this.#notify('registered', { workerId, heartbeatIntervalMs: this.#heartbeatMs });
  }

  /**
   * After a registration, what the worker kept while away: sent now when the server says it still has the worker
   * on the session (`registered.sessionId`; dropped when it says otherwise) or when the worker asked for no
   * replay; from a server that does not say, once it has replayed the session's room (`replayed`), and dropped
   * when no `replayed` comes within registerTimeoutMs.
   */
  #confirmOutbox(serverSession?: string | null): void {
    const outbox = this.#outbox;
    if (!outbox) return;
    if (serverSession !== undefined) {
      // #onRegistered has left a lost session already, which dropped its outbox
      this.#flushOutbox();
      return;
    }
    if (this.#askedReplay !== outbox.sessionId) {
      this.#flushOutbox();
      return;
    }
    const waitMs = this.options.registerTimeoutMs;
    this.#clearTimer('confirm');
    this.#confirmTimer = this.options.timers.setTimeout(() => {
      this.#confirmTimer = null;
      this.#dropOutbox(
        `the server did not replay the session's room within ${waitMs} ms of registering again, so the worker is taken not to serve it any more`,
      );
      const session = this.#session;
      if (session && session.sessionId === outbox.sessionId) {
        this.#lose(session);
        if (this.#wantReady && !this.#session && this.#canSend()) this.#sendFrame({ type: 'ready' });
      }
    }, waitMs);
  }

  /**
   * The worker no longer serves `session` (it ended while the worker was away): it lets it go, with its outbox,
   * and leaves it (onDisconnect), unless its shutdown is under way, which leaves it once onShutdown is done.
   */
  #lose(session: Assignment): void {
    this.options.logger.info('the session ended while the worker was away', { sessionId: session.sessionId });
    if (session === this.#endingSession) {
      this.#dropOutbox('the session ended');
      return;
    }
    this.#setSession(null);
    void this.#leaveSession(session);
  }

  /** Sends what the outbox holds, in order, on the registered connection. */
  #flushOutbox(): void {
    const outbox = this.#outbox;
    this.#outbox = null;
    this.#clearTimer('confirm');
    if (!outbox) return;
    const texts = outbox.take();
    this.options.logger.info('sending what was kept while reconnecting', {
      sessionId: outbox.sessionId,
      frames: texts.length,
      dropped: outbox.dropped,
    });
    for (const text of texts) this.#socket?.send(text);
  }

  /** Lets what the outbox holds go, and says so (the `error` event, or the log). */
  #dropOutbox(why: string): void {
    const outbox = this.#outbox;
    this.#outbox = null;
    this.#clearTimer('confirm');
    if (!outbox || outbox.size === 0) return;
    const count = outbox.take().length;
    this.#emitError(
      new WorkerError(
        'WORKER_OUTBOX_DROPPED',
        `${count} frame${count === 1 ? '' : 's'} (send(), saveState()) kept for session "${outbox.sessionId}" while reconnecting ${count === 1 ? 'was' : 'were'} dropped: ${why}`,
      ),
    );
  }

  /** The current session: a change lets the outbox of the last one go. */
  #setSession(session: Assignment | null): void {
    this.#session = session;
    if (this.#outbox && this.#outbox.sessionId !== session?.sessionId) {
      const why = session
        ? `the worker was given session "${session.sessionId}" instead`
        : this.#state === 'closed'
          ? 'the worker closed'
          : 'the session ended';
      this.#dropOutbox(why);
    }
  }

  /**
   * send() and saveState(): the frame goes now, or, while the worker is reconnecting with its session (or waits to
   * hear it still serves it), into the outbox. A closed or closing worker, or one that never registered, throws.
   */
  #sendOrKeep(frame: Extract<WorkerFrame, { type: 'message' | 'save_state' }>, text: string): void {
    const away =
      this.#state !== 'closing' &&
      this.#state !== 'closed' &&
      this.#workerId !== null &&
      (this.#outbox !== null || !this.#canSend());
    if (!away) {
      this.#sendFrame(frame, text);
      return;
    }
    this.#outbox ??= new Outbox(frame.sessionId);
    if (frame.type === 'save_state') {
      this.#outbox.state(text);
      return;
    }
    const first = this.#outbox.dropped === 0;
    if (this.#outbox.message(text, frameBytes(text)) > 0 && first) {
      this.#emitError(
        new WorkerError(
          'WORKER_OUTBOX_DROPPED',
          `the outbox of session "${frame.sessionId}" is full (at most ${OUTBOX_MAX_MESSAGES} messages and ${OUTBOX_MAX_BYTES} bytes are kept while reconnecting): the oldest kept message was dropped, and older ones will be as more come until the worker is back`,
        ),
      );
    }
  }

  /**
   * A new session: the worker serves it from now on, and its hooks have a queue of their own, so that a hook of
   * the last session still running does not hold up its set-up.
   */
  #beginSession(assignment: Assignment): void {
    // a session it still held is over for it (a server that does not name it in `registered` seats another)
    const previous = this.#session;
    if (previous && previous !== assignment && previous !== this.#endingSession)
      void this.#leaveSession(previous);
    this.#setSession(assignment);
    this.#setup = 'running';
    this.#failureSent = false;
    this.options.logger.info('session assigned', {
      sessionId: assignment.sessionId,
      restarts: assignment.restarts,
    });
    this.#inbox = Promise.resolve();
    this.#enqueue('onConnect', () => this.#onAssign(assignment));
  }

  async #onAssign(assignment: Assignment): Promise<void> {
    // a session shut down (or replaced, or left on close) before its set-up began is not set up at all: nothing
    // is said about it, and there is nothing to leave
    const state = this.#state;
    if (
      this.#session !== assignment ||
      this.#endingSession === assignment ||
      this.#left.has(assignment) ||
      state === 'closing' ||
      state === 'closed'
    ) {
      this.options.logger.info('the session ended before its set-up began; not set up', {
        sessionId: assignment.sessionId,
      });
      return;
    }
    this.#connected.add(assignment);
    this.#notify('connect', assignment);
    try {
      await this.onConnect(assignment);
    } catch (err) {
      if (this.#session !== assignment) return this.#hookFailed('onConnect', err);
      this.#setup = 'failed';
      this.#setupError = `onConnect threw: ${errorMessage(err)}`.slice(0, 1000);
      // logged whether or not someone listens for errors: the session ends because of it
      const error = new WorkerError('WORKER_HOOK_FAILED', `onConnect threw: ${errorMessage(err)}`, {
        cause: err,
      });
      this.options.logger.error(`${error.message}; telling the server the session failed`, {
        code: error.code,
        sessionId: assignment.sessionId,
      });
      this.#notify('error', error);
      this.#reportSetup();
      return;
    }
    if (this.#session !== assignment) return;
    this.#setup = 'started';
    this.#reportSetup();
  }

  /**
   * Tells the server how onConnect went for the current session: `session_started`, or `session_failed` when it
   * failed (so the session ends now as a failed launch, 4003, not at the connecting timeout). While the socket is
   * down it waits for the next registration; nothing is said while onConnect runs or once the session's shutdown
   * has come.
   */
  #reportSetup(): void {
    const session = this.#session;
    if (!session || this.#setup === 'running' || session === this.#endingSession || !this.#canSend()) return;
    const { sessionId } = session;
    if (this.#setup === 'started') this.#sendFrame({ type: 'session_started', sessionId });
    else if (!this.#failureSent) {
      // said once: the session ends at once, and saying it again would only be refused
      this.#sendFrame({ type: 'session_failed', sessionId, message: this.#setupError });
      this.#failureSent = true;
    }
  }

  async #onShutdown(info: ShutdownInfo): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    // a worker kept for its next session ends only the session
    if (!info.reuse) this.#state = 'closing';
    this.options.logger.info('shutdown requested', { ...info });
    // onDisconnect runs for this session once onShutdown is done, even if that is after graceMs, when the
    // worker has dropped the session (or taken the next one)
    const ending = this.#session;
    this.#endingSession = ending;
    const work = (async () => {
      this.#notify('shutdown', info);
      await this.onShutdown(info);
    })()
      .catch((err) => this.#hookFailed('onShutdown', err))
      .then(() => this.#leaveSession(ending));
    await this.#withinGrace(work, info.graceMs, 'the shutdown hooks');
    if (!info.reuse) {
      this.#stopAndClose();
      return;
    }
    // close() may have come meanwhile (the compiler cannot see the hooks change the state)
    const state = this.#state as WorkerConnectionState;
    if (state === 'closing' || state === 'closed') return;
    if (this.#session === ending) this.#setSession(null);
    // the server seats the next session on it once it hears this (a worker reconnecting says ready instead)
    if (this.#canSend()) this.#sendFrame({ type: 'stopped' });
  }

  /** Calls onDisconnect for `session`, once per session, if its set-up began. */
  async #leaveSession(session: Assignment | null): Promise<void> {
    if (!session || this.#left.has(session)) return;
    this.#left.add(session);
    if (!this.#connected.has(session)) return;
    try {
      this.#notify('disconnect', session);
      await this.onDisconnect(session);
    } catch (err) {
      this.#hookFailed('onDisconnect', err);
    }
  }

  /** Sends `stopped` if it can, then closes; #finish runs on the close event (or now, without a socket). */
  #stopAndClose(): void {
    const socket = this.#socket;
    if (!socket) {
      this.#finish();
      return;
    }
    if (this.#canSend()) this.#sendFrame({ type: 'stopped' });
    this.#closeSocket(socket, 1000, 'stopped');
  }

  async #fail(error: WorkerError): Promise<void> {
    this.#state = 'closing';
    if (!this.#settleStart(error)) this.#emitError(error);
    // bounded as in close(): a hung onDisconnect must not keep `closed` from settling
    await this.#withinGrace(this.#leaveSession(this.#session), this.options.closeGraceMs, 'onDisconnect');
    this.#finish();
  }

  #finish(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#clearTimer('heartbeat');
    this.#clearTimer('register');
    this.#clearTimer('reconnect');
    this.#socket = null;
    this.#setSession(null);
    this.options.logger.info('closed');
    this.#closed.resolve();
    this.#notify('close');
  }

  // ---- helpers ----
  /** Queues a hook of the current session; it is not run if the worker has left that session by then. */
  #enqueue(hook: string, run: () => void | Promise<void>): void {
    const session = this.#session;
    this.#inbox = this.#inbox
      .then(() => {
        if (this.#state === 'closed') return;
        if (this.#session !== session) {
          if (session)
            this.options.logger.warn(`${hook} not run: session "${session.sessionId}" was left first`);
          return;
        }
        return run();
      })
      .catch((err) => this.#hookFailed(hook, err));
  }

  #hookFailed(hook: string, err: unknown): void {
    this.#emitError(
      new WorkerError('WORKER_HOOK_FAILED', `${hook} threw: ${errorMessage(err)}`, { cause: err }),
    );
  }

  /** Emits `error` when someone listens (EventEmitter would throw otherwise), else logs it. */
  #emitError(error: Error): void {
    if (this.listenerCount('error') > 0) this.#notify('error', error);
    else this.options.logger.error(error.message, { code: (error as { code?: unknown }).code });
  }

  /**
   * Emits `event` to each listener in turn. A listener that throws (or rejects) is reported as WORKER_HOOK_FAILED
   * and the others still run, as does the SDK: a failing `error` listener is only logged, never re-emitted.
   */
  #notify<K extends keyof WorkerEventMap>(event: K, ...args: WorkerEventMap[K]): void {
    const failed = (err: unknown): void => {
      if (event === 'error') {
        const reported = args[0] instanceof Error ? args[0].message : String(args[0]);
        this.options.logger.error(
          `an "error" listener threw: ${errorMessage(err)} (reporting: ${reported})`,
          {
            code: 'WORKER_HOOK_FAILED',
          },
        );
        return;
      }
      this.#emitError(
        new WorkerError('WORKER_HOOK_FAILED', `a "${event}" listener threw: ${errorMessage(err)}`, {
          cause: err,
        }),
      );
    };
    for (const listener of this.rawListeners(event) as ((...a: unknown[]) => unknown)[]) {
      try {
        const result = listener.apply(this, args);
        if (result instanceof Promise) result.catch(failed);
      } catch (err) {
        failed(err);
      }
    }
  }

  /** Settles a pending start(); returns true when there was one to settle. */
  #settleStart(error?: Error): boolean {
    if (!this.#started || this.#startSettled) return false;
    this.#startSettled = true;
    if (error) this.#started.reject(error);
    else this.#started.resolve();
    return true;
  }

  #requireSession(method: string): string {
    if (!this.#session) {
      throw new WorkerError(
        'WORKER_NO_SESSION',
        `${method}(): no session is assigned to this worker yet (wait for onConnect)`,
      );
    }
    return this.#session.sessionId;
  }

  #canSend(): boolean {
    return this.#registered && this.#socket !== null && this.#socket.readyState === SOCKET_OPEN;
  }

  /** Sends a frame (`text`: the frame already encoded) on the registered connection, or throws. */
  #sendFrame(frame: WorkerFrame, text?: string): void {
    if (!this.#canSend()) {
      throw new WorkerError(
        'WORKER_NOT_CONNECTED',
        `cannot send "${frame.type}": the worker is not connected (${this.#state})`,
      );
    }
    this.#socket?.send(text ?? JSON.stringify(frame));
  }

  #write(frame: WorkerFrame): void {
    this.#socket?.send(JSON.stringify(frame));
  }

  /**
   * Every heartbeat period: a `heartbeat` frame and, on a socket that can ping (`ws`), a ping the server answers.
   * After SILENT_HEARTBEATS_LIMIT periods without a word from the server the connection is dropped. A socket that
   * cannot ping (the WHATWG WebSocket) is not checked: an idle server sends nothing.
   */
  #scheduleHeartbeat(): void {
    this.#clearTimer('heartbeat');
    this.#heartbeatTimer = this.options.timers.setTimeout(() => {
      this.#heartbeatTimer = null;
      const socket = this.#socket;
      if (!socket || !this.#canSend()) return;
      if (socket.ping && socket.on) {
        this.#silentBeats += 1;
        if (this.#silentBeats >= SILENT_HEARTBEATS_LIMIT) {
          this.#dropSilent(socket);
          return;
        }
      }
      this.#write({ type: 'heartbeat' });
      try {
        socket.ping?.();
      } catch (err) {
        this.options.logger.debug('ping failed', { message: errorMessage(err) });
      }
      this.#scheduleHeartbeat();
    }, this.#heartbeatMs);
  }

  /** A connection the server no longer answers on: dropped at once, and handled as any other drop (reconnect). */
  #dropSilent(socket: SocketLike): void {
    const silentMs = SILENT_HEARTBEATS_LIMIT * this.#heartbeatMs;
    this.#drop(socket, `nothing from the server for ${silentMs} ms`);
  }

  /** Lets a connection go at once, handled as any other drop (reconnect): a dead one has no close handshake. */
  #drop(socket: SocketLike, reason: string): void {
    this.options.logger.warn(`${reason}; dropping the connection`);
    // the socket is let go first: its own close event, whenever it comes, is ignored
    this.#onSocketClose(1006, reason);
    try {
      if (socket.terminate) socket.terminate();
      else socket.close(1000, reason);
    } catch (err) {
      this.options.logger.debug('dropping the socket failed', { message: errorMessage(err) });
    }
  }

  #closeSocket(socket: SocketLike, code: number, reason: string): void {
    try {
      socket.close(code, reason);
    } catch (err) {
      this.options.logger.debug('closing the socket failed', { message: errorMessage(err) });
      if (socket === this.#socket) this.#onSocketClose(1006, 'close failed');
    }
  }

  #clearTimer(which: 'heartbeat' | 'register' | 'reconnect' | 'confirm'): void {
    const { timers } = this.options;
    if (which === 'heartbeat' && this.#heartbeatTimer !== null) timers.clearTimeout(this.#heartbeatTimer);
    if (which === 'register' && this.#registerTimer !== null) timers.clearTimeout(this.#registerTimer);
    if (which === 'reconnect' && this.#reconnectTimer !== null) timers.clearTimeout(this.#reconnectTimer);
    if (which === 'confirm' && this.#confirmTimer !== null) timers.clearTimeout(this.#confirmTimer);
    if (which === 'heartbeat') this.#heartbeatTimer = null;
    if (which === 'register') this.#registerTimer = null;
    if (which === 'reconnect') this.#reconnectTimer = null;
    if (which === 'confirm') this.#confirmTimer = null;
  }
}

const SEND_ADVICE = 'The server drops larger room messages: send less, or split it into several messages.';
const SAVE_ADVICE =
  'A larger frame would make the server close the connection (1009): save less, or keep large data elsewhere and save where it is.';

/** A frame as JSON within `maxBytes`, or WORKER_BAD_ARGUMENT naming the call (and `advice`) before anything is sent. */
function encodeFrame(
  frame: WorkerFrame,
  call: string,
  what: string,
  maxBytes: number,
  advice: string,
): string {
  let text: string;
  try {
    text = JSON.stringify(frame);
  } catch (err) {
    const message = `${call}: ${what} cannot be sent as JSON: ${errorMessage(err)}`;
    throw new WorkerError('WORKER_BAD_ARGUMENT', message, { cause: err });
  }
  const bytes = frameBytes(text);
  if (bytes > maxBytes) {
    const message = `${call}: ${what} makes a frame of ${bytes} bytes, over the limit of ${maxBytes}; nothing was sent.`;
    throw new WorkerError('WORKER_BAD_ARGUMENT', `${message} ${advice}`);
  }
  return text;
}
