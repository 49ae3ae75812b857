// UsherSession: one viewer's session. Creates or joins it, follows its socket (state, queue, AFK, room
// messages), plays its stream, and reconnects after a network drop (1006) or a lost session (4007), SPEC §4.
// It also sends room messages with acknowledgements, invites more participants, and reads the transcript.
import {
  CloseCode,
  type Envelope,
  type HeardUpTo,
  isCloseCode,
  MAX_CLIENT_FRAME_BYTES,
  MAX_REPLAYED_MESSAGES,
  type MessagePage,
  type Participant,
  RoomCursor,
  type SessionEvent,
  type SessionState,
} from '@usher/protocol';
import { ACK_TIMEOUT_MS, AckTracker, type MessageAckInfo } from './acks.ts';
import { AfkMonitor } from './afk.ts';
import { watchInput } from './dom-input.ts';
import { Emitter, type Listener } from './emitter.ts';
import { type SessionErrorInfo, UsherError } from './errors.ts';
import type { EndInfo, QueueInfo, SessionEvents } from './events.ts';
import {
  type HistoryOptions,
  type HistorySource,
  historyPages,
  readHistory,
  readTranscript,
} from './history.ts';
import {
  type CreatedSession,
  createSession,
  endSession,
  type Invite,
  type JoinRole,
  joinSession,
  withToken,
} from './http.ts';
import { tokenIdentity, tokenRole } from './identity.ts';
import {
  type AcceptInviteOptions,
  type JoinOptions,
  parseSocketUrl,
  type ResolvedOptions,
  resolveOptions,
  resolveServer,
  type StartOptions,
} from './options.ts';
import { Outbox } from './outbox.ts';
import { SOCKET_OPEN, type SocketLike } from './platform.ts';
import { closeOutcome, closePolicy, reconnectDelayMs } from './reconnect.ts';
import { StreamConnection } from './stream.ts';

/** How often the SDK pings the server to keep the socket (and proxies on the way) alive. */
export const PING_INTERVAL_MS = 20_000;

/**
 * How long a socket may take to open. One that has not opened by then (a host that drops the packets, a network
 * that vanished) is given up and counts as a failed attempt (1006), rather than waiting for the browser's own
 * connection timeout, which can take minutes.
 */
export const CONNECT_TIMEOUT_MS = 10_000;

/** What a fresh session (after 4007) is created from: only known to sessions made by start(). */
interface FreshRequest {
  projectId: string;
  region: string | undefined;
  apiKey: string | undefined;
}

export class UsherSession {
  /** Asks the server for a session of a (public) project, then connects to it. */
  static async start(options: StartOptions): Promise<UsherSession> {
    const o = resolveOptions(options);
    const server = resolveServer(options.server);
    if (typeof options.projectId !== 'string' || options.projectId === '')
      throw new UsherError('BAD_OPTIONS', '`projectId` is required: the id of the project to open');
    const fresh = { projectId: options.projectId, region: options.region, apiKey: options.apiKey };
    const created = await createSession(o.fetch, server, fresh, fresh.apiKey);
    const session = new UsherSession(o, server, created, fresh);
    session.#open();
    return session;
  }

  /** Connects to an existing session by its socket URL (…/sessions/{id}/ws?token=…). */
  static async join(options: JoinOptions): Promise<UsherSession> {
    const { o, server, id, token } = UsherSession.#target(options);
    const created = { id, state: 'requesting' as const, token, url: withToken(options.url, token) };
    const session = new UsherSession(o, server, created, null);
    session.#open();
    return session;
  }

  /**
   * Joins as a participant of one's own: the token of the URL (an invite, see invite()) is exchanged for a new
   * token and identity (POST /sessions/{id}/join), then the session's socket is opened with it. Everyone who
   * opens the same invite link becomes a different participant.
   */
  static async acceptInvite(options: AcceptInviteOptions): Promise<UsherSession> {
    const { o, server, id, token } = UsherSession.#target(options);
    const mine = await joinSession(o.fetch, server, id, token, {
      identity: options.identity,
      role: options.role,
    });
    const created = { id, state: 'requesting' as const, token: mine.token, url: mine.url };
    const session = new UsherSession(o, server, created, null);
    session.#identity = mine.identity;
    session.#open();
    return session;
  }

