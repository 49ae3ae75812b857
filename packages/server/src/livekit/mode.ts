// LiveKit mode wired together for the server: a project with `rooms: livekit` gets, per session, a LiveKit room
// (created when the session is seated, deleted when it ends), the hidden recorder in it, LiveKit tokens for its
// participants and its agent, and LiveKit's webhooks turned into participant events (each event once).
//
// The recorder stays in the room while the session lives: a recorder that lost its connection joins again, a
// server that stops hands its rooms to the others, and a server that starts, or adopts a dead server's work,
// puts one back in every live room that has none. LiveKit is what says whether a room has one: the recorder's
// identity is the same on every server, and LiveKit lets only one participant hold an identity, so when two
// servers put one in at once, one of them stays.
import { LIVE_STATES, type Participant, type SessionState } from '@usher/protocol';
import type { LiveKitSettings } from './config.ts';
import { LiveKitRecorder, type RecorderRoom, type RoomMessage } from './recorder.ts';
import { type LiveKitRole, RECORDER_IDENTITY } from './roles.ts';
import { type CreateRoomOptions, LiveKitRooms } from './rooms.ts';
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
  /** the session's state; undefined for a room that is not a session's (LiveKit may serve other apps) */
  sessionState(sessionId: string): Promise<SessionState | undefined>;
  /**
   * How the session's room is made: `departureTimeoutS`, how long LiveKit keeps it after the last participant
   * left, is the project's reconnect window, so a user whose connection drops for a while finds it still there.
   */
  roomOptions?(sessionId: string): Promise<CreateRoomOptions>;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
}

export interface LiveKitModeOptions {
  settings: LiveKitSettings;
  /** how long participant and agent tokens last */
  tokenTtlMs: number;
  now?: () => number;
  /** tests: a stand-in for @livekit/rtc-node's Room */
  createRecorderRoom?: () => RecorderRoom | Promise<RecorderRoom>;
  /**
   * How long the recorder waits before each attempt to join a room again after it lost it; the last delay
   * repeats. REJOIN_DELAYS_MS by default.
   */
  rejoinDelaysMs?: readonly number[];
  /** how long after finding a recorder in a room the server looks again; PRESENT_RECHECK_MS by default */
  presentRecheckMs?: number;
}

/** Waits before the recorder's attempts to join a room again: LiveKit's SDK has tried to resume already. */
export const REJOIN_DELAYS_MS: readonly number[] = [1_000, 2_000, 5_000, 10_000, 30_000];

/**
 * Why LiveKit disconnects a participant (rtc-node's DisconnectReason names), when the recorder does not join
 * again: it was asked to leave, another server's recorder took its place, or the room is gone. A removal
 * through the RoomService API is taken as meant, too: recording stops, and the warning says so.
 */
const FINAL_DISCONNECTS = new Set([
  'CLIENT_INITIATED',
  'DUPLICATE_IDENTITY',
  'PARTICIPANT_REMOVED',
  'ROOM_DELETED',
  'ROOM_CLOSED',
]);

/**
 * The states in which a session's room has the recorder in it: from the seat until the session has ended (the
 * agent may still speak while its session is ending; the room goes when the session is ended).
 */
export const RECORDED_ROOM_STATES: ReadonlySet<SessionState> = new Set([
  'connecting',
  ...LIVE_STATES,
  'ending',
]);

/**
 * How long after finding a recorder in a room this server looks again. LiveKit keeps listing a participant
 * whose connection died without a goodbye for a while (its departure timeout, 20 s by default) in case it comes
 * back: the recorder of a server that just crashed, or of this one before it restarted, looks present then.
 */
export const PRESENT_RECHECK_MS = 30_000;

/** A pending attempt to put a session's recorder back: its timer, and its end (or cancellation). */
interface Rejoin {
  timer: NodeJS.Timeout | undefined;
  done: Promise<void>;
  resolve: () => void;
  /** a recorder was found in the room at the last attempt: this one is the look again */
  recheck: boolean;
  /** the room was lost for good while this attempt was under way (another server's recorder took its place) */
  lostForGood: boolean;
}

/**
 * What an attempt found: it put the recorder in, this server's recorder is there (or on its way), another one is
 * listed there, or the session needs none.
 */
