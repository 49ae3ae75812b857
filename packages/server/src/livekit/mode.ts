// LiveKit mode wired together for the server: a project with `rooms: livekit` gets, per session, a LiveKit room
// (created when the session is seated, deleted when it ends), the hidden recorder in it, LiveKit tokens for its
// participants and its agent, and LiveKit's webhooks turned into participant events (each event once).
import type { Participant } from '@usher/protocol';
import type { LiveKitSettings } from './config.ts';
import { LiveKitRecorder, type RecorderRoom, type RoomMessage } from './recorder.ts';
import { type LiveKitRole, RECORDER_IDENTITY } from './roles.ts';
import { LiveKitRooms } from './rooms.ts';
import { LiveKitTokens } from './tokens.ts';
import { type LiveKitRoomEvent, LiveKitWebhooks } from './webhooks.ts';

/** What LiveKit mode tells the rest of the server. */
export interface LiveKitModeEvents {
  /** a data packet the recorder read: relay it to Usher's sockets and record it (the agent has it already) */
  message(sessionId: string, message: RoomMessage): void | Promise<void>;
  participantJoined(sessionId: string, participant: Participant): void;
  participantLeft(sessionId: string, participant: Participant): void;
  /** LiveKit closed the room by itself (its timeouts, or someone deleted it) */
  roomFinished(sessionId: string): void | Promise<void>;
  log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

export interface LiveKitModeOptions {
  settings: LiveKitSettings;
  /** how long participant and agent tokens last */
  tokenTtlMs: number;
  now?: () => number;
  /** tests: a stand-in for @livekit/rtc-node's Room */
  createRecorderRoom?: () => RecorderRoom | Promise<RecorderRoom>;
}

/** Webhook event ids remembered, to recognise LiveKit's repeats. */
const SEEN_EVENTS = 10_000;

export class LiveKitMode {
  readonly settings: LiveKitSettings;
  readonly rooms: LiveKitRooms;
  readonly webhooks: LiveKitWebhooks;
  readonly recorder: LiveKitRecorder;
  readonly #tokens: LiveKitTokens;
  readonly #ttlMs: number;
  #events: LiveKitModeEvents | null = null;
  /** per session, its room's creation (and the recorder's arrival) */
  readonly #opened = new Map<string, Promise<void>>();
  readonly #seen = new Set<string>();

  constructor(options: LiveKitModeOptions) {
    this.settings = options.settings;
    this.#ttlMs = options.tokenTtlMs;
    this.rooms = new LiveKitRooms(options.settings);
    this.webhooks = new LiveKitWebhooks(options.settings);
    this.#tokens = new LiveKitTokens(options.settings);
    this.recorder = new LiveKitRecorder({
      settings: options.settings,
      ...(options.now ? { now: options.now } : {}),
      ...(options.createRecorderRoom ? { createRoom: options.createRecorderRoom } : {}),
      onMessage: (sessionId, m) => this.#on().message(sessionId, m),
      onSkipped: (sessionId, reason) =>
        this.#on().log.warn({ sessionId, reason }, 'LiveKit data packet not recorded'),
      onError: (sessionId, err) => this.#on().log.error({ err, sessionId }, 'LiveKit recorder failed'),
      onDisconnected: (sessionId, reason) =>
        this.#on().log.warn({ sessionId, reason: String(reason) }, 'the recorder left the LiveKit room'),
    });
  }

  /** Connects LiveKit's events to the server (once it has its engine). */
  attach(events: LiveKitModeEvents): void {
    this.#events = events;
  }

  #on(): LiveKitModeEvents {
    if (!this.#events) throw new Error('LiveKitMode: attach() was not called');
    return this.#events;
  }

  /**
   * Creates the session's room and puts the recorder in it; once per session (later calls wait for the first).
   * A failure is not remembered: the next call tries again.
   */
  open(sessionId: string): Promise<void> {
    let opened = this.#opened.get(sessionId);
    if (!opened) {
      opened = (async () => {
        await this.rooms.createRoom(sessionId, { metadata: { usherSession: sessionId } });
        await this.recorder.join(sessionId);
      })();
      this.#opened.set(sessionId, opened);
      opened.catch(() => this.#opened.delete(sessionId));
    }
    return opened;
  }

  /** The session ended: the recorder leaves and the room is deleted (everyone still in it is disconnected). */
  async close(sessionId: string): Promise<void> {
    await this.#opened.get(sessionId)?.catch(() => {});
    this.#opened.delete(sessionId);
    await this.recorder.leave(sessionId);
    await this.rooms.deleteRoom(sessionId);
  }

  /**
   * `{url, token}` for a participant or the agent of the session's room. The agent's opens the room (and puts
   * the recorder in it) on the server that sends the assignment; a participant's is only a token, whichever
   * server answers (LiveKit makes the room if the participant is there first).
   */
  async access(
    sessionId: string,
    identity: string,
    kind: LiveKitRole,
  ): Promise<{ url: string; token: string }> {
    if (kind === 'agent') await this.open(sessionId);
    const token = await this.#tokens.participantToken({ sessionId, identity, kind, ttlMs: this.#ttlMs });
    return { url: this.settings.url, token };
  }

  /** A verified webhook; a repeat of one already handled does nothing. */
  async onWebhook(e: LiveKitRoomEvent): Promise<void> {
    if (this.#seen.has(e.id)) return;
    const on = this.#on();
    // the recorder is Usher itself, not a participant
    const recorder = e.type !== 'room_finished' && e.participant.identity === RECORDER_IDENTITY;
    if (recorder) {
      // nothing to tell
    } else if (e.type === 'participant_joined') on.participantJoined(e.sessionId, e.participant);
    else if (e.type === 'participant_left') on.participantLeft(e.sessionId, e.participant);
    else await on.roomFinished(e.sessionId);
    this.#seen.add(e.id);
    if (this.#seen.size > SEEN_EVENTS) this.#seen.delete(this.#seen.values().next().value!);
  }

  async stop(): Promise<void> {
    await this.recorder.close();
  }
}
