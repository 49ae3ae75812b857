// The recorder: a hidden participant in each session's LiveKit room that subscribes to no media, reads the
// room's data packets, decodes Usher room messages (`{type, data}` as JSON) and hands each one, with its
// sender, to a callback.
//
// It connects with @livekit/rtc-node, a native (prebuilt) module that is loaded only when a recorder first
// joins a room, so a server without LiveKit never loads it. Once it has connected, its native client keeps the
// process alive until it is disposed: closing the last recorder that used it does that.
import { type ParticipantKind, UsherError } from '@usher/protocol';
import { parseJsonText } from '../realtime/frames.ts';
import type { LiveKitSettings } from './config.ts';
import { kindOf, RECORDER_IDENTITY } from './roles.ts';
import { LiveKitTokens } from './tokens.ts';

/** A room message as the recorder hands it on; `at` is when the recorder received it. */
export interface RoomMessage {
  type: string;
  from: { identity: string; kind: ParticipantKind };
  data: unknown;
  at: string;
}

/** The sender of a data packet, as @livekit/rtc-node describes a remote participant. */
export interface PacketSender {
  identity: string;
  attributes?: Readonly<Record<string, string>>;
  kind?: number;
}

/** The options the recorder connects with: no automatic subscription to anyone's media. */
export const RECORDER_CONNECT_OPTIONS = Object.freeze({ autoSubscribe: false, dynacast: false });

/** The part of @livekit/rtc-node's Room the recorder uses (tests inject their own). */
export interface RecorderRoom {
  connect(url: string, token: string, options: { autoSubscribe: boolean; dynacast: boolean }): Promise<void>;
  disconnect(): Promise<void>;
  on(event: 'dataReceived', listener: (payload: Uint8Array, participant?: PacketSender) => void): unknown;
  on(event: 'disconnected', listener: (reason: unknown) => void): unknown;
}

const MAX_TYPE_LENGTH = 64;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes one data packet into a room message, or says why it is not one. */
export function decodeRoomMessage(
  payload: Uint8Array,
  sender: PacketSender | undefined,
  at: string,
): { ok: true; message: RoomMessage } | { ok: false; reason: string } {
  if (!sender) return { ok: false, reason: 'the packet has no sender participant (sent by the server API)' };
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return { ok: false, reason: `the packet from "${sender.identity}" is not valid JSON (not UTF-8)` };
  }
  // as a socket frame is: JSON, not nested too deep, no NUL character
  const parsed = parseJsonText(text, `the packet from "${sender.identity}"`);
  if (!parsed.ok) return { ok: false, reason: parsed.message };
  const m = parsed.value as { type?: unknown; data?: unknown };
  if (typeof m !== 'object' || m === null || Array.isArray(m) || typeof m.type !== 'string')
    return { ok: false, reason: `the packet from "${sender.identity}" is not a room message {type, data}` };
  if (m.type.length === 0 || m.type.length > MAX_TYPE_LENGTH)
    return {
      ok: false,
      reason: `the message type from "${sender.identity}" must be 1 to ${MAX_TYPE_LENGTH} characters`,
    };
  const from = { identity: sender.identity, kind: kindOf(sender.attributes, sender.kind) };
  return { ok: true, message: { type: m.type, from, data: m.data ?? null, at } };
}

export interface LiveKitRecorderOptions {
  settings: LiveKitSettings;
  onMessage: (sessionId: string, message: RoomMessage) => void | Promise<void>;
  /** a data packet that is not a room message */
  onSkipped?: (sessionId: string, reason: string) => void;
  /** the recorder lost a room without being asked to leave (room deleted, removed, network); it does not rejoin */
  onDisconnected?: (sessionId: string, reason: unknown) => void;
  /** onMessage threw or rejected */
  onError?: (sessionId: string, error: unknown) => void;
  now?: () => number;
  /** the join token's lifetime; LiveKit refreshes it while connected. 10 minutes by default */
  tokenTtlMs?: number;
  /** makes the Room to connect with; @livekit/rtc-node's by default */
  createRoom?: () => RecorderRoom | Promise<RecorderRoom>;
}

/** @livekit/rtc-node once loaded, and how many recorders use it now. */
let rtc: typeof import('@livekit/rtc-node') | undefined;
let rtcUsers = 0;

export class LiveKitRecorder {
  readonly #o: LiveKitRecorderOptions;
  readonly #tokens: LiveKitTokens;
  readonly #rooms = new Map<string, RecorderRoom>();
  readonly #joining = new Map<string, Promise<void>>();
  #usesRtc = false;

