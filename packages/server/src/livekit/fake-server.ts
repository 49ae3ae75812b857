// For tests only: an in-process fake of a LiveKit server's RoomService API (Twirp over real HTTP on
// 127.0.0.1) and of its webhooks. It checks the API token and grants, and answers errors, the way the real
// server does (livekit-server pkg/service/auth.go and roomservice.go): a bad Authorization header, an unknown
// API key or a bad signature → HTTP 401 with a plain-text reason; a missing grant → Twirp `unauthenticated`
// (401); no such room or participant → Twirp `not_found` (404). Tests can also connect participants with a
// participant token (as a client would) and make them leave; both send signed webhooks to `webhookUrl`.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt, type JWTPayload, jwtVerify } from 'jose';
import {
  AccessToken,
  ParticipantInfo,
  ParticipantInfo_State,
  ParticipantPermission,
  Room,
  type VideoGrant,
  WebhookEvent,
} from 'livekit-server-sdk';

export interface FakeLiveKitOptions {
  apiKey: string;
  apiSecret: string;
  /** where webhooks go; none are sent without it (as LiveKit without a webhook configured) */
  webhookUrl?: string;
}

export interface WebhookDelivery {
  event: string;
  /** HTTP status of the receiver's answer; 0 when it could not be reached */
  status: number;
  body: string;
}

interface FakeParticipant {
  sid: string;
  identity: string;
  name: string;
  metadata: string;
  attributes: Record<string, string>;
  kind: number;
  joinedAt: number;
  grant: VideoGrant;
}

interface FakeRoom {
  sid: string;
  name: string;
  emptyTimeout: number;
  departureTimeout: number;
  maxParticipants: number;
  metadata: string;
  creationTime: number;
  participants: Map<string, FakeParticipant>;
}

interface Claims extends JWTPayload {
  video?: VideoGrant;
  name?: string;
  metadata?: string;
  attributes?: Record<string, string>;
  kind?: string;
}

/** A Twirp error as the real server writes it. */
class TwirpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, msg: string) {
    super(msg);
    this.status = status;
    this.code = code;
  }
}

/** A refusal of the auth middleware, before Twirp: plain text. */
class AuthError extends Error {}

const ROOM_DEFAULTS = { emptyTimeout: 300, departureTimeout: 20 };
const MAX_ROOM_NAME_LENGTH = 256;
/** the token `kind` claim → ParticipantInfo.Kind */
const KINDS: Record<string, number> = { standard: 0, ingress: 1, egress: 2, sip: 3, agent: 4 };
const PERMISSION_DENIED = () => new TwirpError(401, 'unauthenticated', 'permissions denied');

export class FakeLiveKitServer {
  readonly #o: FakeLiveKitOptions;
  readonly #server: Server;
  readonly #rooms = new Map<string, FakeRoom>();
  webhookUrl: string | undefined;
  /** every webhook sent, in order */
  readonly webhooks: WebhookDelivery[] = [];
  /** every RoomService call, in order, with the HTTP status it got */
  readonly calls: Array<{ method: string; status: number }> = [];
  /**
   * every attempt of a client SDK to open a signalling connection (GET /rtc…), which the fake refuses: it does
   * not speak LiveKit's signalling protocol
   */
  readonly signalRequests: Array<{
    path: string;
    query: URLSearchParams;
    authorization: string | undefined;
  }> = [];

  private constructor(o: FakeLiveKitOptions, server: Server) {
    this.#o = o;
    this.#server = server;
    this.webhookUrl = o.webhookUrl;
  }

