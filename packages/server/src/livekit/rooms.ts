// A session's LiveKit room, through LiveKit's RoomService API: the room is named after the session id.
import type { Participant } from '@usher/protocol';
import { type CreateOptions, type Room, RoomServiceClient } from 'livekit-server-sdk';
import type { LiveKitSettings } from './config.ts';
import { apiUrlOf, fromLiveKitError } from './errors.ts';
import { toParticipant } from './roles.ts';

export interface CreateRoomOptions {
  /** people in the room at once; LiveKit does not count agents and the recorder */
  maxParticipants?: number;
  /** how long LiveKit keeps the room while nobody has joined; `livekit.roomEmptyTimeoutS` by default */
  emptyTimeoutS?: number;
  /** how long LiveKit keeps the room after the last participant left; LiveKit's default (20 s) if not set */
  departureTimeoutS?: number;
  /** stored on the room as JSON, visible to participants */
  metadata?: Record<string, unknown>;
}

export interface LiveKitRoom {
  /** the session id */
  name: string;
  /** LiveKit's id of this incarnation of the room */
  sid: string;
  numParticipants: number;
  metadata: string;
}

export interface LiveKitRoomsOptions {
  /** how long one API call may take; 10 s by default */
  requestTimeoutMs?: number;
}

export class LiveKitRooms {
  readonly #client: RoomServiceClient;
  readonly #apiUrl: string;
  readonly #emptyTimeoutS: number | undefined;

  constructor(settings: LiveKitSettings, options: LiveKitRoomsOptions = {}) {
    this.#apiUrl = apiUrlOf(settings.url);
    this.#emptyTimeoutS = settings.roomEmptyTimeoutS;
    this.#client = new RoomServiceClient(this.#apiUrl, settings.apiKey, settings.apiSecret, {
      requestTimeout: Math.ceil((options.requestTimeoutMs ?? 10_000) / 1000),
    });
  }

  /** Creates the session's room, or returns it when it exists already (LiveKit's CreateRoom is idempotent). */
  async createRoom(sessionId: string, options: CreateRoomOptions = {}): Promise<LiveKitRoom> {
    const request: CreateOptions = { name: sessionId };
    const emptyTimeout = options.emptyTimeoutS ?? this.#emptyTimeoutS;
    if (emptyTimeout !== undefined) request.emptyTimeout = emptyTimeout;
    if (options.departureTimeoutS !== undefined) request.departureTimeout = options.departureTimeoutS;
    if (options.maxParticipants !== undefined) request.maxParticipants = options.maxParticipants;
    if (options.metadata !== undefined) request.metadata = JSON.stringify(options.metadata);
    const room = await this.#call(`create room "${sessionId}"`, () => this.#client.createRoom(request));
    return toRoom(room);
  }

  /** The rooms LiveKit has open: those of the given sessions, or all of them. */
  async listRooms(sessionIds?: readonly string[]): Promise<LiveKitRoom[]> {
    const rooms = await this.#call('list rooms', () =>
      this.#client.listRooms(sessionIds ? [...sessionIds] : undefined),
    );
    return rooms.map(toRoom);
  }

  /** Closes the session's room, disconnecting everyone. Returns false when there was no such room. */
  async deleteRoom(sessionId: string): Promise<boolean> {
    return this.#idempotent(`delete room "${sessionId}"`, () => this.#client.deleteRoom(sessionId));
  }

  /** Who is in the session's room (hidden participants included); none when the room does not exist. */
  async listParticipants(sessionId: string): Promise<Participant[]> {
    const list = await this.#call(`list the participants of room "${sessionId}"`, () =>
      this.#client.listParticipants(sessionId),
    );
    return list.map(toParticipant);
  }

  /** Disconnects one participant (it may join again with a valid token). False when it was not there. */
  async removeParticipant(sessionId: string, identity: string): Promise<boolean> {
    return this.#idempotent(`remove "${identity}" from room "${sessionId}"`, () =>
      this.#client.removeParticipant(sessionId, identity),
    );
  }

  async #call<T>(action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw fromLiveKitError(err, action, this.#apiUrl);
    }
  }

  async #idempotent(action: string, fn: () => Promise<void>): Promise<boolean> {
    try {
      await this.#call(action, fn);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') return false;
      throw err;
    }
  }
}

function toRoom(room: Room): LiveKitRoom {
  return { name: room.name, sid: room.sid, numParticipants: room.numParticipants, metadata: room.metadata };
}