  static #target(options: JoinOptions): {
    o: ResolvedOptions;
    server: string;
    id: string;
    token: string;
  } {
    const o = resolveOptions(options);
    const parsed = parseSocketUrl(options.url);
    const token = options.token ?? parsed.token;
    if (!token)
      throw new UsherError(
        'BAD_OPTIONS',
        '`url` has no ?token=: pass the session token as the `token` option',
      );
    const server = options.server === undefined ? parsed.server : resolveServer(options.server);
    return { o, server, id: parsed.id, token };
  }

  readonly #o: ResolvedOptions;
  readonly #events = new Emitter<SessionEvents>();
  readonly #server: string;
  readonly #fresh: FreshRequest | null;
  readonly #stream: StreamConnection;
  readonly #afk: AfkMonitor;
  readonly #acks: AckTracker;
  readonly #stopWatchingInput: (() => void) | null;
  #id: string;
  #token: string;
  #identity: string | null;
  #url: string;
  #state: SessionState;
  #queue: QueueInfo | null = null;
  #ws: SocketLike | null = null;
  /** per socket: the first status_changed is the snapshot; `config` first means a stream session */
  #snapshotSeen = false;
  #isStream = false;
  /** until the socket opens, its connect timeout (CONNECT_TIMEOUT_MS); then the next ping */
  #socketTimer: unknown = null;
  /** pings sent since the socket last brought anything (the server answers every ping) */
  #unanswered = 0;
  #reconnectTimer: unknown = null;
  /** attempts since the last successful connection */
  #attempts = 0;
  /** set while reconnecting; `fresh` once a new session replaced the lost one */
  #reconnecting: { fresh: boolean } | null = null;
  /** how the server said the session ended (status_changed `ended`) */
  #endInfo: EndInfo | null = null;
  #ended = false;
  /** a fresh session is being asked for: one that nobody will use is ended once it exists (#startFresh) */
  #creatingFresh = false;
  /** who is in the room, by identity, as this participant was told: a reopened socket lists them again */
  readonly #present = new Map<string, Participant>();
  /** room messages sent while reconnecting to the same session, sent once its socket is back */
  readonly #outbox = new Outbox();
  /**
   * How far this participant has heard the room: a reopened socket asks for what came after it (`?after=`), which
   * the server replays first; a message that comes twice is delivered once.
   */
  readonly #heard = new RoomCursor();

  private constructor(
    o: ResolvedOptions,
    server: string,
    created: CreatedSession,
    fresh: FreshRequest | null,
  ) {
    this.#o = o;
    this.#server = server;
    this.#fresh = fresh;
    this.#id = created.id;
    this.#token = created.token;
    this.#identity = tokenIdentity(created.token);
    this.#url = created.url;
    this.#state = created.state;
    this.#acks = new AckTracker(o.timers);
    this.#stream = new StreamConnection(o.RTCPeerConnection, o.video, {
      send: (message) => this.#send(message),
      onStream: (stream) => this.#events.emit('stream', stream),
      onDataChannelMessage: (data) => this.#events.emit('dataChannelMessage', data),
      onError: (error) => this.#events.emit('error', error),
    });
    this.#afk = new AfkMonitor(o.afk, o.timers, o.now, this.#events, {
      reportInput: () => this.#send({ type: 'input' }),
      onTimeout: () =>
        this.#leave({ code: 4004, reason: 'afk_timeout', outcome: 'disconnected' }, 'viewer:afk'),
    });
    this.#stopWatchingInput =
      o.video && o.afk?.trackDom ? watchInput(o.video.ownerDocument, () => this.#afk.input()) : null;
  }

  /** The session's id; a new one after a fresh start (close code 4007). */
  get id(): string {
    return this.#id;
  }

  get state(): SessionState {
    return this.#state;
  }

  /** Who this participant is in the room (the `from.identity` of its messages), when its token says. */
  get identity(): string | null {
    return this.#identity;
  }

  /** The place in line while queued, else null. */
  get queue(): QueueInfo | null {
    return this.#queue;
  }

  /** The worker's media, once it plays. */
  get stream(): MediaStream | null {
    return this.#stream.stream;
  }

  /** The data channel the worker opened, for input protocols of your own. */
  get dataChannel(): RTCDataChannel | null {
    return this.#stream.dataChannel;
  }

  /** Calls `listener` on every `event`; returns the function that stops it. */
  on<K extends keyof SessionEvents>(event: K, listener: Listener<SessionEvents[K]>): () => void {
    return this.#events.on(event, listener);
  }

  off<K extends keyof SessionEvents>(event: K, listener: Listener<SessionEvents[K]>): void {
    this.#events.off(event, listener);
  }

  /** Sends input to the worker on the data channel (false if it is not open yet); counts as activity. */
  sendInput(data: string | ArrayBuffer): boolean {
    const sent = this.#stream.send(data);
    this.#afk.input();
    return sent;
  }

  /** Counts as viewer activity for AFK, for input the SDK does not see (e.g. with `afk.trackDom: false`). */
  markActive(): void {
    this.#afk.input();
  }

  /**
   * Sends a room message to every participant. While the SDK reconnects to the same session the message is held
   * and sent once the socket is back (up to OUTBOX_LIMIT messages; dropped if the session ends or is replaced).
   * True when sent or held; false when the socket is not open and the message is not held (still opening, a
   * fresh session being started, ended, or the outbox full). Throws UsherError TOO_LARGE, sending nothing, when
   * the message would make a frame over the server's limit (64 KiB, which would close the socket).
   */
  sendMessage(type: string, data?: unknown): boolean {
    const frame = sizedFrame({ type: 'message', messageType: type, data });
    if (this.#resuming()) return this.#outbox.hold(frame);
    return this.#send(frame);
  }

  /**
   * Sends a room message and resolves once the server has relayed it (and stored it, for recorded types) with
   * its envelope's `id` and `at`. While the SDK reconnects to the same session the message is held and sent once
   * the socket is back; `timeoutMs` counts from when it is sent. Rejects with UsherError: NOT_CONNECTED (nothing
   * sent), TOO_LARGE (nothing sent: over the server's frame limit), OUTBOX_FULL (nothing sent: too many held
   * already), NOT_SENT (held, then the session ended or a fresh one replaced it), the server's refusal
   * (RATE_LIMITED, …), or NO_ACK (no answer within `timeoutMs`, or the connection closed first).
   */
  sendMessageAcked(
    type: string,
    data?: unknown,
    options: { timeoutMs?: number } = {},
  ): Promise<MessageAckInfo> {
    const ws = this.#ws;
    const resuming = this.#resuming();
    if (!resuming && (!ws || ws.readyState !== SOCKET_OPEN))
      return Promise.reject(
        new UsherError('NOT_CONNECTED', `the session socket is not open (state ${this.#state}): not sent`),
      );
    let frame: string;
    try {
      frame = sizedFrame({ type: 'message', messageType: type, data }, REF_BYTES);
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = options.timeoutMs ?? ACK_TIMEOUT_MS;
    if (resuming) return this.#outbox.holdAcked(frame, timeoutMs);
    return this.#sendAcked(ws!, frame, timeoutMs);
  }

  #sendAcked(ws: SocketLike, frame: string, timeoutMs: number): Promise<MessageAckInfo> {
    const { ref, acked } = this.#acks.track(timeoutMs);
    ws.send(`${frame.slice(0, -1)},"ref":${JSON.stringify(ref)}}`);
    return acked;
  }

  /**
   * Reconnecting to the same session (1006, 1011, 1012): room messages are held until its socket is back, which is
   * when the server's snapshot arrives on it (a frame sent before would pass the ones held).
   */
  #resuming(): boolean {
    return this.#reconnecting !== null && !this.#reconnecting.fresh && !this.#ended;
  }

  /** The socket is back: what was held goes first, in order. */
  #flushOutbox(ws: SocketLike): void {
    for (const { frame, acked } of this.#outbox.take()) {
      if (!acked) ws.send(frame);
      else this.#sendAcked(ws, frame, acked.timeoutMs).then(acked.resolve, acked.reject);
    }
  }

  /**
   * A ticket for one more participant of this session (POST /sessions/{id}/join): a token and socket URL of
   * their own. Pass the URL to someone else, who opens it with UsherSession.acceptInvite() (a new identity
   * each time) or UsherSession.join() (this very identity).
   */
  invite(options: { identity?: string; role?: JoinRole } = {}): Promise<Invite> {
    return joinSession(this.#o.fetch, this.#server, this.#id, this.#token, options);
  }

  /** One page of the session's recorded messages (oldest first); also after it ended. */
  history(options: HistoryOptions = {}): Promise<MessagePage> {
    return readHistory(this.#historySource(), options);
  }

  /** Every page of recorded messages, from the newest page back to the first: `for await (const page of …)`. */
  historyPages(options: HistoryOptions = {}): AsyncGenerator<MessagePage, void, undefined> {
    return historyPages(this.#historySource(), options);
  }

  /** The whole transcript, oldest first (pages of `pageSize`, default 100, read back to the start). */
  transcript(options: { includeDebug?: boolean; pageSize?: number } = {}): Promise<Envelope[]> {
    return readTranscript(this.#historySource(), options);
  }

  #historySource(): HistorySource {
    return { fetch: this.#o.fetch, server: this.#server, sessionId: this.#id, token: this.#token };
  }

  /**
   * Ends the session for everyone (the worker is released) and closes the socket. The session is over even
   * if the request fails: closing the socket with 1000 ends it too; the promise then rejects with the error.
   */
  async end(): Promise<void> {
    if (this.#ended) return;
    try {
      await endSession(this.#o.fetch, this.#server, this.#id, this.#token);
    } finally {
      this.#leave(null, 'viewer:end', true);
    }
  }

  /**
   * Closes the socket with 1000 and does not reconnect; the server ends the session. When no open socket can
   * carry that close (it is still opening, or being reopened), the server is told over HTTP instead.
   */
  leave(): void {
    if (this.#ended) return;
    this.#leave(null, 'viewer:left');
  }

  /**
   * Stops reconnecting; the session is then over for this viewer (`ended`, reason `reconnect_canceled`), and
   * the server is told to end it (over HTTP: there is no socket) rather than hold its seat for the reconnect
   * window.
   */
  cancelReconnect(): void {
    if (!this.#reconnecting || this.#ended) return;
    this.#finalize({ code: 4007, reason: 'reconnect_canceled', outcome: 'failed' }, 'reconnect:canceled');
  }

  #open(): void {
    // a listener may have ended the session while an attempt was on its way here
    if (this.#ended) return;
    const ws = new this.#o.WebSocket(withCursor(this.#url, this.#heard.heard));
    this.#ws = ws;
    this.#snapshotSeen = false;
    this.#isStream = false;
    this.#socketTimer = this.#o.timers.setTimeout(() => {
      if (this.#ws !== ws) return;
      this.#abandon(ws, `the connection did not open within ${CONNECT_TIMEOUT_MS} ms`);
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      this.#o.timers.clearTimeout(this.#socketTimer);
      this.#unanswered = 0;
      this.#schedulePing();
    };
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return;
      this.#unanswered = 0;
      this.#onFrame(ev.data);
    };
    // a socket error is always followed by this close event, which decides what to do
    ws.onclose = (ev) => {
      if (this.#ws === ws) this.#onClose(ev.code, ev.reason);
    };
  }

  #send(message: Record<string, unknown> | string): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== SOCKET_OPEN) return false;
    ws.send(typeof message === 'string' ? message : JSON.stringify(message));
    return true;
  }

  #schedulePing(): void {
    this.#socketTimer = this.#o.timers.setTimeout(() => {
      const ws = this.#ws;
      // counted in pings, not in time: a hidden tab's timers may run a minute late
      if (ws && this.#unanswered >= 2) {
        // two pings went unanswered: the connection is gone without having closed (a server or a network
        // that vanished), and is treated as a drop
        this.#abandon(ws, 'the server stopped answering');
        return;
      }
      if (this.#send({ type: 'ping', time: this.#o.now() })) this.#unanswered++;
      this.#schedulePing();
    }, PING_INTERVAL_MS);
  }

  /** Gives up a socket that never opened or stopped answering: a drop (1006), whatever it does later. */
  #abandon(ws: SocketLike, reason: string): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.close();
    this.#onClose(1006, reason);
  }

  #onFrame(data: unknown): void {
    let message: unknown;
    try {
      message = typeof data === 'string' ? JSON.parse(data) : null;
    } catch {
      return;
    }
    if (typeof message !== 'object' || message === null) return;
    const m = message as { type?: unknown; [key: string]: unknown };
    if (typeof m.type !== 'string') return;
    const e = message as SessionEvent;
    switch (e.type) {
      case 'session.status_changed':
        this.#onStatus(e);
        return;
      case 'session.queue_position':
        this.#queue = {
          position: e.position,
          queueLength: e.queueLength,
          estimatedWaitMs: e.estimatedWaitMs,
        };
        this.#events.emit('queue', this.#queue);
        return;
      case 'session.afk_warning':
        this.#afk.serverWarning(e.remainingMs, e.disconnectAt);
        return;
      case 'session.participant_joined':
        // a reopened socket lists everyone in the room again: only arrivals are news
        if (this.#present.has(e.participant.identity)) return;
        this.#present.set(e.participant.identity, e.participant);
        this.#events.emit('participantJoined', e.participant);
        return;
      case 'session.participant_left':
        // a replay after a reconnect may tell a departure already heard
        if (!this.#present.delete(e.participant.identity)) return;
        this.#events.emit('participantLeft', e.participant);
        return;
      case 'session.message':
        if (!this.#heard.message(e.message.id, e.message.at)) return;
        this.#events.emit('message', e.message);
        return;
      case 'session.error':
        this.#events.emit('error', { code: e.code, message: e.message, recoverable: e.recoverable });
        return;
    }
    if (m.type === 'config') {
      this.#isStream = true;
      this.#stream.configure(m.peerConnectionOptions);
      // at once, not after the snapshot: the server answers as soon as the session is seated, which saves
      // a round trip on the way to the first frame
      this.#stream.requestStreamer();
    } else if (m.type === 'replayed') {
      // what this socket missed has been replayed up to here; the rest comes live
      if (typeof m.upto === 'string') this.#heard.mark(m.upto);
      if (m.complete === false)
        this.#events.emit('error', {
          code: 'REPLAY_INCOMPLETE',
          message: `more than ${MAX_REPLAYED_MESSAGES} messages came while the connection was down: the newest ${MAX_REPLAYED_MESSAGES} were replayed; read the older ones with history({ before }) from the first of them`,
          recoverable: true,
        });
    } else if (m.type === 'message_ack') {
      this.#acks.acked(m);
    } else if (m.type === 'token') {
      // the server renewed this participant's token (the old one is past half its life): reconnects and API
      // calls use the new one
      if (typeof m.token === 'string' && m.token !== '') {
        this.#token = m.token;
        this.#url = withToken(this.#url, m.token, true);
      }
    } else if (m.type === 'error') {
      // the server refused a frame (the session goes on) or, before the snapshot, the connection (a close
      // follows, which a failure on the server's side, INTERNAL, is retried after). A refused message sent with
      // sendMessageAcked() rejects its promise instead
      const info = errorInfo(m, this.#snapshotSeen || m.code === 'INTERNAL');
      if (typeof m.ref === 'string' && this.#acks.refused(m.ref, info.code, info.message)) return;
      this.#events.emit('error', info);
    } else if (this.#isStream) {
      this.#stream.handle(m as { type: string });
    }
    // anything else (pong, message types of newer servers) is ignored
  }

  #onStatus(e: Extract<SessionEvent, { type: 'session.status_changed' }>): void {
    const snapshot = !this.#snapshotSeen;
    this.#snapshotSeen = true;
    if (e.status === 'ended') {
      const code = e.endCode ?? 1000;
      this.#endInfo = { code, reason: e.endReason ?? 'completed', outcome: e.outcome ?? closeOutcome(code) };
      // a lost session (4007) is replaced when the socket closes: it is not over for the viewer
      if (closePolicy(code) === 'fresh' && this.#canStartFresh()) return;
    }
    this.#setState(e.status, e.cause);
    // a `state` listener may have left
    if (!snapshot || e.status === 'ended' || this.#ended || !this.#reconnecting) return;
    const { fresh } = this.#reconnecting;
    const attempts = this.#attempts;
    this.#reconnecting = null;
    this.#attempts = 0;
    if (this.#ws) this.#flushOutbox(this.#ws);
    this.#events.emit('reconnected', { attempts, sessionId: this.#id, fresh });
  }

  #setState(state: SessionState, cause: string): void {
    if (state === this.#state) return;
    const previous = this.#state;
    this.#state = state;
    if (state !== 'queued') this.#queue = null;
    this.#afk.stateChanged(state, previous);
    this.#events.emit('state', { state, previous, cause });
  }

  #onClose(code: number, reason: string): void {
    this.#ws = null;
    this.#o.timers.clearTimeout(this.#socketTimer);
    this.#acks.failAll(`the connection closed (${code}) first`);
    this.#stream.close();
    if (this.#ended) return;
    const policy = closePolicy(code);
    if (policy === 'fresh' && this.#canStartFresh()) this.#scheduleReconnect(code, true);
    else if (policy === 'resume' && !this.#endInfo && this.#o.reconnect) this.#scheduleReconnect(code, false);
    else
      this.#finalize(
        this.#endInfo ?? { code, reason: reason || 'connection_lost', outcome: closeOutcome(code) },
        `close:${code}`,
        // a session's end code: the server ended it (1006 and codes such as 1009 or 1011 do not say so)
        isCloseCode(code) && code !== CloseCode.Abnormal,
      );
  }

  #canStartFresh(): boolean {
    return this.#fresh !== null && this.#o.reconnect !== null;
  }

  #scheduleReconnect(code: number, fresh: boolean): void {
    const policy = this.#o.reconnect!;
    if (this.#attempts >= policy.maxAttempts) {
      this.#events.emit('reconnectFailed', { attempts: this.#attempts, code });
      this.#finalize({ code: 4007, reason: 'reconnect_failed', outcome: 'failed' }, 'reconnect:failed');
      return;
    }
    const delayMs = reconnectDelayMs(this.#attempts, policy, this.#o.random);
    this.#attempts++;
    this.#reconnecting = { fresh: fresh || (this.#reconnecting?.fresh ?? false) };
    if (this.#reconnecting.fresh)
      this.#outbox.drop(`the session was lost (${code}); a fresh one replaces it, whose room never sees it`);
    // armed before the event: a listener that cancels (cancelReconnect(), leave()) clears it
    this.#reconnectTimer = this.#o.timers.setTimeout(() => {
      this.#reconnectTimer = null;
      if (fresh) void this.#startFresh();
      else this.#open();
    }, delayMs);
    this.#events.emit('reconnecting', { attempt: this.#attempts, delayMs, code });
  }

  /** Replaces a lost session (4007) with a new one of the same project. */
  async #startFresh(): Promise<void> {
    if (this.#ended) return;
    const request = this.#fresh!;
    let created: CreatedSession;
    this.#creatingFresh = true;
    try {
      created = await createSession(this.#o.fetch, this.#server, request, request.apiKey);
    } catch (err) {
      if (this.#ended) return;
      const error = err as UsherError;
      if (error.retryable) {
        this.#scheduleReconnect(4007, true);
        return;
      }
      this.#events.emit('error', { code: error.code, message: error.message, recoverable: false });
      this.#finalize({ code: 4007, reason: 'reconnect_failed', outcome: 'failed' }, 'reconnect:failed');
      return;
    } finally {
      this.#creatingFresh = false;
    }
    if (this.#ended) {
      // the viewer left while the new session was being created: nobody will use it
      void endSession(this.#o.fetch, this.#server, created.id, created.token).catch(() => {});
      return;
    }
    this.#id = created.id;
    this.#token = created.token;
    this.#identity = tokenIdentity(created.token);
    this.#url = created.url;
    this.#endInfo = null;
    this.#heard.reset();
    // the lost session's room is gone, with everyone in it: an app's list of participants starts over
    const gone = [...this.#present.values()];
    this.#present.clear();
    for (const participant of gone) {
      this.#events.emit('participantLeft', participant);
      // a listener that leaves ends the new session over HTTP (#finalize): no socket is opened for it
      if (this.#ended) return;
    }
    this.#setState(created.state, 'reconnect:fresh');
    this.#open();
  }

  /**
   * Ends here (end(), leave(), or the SDK's own AFK timeout): closes with 1000 (4004 for the AFK timeout), which
   * ends it on the server too.
   */
  #leave(info: EndInfo | null, cause: string, serverTold = false): void {
    const pending = this.#state === 'requesting' || this.#state === 'queued';
    this.#finalize(
      info ??
        this.#endInfo ?? { code: 1000, reason: pending ? 'canceled' : 'completed', outcome: 'disconnected' },
      cause,
      serverTold,
    );
  }

  /**
   * The session is over for this viewer. Unless the server said it ended, or is told here by the socket's 1000
   * (only an open socket carries one), it is told over HTTP: else it would hold the seat for the reconnect window
   * and record the session as failed.
   */
  #finalize(info: EndInfo, cause: string, serverTold = false): void {
    if (this.#ended) return;
    // only the viewer's leaving ends a session: invited users and observers just leave its room
    const role = tokenRole(this.#token);
    const endsIt = role !== 'user' && role !== 'observer';
    if (
      endsIt &&
      !serverTold &&
      !this.#endInfo &&
      this.#ws?.readyState !== SOCKET_OPEN &&
      !this.#creatingFresh
    )
      endSession(this.#o.fetch, this.#server, this.#id, this.#token).catch(() => {});
    this.#ended = true;
    this.#o.timers.clearTimeout(this.#reconnectTimer);
    this.#o.timers.clearTimeout(this.#socketTimer);
    this.#afk.stop();
    this.#acks.failAll('the session ended first');
    this.#outbox.drop(`the session ended (${info.code}, ${info.reason}) first`);
    this.#stopWatchingInput?.();
    this.#stream.detach();
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      // the SDK's own AFK timeout says so (4004), so that the server records the session as ended by AFK
      ws.close(info.reason === 'afk_timeout' ? 4004 : 1000);
    }
    this.#reconnecting = null;
    this.#setState('ended', cause);
    this.#events.emit('ended', info);
    this.#events.clear();
  }
}

/**
 * The socket URL with the room cursor: `after=now` the first time (the server says where its replay would start),
 * then the newest message heard, so that the server replays what came while the socket was down.
 */
function withCursor(url: string, heard: HeardUpTo | null): string {
  const u = new URL(url);
  u.searchParams.set('after', heard?.at ?? 'now');
  if (heard?.id !== undefined) u.searchParams.set('after_id', heard.id);
  else u.searchParams.delete('after_id');
  return u.toString();
}

/** Room for the `ref` the SDK adds to an acknowledged message (`,"ref":"m…"`, its count in up to 16 digits). */
const REF_BYTES = 32;

/**
 * A frame as JSON, refused with TOO_LARGE when it (with `reserve` bytes more) would pass the server's limit: the
 * server would close the socket with 1009, which ends the session.
 */
function sizedFrame(message: Record<string, unknown>, reserve = 0): string {
  const frame = JSON.stringify(message);
  // UTF-8 takes at most 3 bytes for each UTF-16 unit: count exactly only when that bound is over the limit
  if (frame.length * 3 + reserve <= MAX_CLIENT_FRAME_BYTES) return frame;
  const bytes = new TextEncoder().encode(frame).byteLength + reserve;
  if (bytes <= MAX_CLIENT_FRAME_BYTES) return frame;
  throw new UsherError(
    'TOO_LARGE',
    `this message makes a frame of ${bytes} bytes; the server takes frames of up to ${MAX_CLIENT_FRAME_BYTES} bytes (send less, or in parts): not sent`,
  );
}

function errorInfo(m: Record<string, unknown>, recoverable: boolean): SessionErrorInfo {
  return {
    code: typeof m.code === 'string' ? m.code : 'INTERNAL',
    message: typeof m.message === 'string' ? m.message : 'the server reported an error',
    recoverable,
  };
}