  constructor(options: LiveKitRecorderOptions) {
    this.#o = options;
    this.#tokens = new LiveKitTokens(options.settings);
  }

  /** Joins the session's room as the hidden recorder; joining a room it is in (or joining) already does nothing. */
  join(sessionId: string): Promise<void> {
    const pending = this.#joining.get(sessionId);
    if (pending) return pending;
    if (this.#rooms.has(sessionId)) return Promise.resolve();
    const joining = this.#join(sessionId).finally(() => this.#joining.delete(sessionId));
    this.#joining.set(sessionId, joining);
    return joining;
  }

  async #join(sessionId: string): Promise<void> {
    const o = this.#o;
    const room = await this.#createRoom();
    const now = o.now ?? Date.now;
    room.on('dataReceived', (payload, sender) => {
      // a room the recorder has left (or lost) is not listened to
      if (this.#rooms.get(sessionId) !== room) return;
      const decoded = decodeRoomMessage(payload, sender, new Date(now()).toISOString());
      if (!decoded.ok) {
        o.onSkipped?.(sessionId, decoded.reason);
        return;
      }
      try {
        const done = o.onMessage(sessionId, decoded.message);
        if (done instanceof Promise) done.catch((err: unknown) => o.onError?.(sessionId, err));
      } catch (err) {
        o.onError?.(sessionId, err);
      }
    });
    room.on('disconnected', (reason) => {
      // a room the recorder was asked to leave is no longer in the map
      if (this.#rooms.get(sessionId) !== room) return;
      this.#rooms.delete(sessionId);
      // rtc-node gives a DisconnectReason number: pass its name on (e.g. ROOM_DELETED)
      o.onDisconnected?.(
        sessionId,
        typeof reason === 'number' ? (rtc?.DisconnectReason[reason] ?? reason) : reason,
      );
    });
    const token = await this.#tokens.participantToken({
      sessionId,
      identity: RECORDER_IDENTITY,
      kind: 'recorder',
      ttlMs: o.tokenTtlMs ?? 10 * 60_000,
    });
    this.#rooms.set(sessionId, room);
    try {
      await room.connect(o.settings.url, token, { ...RECORDER_CONNECT_OPTIONS });
    } catch (err) {
      this.#rooms.delete(sessionId);
      throw new UsherError(
        'UNAVAILABLE',
        `the recorder could not join LiveKit room "${sessionId}" at ${o.settings.url}: ${(err as Error).message ?? err}`,
      );
    }
  }

  /** Leaves the session's room; leaving a room it is not in does nothing. */
  async leave(sessionId: string): Promise<void> {
    await this.#joining.get(sessionId)?.catch(() => {});
    const room = this.#rooms.get(sessionId);
    if (!room) return;
    this.#rooms.delete(sessionId);
    await room.disconnect();
  }

  /** Whether the recorder is in the session's room, or joining it. */
  holds(sessionId: string): boolean {
    return this.#rooms.has(sessionId) || this.#joining.has(sessionId);
  }

  /** The sessions whose rooms the recorder is in. */
  sessions(): string[] {
    return [...this.#rooms.keys()];
  }

  /**
   * Leaves every room, and returns the sessions whose rooms it left; the last recorder to close stops
   * @livekit/rtc-node's native client.
   */
  async close(): Promise<string[]> {
    await Promise.allSettled([...this.#joining.values()]);
    const left = this.sessions();
    await Promise.all(left.map((id) => this.leave(id)));
    if (this.#usesRtc) {
      this.#usesRtc = false;
      if (--rtcUsers === 0) await disposeRtc();
    }
    return left;
  }

  async #createRoom(): Promise<RecorderRoom> {
    if (this.#o.createRoom) return this.#o.createRoom();
    const module = await loadRtc();
    if (!this.#usesRtc) {
      this.#usesRtc = true;
      rtcUsers++;
    }
    return new module.Room();
  }
}

async function loadRtc(): Promise<typeof import('@livekit/rtc-node')> {
  try {
    rtc ??= await import('@livekit/rtc-node');
    return rtc;
  } catch (err) {
    throw new UsherError(
      'INTERNAL',
      `the LiveKit recorder needs @livekit/rtc-node with its prebuilt binary for ${process.platform}-${process.arch} ` +
        `(npm install @livekit/rtc-node -w packages/server): ${(err as Error).message}`,
    );
  }
}

/** Stops the native client's threads; the next join starts a new client. */
async function disposeRtc(): Promise<void> {
  await rtc?.dispose();
  // rtc-node keeps its client in this global (declared in its types) and would otherwise reuse the disposed one
  globalThis._ffiClientInstance = undefined;
}