  static async start(o: FakeLiveKitOptions): Promise<FakeLiveKitServer> {
    let fake: FakeLiveKitServer | undefined;
    const server = createServer((req, res) => void fake!.#handle(req, res));
    fake = new FakeLiveKitServer(o, server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  /** ws:// URL, as in `livekit.url` */
  get url(): string {
    return `ws://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** The open rooms' names and their participants' identities. */
  rooms(): Array<{
    name: string;
    participants: string[];
    metadata: string;
    maxParticipants: number;
    departureTimeout: number;
  }> {
    return [...this.#rooms.values()].map((r) => ({
      name: r.name,
      participants: [...r.participants.keys()],
      metadata: r.metadata,
      maxParticipants: r.maxParticipants,
      departureTimeout: r.departureTimeout,
    }));
  }

  /**
   * Connects a participant with a participant token, as the real server does when a client connects: the token
   * must verify and carry roomJoin and a room; the room is created if needed (room_started); a participant with
   * the same identity is replaced (participant_left). Resolves with the webhooks sent.
   */
  async join(token: string): Promise<WebhookDelivery[]> {
    const claims = await this.#verify(token);
    const grant = claims.video;
    if (!grant?.roomJoin || !grant.room)
      throw new Error('permissions denied: the token has no roomJoin for a room');
    if (!claims.sub) throw new Error('identity cannot be empty');
    const sent: WebhookDelivery[] = [];
    let room = this.#rooms.get(grant.room);
    if (!room) {
      room = this.#createRoom(grant.room, {});
      sent.push(await this.#notify('room_started', room));
    }
    const kind = KINDS[claims.kind ?? 'standard'] ?? 0;
    const dependent = isDependent(kind, grant);
    const people = [...room.participants.values()].filter((p) => !isDependent(p.kind, p.grant));
    if (room.maxParticipants > 0 && !dependent && people.length >= room.maxParticipants)
      throw new Error('room is full');
    const previous = room.participants.get(claims.sub);
    if (previous) {
      room.participants.delete(previous.identity);
      sent.push(await this.#notify('participant_left', room, previous));
    }
    const participant: FakeParticipant = {
      sid: `PA_${randomBytes(6).toString('hex')}`,
      identity: claims.sub,
      name: claims.name ?? '',
      metadata: claims.metadata ?? '',
      attributes: claims.attributes ?? {},
      kind,
      joinedAt: Math.floor(Date.now() / 1000),
      grant,
    };
    room.participants.set(participant.identity, participant);
    sent.push(await this.#notify('participant_joined', room, participant));
    return sent;
  }

  /** A participant disconnects (participant_left). */
  async leave(roomName: string, identity: string): Promise<WebhookDelivery[]> {
    const room = this.#rooms.get(roomName);
    const participant = room?.participants.get(identity);
    if (!room || !participant) throw new Error(`no participant "${identity}" in room "${roomName}"`);
    room.participants.delete(identity);
    return [await this.#notify('participant_left', room, participant)];
  }

  /**
   * Closes a room as LiveKit does on DeleteRoom or when its empty/departure timeout runs out: everyone leaves
   * (participant_left), then room_finished.
   */
  async closeRoom(roomName: string): Promise<WebhookDelivery[]> {
    const room = this.#rooms.get(roomName);
    if (!room) throw new Error(`no room "${roomName}"`);
    const sent: WebhookDelivery[] = [];
    for (const p of [...room.participants.values()]) {
      room.participants.delete(p.identity);
      sent.push(await this.#notify('participant_left', room, p));
    }
    this.#rooms.delete(roomName);
    sent.push(await this.#notify('room_finished', room));
    return sent;
  }

  /**
   * A webhook as LiveKit would send it: the protobuf JSON body, and the Authorization header (the bare token,
   * no Bearer) signed with this server's key, or with `keys` to forge one.
   */
  async signedWebhook(
    event: string,
    roomName: string,
    identity?: string,
    keys: { apiKey: string; apiSecret: string } = this.#o,
  ): Promise<{ body: string; authorization: string }> {
    const room = this.#rooms.get(roomName) ?? this.#createRoom(roomName, {}, false);
    const participant = identity ? room.participants.get(identity) : undefined;
    return sign(webhookBody(event, room, participant), keys);
  }

  /** POSTs a webhook body with an Authorization header to webhookUrl, as LiveKit does. */
  async deliver(event: string, body: string, authorization: string): Promise<WebhookDelivery> {
    if (!this.webhookUrl) throw new Error('the fake LiveKit server has no webhookUrl');
    let delivery: WebhookDelivery;
    try {
      const res = await fetch(this.webhookUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/webhook+json', Authorization: authorization },
        body,
      });
      delivery = { event, status: res.status, body: await res.text() };
    } catch (err) {
      delivery = { event, status: 0, body: String(err) };
    }
    this.webhooks.push(delivery);
    return delivery;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ------------------------------------------------------------------ HTTP: RoomService (Twirp), signalling

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname.startsWith('/rtc')) {
      this.signalRequests.push({
        path: url.pathname,
        query: url.searchParams,
        authorization: req.headers.authorization,
      });
      send(
        res,
        404,
        'text/plain; charset=utf-8',
        'the fake LiveKit server does not speak the signalling protocol',
      );
      return;
    }
    const method = url.pathname.replace(/^\/twirp\/livekit\.RoomService\//, '');
    let status = 200;
    try {
      const claims = await this.#authenticate(req.headers.authorization);
      const body = parseTwirpRequest(req, Buffer.concat(chunks).toString('utf8'));
      send(res, 200, 'application/json', JSON.stringify(await this.#call(method, body, claims)));
    } catch (err) {
      if (err instanceof AuthError) {
        status = 401;
        send(res, status, 'text/plain; charset=utf-8', err.message);
      } else {
        const e =
          err instanceof TwirpError
            ? err
            : new TwirpError(500, 'internal', (err as Error).message ?? 'internal');
        status = e.status;
        send(res, status, 'application/json', JSON.stringify({ code: e.code, msg: e.message }));
      }
    }
    this.calls.push({ method, status });
  }

  /** LiveKit's APIKeyAuthMiddleware: no header passes without grants (and every call then lacks a grant). */
  async #authenticate(header: string | undefined): Promise<Claims | undefined> {
    if (!header) return undefined;
    if (!header.startsWith('Bearer '))
      throw new AuthError('invalid authorization header. Must start with Bearer ');
    return this.#verify(header.slice('Bearer '.length));
  }

  async #verify(token: string): Promise<Claims> {
    let iss: string | undefined;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      throw new AuthError('invalid authorization token');
    }
    if (iss !== this.#o.apiKey) throw new AuthError('invalid API key');
    try {
      const { payload } = await jwtVerify(token, new TextEncoder().encode(this.#o.apiSecret), {
        algorithms: ['HS256'],
        clockTolerance: 60,
      });
      return payload as Claims;
    } catch (err) {
      throw new AuthError(`invalid authorization token: ${(err as Error).message}`);
    }
  }

  async #call(method: string, body: Record<string, unknown>, claims: Claims | undefined): Promise<unknown> {
    const grant = claims?.video;
    const requireCreate = () => {
      if (!grant?.roomCreate) throw PERMISSION_DENIED();
    };
    const requireAdmin = (room: string) => {
      if (!grant?.roomAdmin || grant.room !== room) throw PERMISSION_DENIED();
    };
    switch (method) {
      case 'CreateRoom': {
        requireCreate();
        const name = str(body, 'name');
        if (!name) throw new TwirpError(400, 'invalid_argument', 'no room name');
        if (name.length > MAX_ROOM_NAME_LENGTH)
          throw new TwirpError(
            400,
            'invalid_argument',
            `room name length exceeds limits: max length ${MAX_ROOM_NAME_LENGTH}`,
          );
        const room = this.#rooms.get(name) ?? this.#createRoom(name, body);
        return roomInfo(room).toJson();
      }
      case 'ListRooms': {
        if (!grant?.roomList) throw PERMISSION_DENIED();
        const names = Array.isArray(body.names) ? (body.names as string[]) : [];
        const rooms = [...this.#rooms.values()].filter((r) => names.length === 0 || names.includes(r.name));
        return { rooms: rooms.map((r) => roomInfo(r).toJson()) };
      }
      case 'DeleteRoom': {
        requireCreate();
        const name = str(body, 'room');
        if (!this.#rooms.has(name)) throw new TwirpError(404, 'not_found', 'requested room does not exist');
        await this.closeRoom(name);
        return {};
      }
      case 'ListParticipants': {
        const name = str(body, 'room');
        requireAdmin(name);
        const room = this.#rooms.get(name);
        return {
          participants: [...(room?.participants.values() ?? [])].map((p) => participantInfo(p).toJson()),
        };
      }
      case 'RemoveParticipant': {
        const name = str(body, 'room');
        requireAdmin(name);
        const identity = str(body, 'identity');
        if (!this.#rooms.get(name)?.participants.has(identity))
          throw new TwirpError(404, 'not_found', 'participant does not exist');
        await this.leave(name, identity);
        return {};
      }
      default:
        throw new TwirpError(404, 'bad_route', `no handler for path "/twirp/livekit.RoomService/${method}"`);
    }
  }

  #createRoom(name: string, body: Record<string, unknown>, keep = true): FakeRoom {
    const room: FakeRoom = {
      sid: `RM_${randomBytes(6).toString('hex')}`,
      name,
      emptyTimeout: num(body, 'emptyTimeout', 'empty_timeout') || ROOM_DEFAULTS.emptyTimeout,
      departureTimeout: num(body, 'departureTimeout', 'departure_timeout') || ROOM_DEFAULTS.departureTimeout,
      maxParticipants: num(body, 'maxParticipants', 'max_participants'),
      metadata: str(body, 'metadata'),
      creationTime: Math.floor(Date.now() / 1000),
      participants: new Map(),
    };
    if (keep) this.#rooms.set(name, room);
    return room;
  }

  async #notify(event: string, room: FakeRoom, participant?: FakeParticipant): Promise<WebhookDelivery> {
    if (!this.webhookUrl) return { event, status: 0, body: 'no webhookUrl' };
    const { body, authorization } = await sign(webhookBody(event, room, participant), this.#o);
    return this.deliver(event, body, authorization);
  }
}

/** Twirp's routing: POST only, a JSON content type (parameters ignored), a JSON object body. */
function parseTwirpRequest(req: IncomingMessage, text: string): Record<string, unknown> {
  if (req.method !== 'POST')
    throw new TwirpError(404, 'bad_route', `unsupported method "${req.method}" (only POST is allowed)`);
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json')
    throw new TwirpError(404, 'bad_route', `unexpected Content-Type: "${req.headers['content-type'] ?? ''}"`);
  try {
    const body = JSON.parse(text) as unknown;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('not an object');
    return body as Record<string, unknown>;
  } catch (err) {
    throw new TwirpError(
      400,
      'malformed',
      `the json request could not be decoded: ${(err as Error).message}`,
    );
  }
}

/** A string field (for these its JSON and proto names are the same). */
function str(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  return typeof v === 'string' ? v : '';
}

/** Protobuf JSON accepts a field by its JSON name or its proto name. */
function num(body: Record<string, unknown>, jsonName: string, protoName: string): number {
  const v = body[jsonName] ?? body[protoName];
  return typeof v === 'number' ? v : typeof v === 'string' ? Number(v) || 0 : 0;
}

/** Agents and recorders do not count towards maxParticipants nor keep a room open (livekit-server IsDependent). */
function isDependent(kind: number, grant: VideoGrant): boolean {
  return kind === KINDS.agent || kind === KINDS.egress || !!grant.agent || !!grant.recorder;
}

function roomInfo(room: FakeRoom): Room {
  const participants = [...room.participants.values()];
  return new Room({
    sid: room.sid,
    name: room.name,
    emptyTimeout: room.emptyTimeout,
    departureTimeout: room.departureTimeout,
    maxParticipants: room.maxParticipants,
    metadata: room.metadata,
    creationTime: BigInt(room.creationTime),
    creationTimeMs: BigInt(room.creationTime * 1000),
    numParticipants: participants.length,
    activeRecording: participants.some((p) => p.grant.recorder),
  });
}

function participantInfo(p: FakeParticipant): ParticipantInfo {
  // grants default as LiveKit's: with neither canPublish nor canSubscribe set, both are allowed; data too
  const neither = p.grant.canPublish === undefined && p.grant.canSubscribe === undefined;
  return new ParticipantInfo({
    sid: p.sid,
    identity: p.identity,
    name: p.name,
    metadata: p.metadata,
    attributes: p.attributes,
    kind: p.kind,
    state: ParticipantInfo_State.ACTIVE,
    joinedAt: BigInt(p.joinedAt),
    permission: new ParticipantPermission({
      canSubscribe: neither || !!p.grant.canSubscribe,
      canPublish: neither || !!p.grant.canPublish,
      canPublishData: p.grant.canPublishData ?? true,
      hidden: !!p.grant.hidden,
      recorder: !!p.grant.recorder,
      agent: !!p.grant.agent,
      canUpdateMetadata: !!p.grant.canUpdateOwnMetadata,
    }),
  });
}

function webhookBody(event: string, room: FakeRoom, participant?: FakeParticipant): string {
  const ev = new WebhookEvent({
    id: `EV_${randomBytes(6).toString('hex')}`,
    createdAt: BigInt(Math.floor(Date.now() / 1000)),
    room: roomInfo(room),
    ...(participant ? { participant: participantInfo(participant) } : {}),
  });
  // the SDK's WebhookEvent subclass initializes `event` after the constructor has set it
  ev.event = event as WebhookEvent['event'];
  return ev.toJsonString();
}

/** LiveKit's webhook signature: a token of the API key, valid 5 minutes, whose sha256 claim covers the body. */
async function sign(
  body: string,
  keys: { apiKey: string; apiSecret: string },
): Promise<{ body: string; authorization: string }> {
  const at = new AccessToken(keys.apiKey, keys.apiSecret, { ttl: '5m' });
  at.sha256 = createHash('sha256').update(body).digest('base64');
  return { body, authorization: await at.toJwt() };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