type RejoinOutcome = 'joined' | 'held' | 'present' | 'not live';

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
  readonly #rejoinDelaysMs: readonly number[];
  readonly #presentRecheckMs: number;
  /** per session, the timer of the recorder's next attempt to be back in the room */
  readonly #rejoins = new Map<string, Rejoin>();
  #stopped = false;

  constructor(options: LiveKitModeOptions) {
    this.settings = options.settings;
    this.#ttlMs = options.tokenTtlMs;
    this.#rejoinDelaysMs = options.rejoinDelaysMs?.length ? options.rejoinDelaysMs : REJOIN_DELAYS_MS;
    this.#presentRecheckMs = options.presentRecheckMs ?? PRESENT_RECHECK_MS;
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
      onDisconnected: (sessionId, reason) => this.#lost(sessionId, String(reason)),
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
        await this.#createRoom(sessionId);
        await this.recorder.join(sessionId);
        // the session may have ended while its room was made (its close() found no room yet)
        if (!(await this.#isLive(sessionId))) {
          this.#opened.delete(sessionId);
          await this.recorder.leave(sessionId);
          await this.rooms.deleteRoom(sessionId);
        }
      })();
      this.#opened.set(sessionId, opened);
      opened.catch(() => this.#opened.delete(sessionId));
    }
    return opened;
  }

  /** Whether the session still needs its recorder (RECORDED_ROOM_STATES). */
  async #isLive(sessionId: string): Promise<boolean> {
    const state = await this.#on().sessionState(sessionId);
    return state !== undefined && RECORDED_ROOM_STATES.has(state);
  }

  async #createRoom(sessionId: string): Promise<void> {
    const options = (await this.#on().roomOptions?.(sessionId)) ?? {};
    await this.rooms.createRoom(sessionId, { ...options, metadata: { usherSession: sessionId } });
  }

  /**
   * The session ended: the recorder leaves and the room is deleted (everyone still in it is disconnected). A
   * room LiveKit could not delete then is deleted by the next sweep (sweepEnded).
   */
  async close(sessionId: string): Promise<void> {
    this.#cancelRejoin(sessionId);
    await this.#opened.get(sessionId)?.catch(() => {});
    this.#opened.delete(sessionId);
    await this.recorder.leave(sessionId);
    await this.rooms.deleteRoom(sessionId);
  }

  /**
   * Deletes the rooms LiveKit still has for sessions that ended: their delete failed (LiveKit away), or the
   * server that ended them died first. Runs when a server starts or adopts a dead one's work. Returns the
   * sessions whose rooms went.
   */
  async sweepEnded(): Promise<string[]> {
    const on = this.#on();
    const swept: string[] = [];
    for (const room of await this.rooms.listRooms()) {
      if (usherSessionOf(room.metadata) !== room.name) continue;
      if ((await on.sessionState(room.name)) !== 'ended') continue;
      await this.rooms.deleteRoom(room.name);
      swept.push(room.name);
    }
    if (swept.length > 0) on.log.info({ sessions: swept }, 'deleted the LiveKit rooms of ended sessions');
    return swept;
  }

  /**
   * A crashed agent is put out of the session's room (a worker taken for lost may still be connected to
   * LiveKit), before the fresh one joins. Failing that, it is logged: the session goes on.
   */
  async removeAgent(sessionId: string, workerId: string): Promise<void> {
    try {
      await this.rooms.removeParticipant(sessionId, workerId);
    } catch (err) {
      this.#on().log.warn(
        { err, sessionId, workerId },
        'could not put the crashed agent out of the LiveKit room',
      );
    }
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
    const state = recorder || e.type === 'room_finished' ? null : await on.sessionState(e.sessionId);
    if (recorder || state === undefined) {
      // nothing to tell: the recorder is Usher, and a room that is no session's is not Usher's
    } else if (state === 'ended') {
      // someone came back to an ended session's room (a token still valid, LiveKit made the room again)
      if (e.type === 'participant_joined') await this.rooms.deleteRoom(e.sessionId);
    } else if (e.type === 'participant_joined') on.participantJoined(e.sessionId, e.participant);
    else if (e.type === 'participant_left') on.participantLeft(e.sessionId, e.participant);
    else if (await this.#finished(e.sessionId)) await on.roomFinished(e.sessionId);
    this.#seen.add(e.id);
    if (this.#seen.size > SEEN_EVENTS) this.#seen.delete(this.#seen.values().next().value!);
  }

  /**
   * Whether a `room_finished` still holds: the room is not there again (a late event of an earlier room of the
   * same name, made again since, does not end the session). Should LiveKit not answer, the event is believed.
   */
  async #finished(sessionId: string): Promise<boolean> {
    try {
      return (await this.rooms.listRooms([sessionId])).length === 0;
    } catch (err) {
      this.#on().log.warn({ err, sessionId }, 'could not ask LiveKit whether a finished room is back');
      return true;
    }
  }

  /**
   * Puts a recorder back in each of these sessions' rooms that has none (on this server or another): at
   * start-up, when this server adopts a dead one's work, and when another server stopped. A room that is gone
   * is made again. A session that is no longer live is skipped; a failed attempt is tried again later
   * (REJOIN_DELAYS_MS); a room LiveKit lists a recorder in is looked at again once, PRESENT_RECHECK_MS later.
   */
  resume(sessionIds: readonly string[]): void {
    for (const id of sessionIds) this.#rejoinLater(id, 0, { delayMs: 0 });
  }

  /** The recorder lost a room it was not asked to leave. */
  #lost(sessionId: string, reason: string): void {
    const log = this.#on().log;
    if (FINAL_DISCONNECTS.has(reason)) {
      const why =
        reason === 'DUPLICATE_IDENTITY'
          ? "another server's recorder took its place"
          : reason === 'PARTICIPANT_REMOVED'
            ? 'it was removed through the RoomService API: messages in this room are no longer recorded'
            : 'the room is closed';
      log.warn({ sessionId, reason }, `the recorder left the LiveKit room: ${why}`);
      const underWay = this.#rejoins.get(sessionId);
      if (underWay) underWay.lostForGood = true;
      return;
    }
    log.warn({ sessionId, reason }, 'the recorder lost the LiveKit room; it joins again');
    this.#rejoinLater(sessionId, 0);
  }

  /** The next attempt (the `attempt`-th) to have the session's recorder back in its room. */
  #rejoinLater(sessionId: string, attempt: number, o: { delayMs?: number; recheck?: boolean } = {}): void {
    // an attempt under way sees, when it ends, whether the recorder it put in is still there
    if (this.#stopped || this.#rejoins.has(sessionId)) return;
    const delays = this.#rejoinDelaysMs;
    const wait = o.delayMs ?? delays[Math.min(attempt, delays.length - 1)]!;
    const entry: Rejoin = {
      timer: undefined,
      done: Promise.resolve(),
      resolve: () => {},
      recheck: !!o.recheck,
      lostForGood: false,
    };
    entry.done = new Promise<void>((resolve) => {
      entry.resolve = resolve;
      entry.timer = setTimeout(() => void this.#attempt(sessionId, attempt, entry).finally(resolve), wait);
    });
    this.#rejoins.set(sessionId, entry);
  }

  /** One attempt to have the recorder back; a failed one sets up the next. */
  async #attempt(sessionId: string, attempt: number, entry: Rejoin): Promise<void> {
    let outcome: RejoinOutcome | 'failed';
    try {
      outcome = await this.#rejoin(sessionId);
    } catch (err) {
      outcome = 'failed';
      if (!this.#stopped)
        this.#on().log.warn(
          { err, sessionId, attempt: attempt + 1 },
          'the recorder could not join the LiveKit room again; it tries later',
        );
    }
    // a session that ended meanwhile was cancelled
    if (this.#rejoins.get(sessionId) !== entry) return;
    this.#rejoins.delete(sessionId);
    if (this.#stopped) return;
    if (outcome === 'failed') this.#rejoinLater(sessionId, attempt + 1);
    else if (outcome === 'joined' && !this.recorder.holds(sessionId)) {
      // the room was lost again before this attempt ended (#lost said why)
      if (!entry.lostForGood) this.#rejoinLater(sessionId, attempt + 1);
    } else if (outcome === 'present' && !entry.recheck)
      // it may be a recorder that died, which LiveKit still lists for a while
      this.#rejoinLater(sessionId, attempt, { delayMs: this.#presentRecheckMs, recheck: true });
    else if (outcome === 'joined')
      this.#on().log.info({ sessionId }, 'the recorder is back in the LiveKit room');
  }

  /** Whether the recorder is due to join the session's room again (or is trying to). */
  rejoining(sessionId: string): boolean {
    return this.#rejoins.has(sessionId);
  }

  /** Resolves once no attempt to put a recorder back is pending (tests use it). */
  async settled(): Promise<void> {
    while (this.#rejoins.size > 0) await Promise.all([...this.#rejoins.values()].map((r) => r.done));
  }

  async #rejoin(sessionId: string): Promise<RejoinOutcome> {
    if (!(await this.#isLive(sessionId))) return 'not live';
    if (this.recorder.holds(sessionId)) return 'held';
    // another server's recorder may be there already
    const present = await this.rooms.listParticipants(sessionId).catch((err: { code?: string }) => {
      if (err.code === 'NOT_FOUND') return [];
      throw err;
    });
    if (present.some((p) => p.identity === RECORDER_IDENTITY)) return 'present';
    if (this.#stopped) return 'not live';
    await this.#createRoom(sessionId);
    if (this.#stopped) return 'not live';
    await this.recorder.join(sessionId);
    if (!(await this.#isLive(sessionId))) {
      // the session ended meanwhile, and its room was deleted before this made it again
      await this.close(sessionId);
      return 'not live';
    }
    return 'joined';
  }

  #cancelRejoin(sessionId: string): void {
    const rejoin = this.#rejoins.get(sessionId);
    if (!rejoin) return;
    this.#rejoins.delete(sessionId);
    clearTimeout(rejoin.timer);
    rejoin.resolve();
  }

  /**
   * Leaves every room. Returns the sessions whose rooms this server kept a recorder in (or was about to put one
   * back in): another server takes them over (the server sends them on the bus).
   */
  async stop(): Promise<string[]> {
    this.#stopped = true;
    const rejoining = [...this.#rejoins.keys()];
    for (const id of rejoining) this.#cancelRejoin(id);
    const left = await this.recorder.close();
    return [...new Set([...left, ...rejoining])];
  }
}

/** The session a room was made for (its metadata, `{usherSession}`), or null for a room Usher did not make. */
function usherSessionOf(metadata: string): string | null {
  try {
    const value = JSON.parse(metadata) as { usherSession?: unknown };
    return typeof value?.usherSession === 'string' ? value.usherSession : null;
  } catch {
    return null;
  }
}
