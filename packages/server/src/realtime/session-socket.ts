// GET /sessions/{id}/ws: a participant's live connection. It first gets the current state, then every
// event; the viewer's connection also drives AFK (input) and reconnection (its close code). A stream session's
// viewer also signals its WebRTC connection to the worker here (Epic's player protocol, docs/signalling.md).
import {
  ClientFrame,
  type Envelope,
  MAX_CLIENT_FRAME_BYTES,
  MAX_REPLAYED_MESSAGES,
  type Replayed,
  type SessionEvent,
  SocketCloseCode,
  UsherError,
  validator,
} from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import { callerOf, requireCurrentAgent, requireSession } from '../api/auth.ts';
import type { ApiContext } from '../api/context.ts';
import type { VerifiedToken } from '../auth/tokens.ts';
import type { Engine } from '../engine/engine.ts';
import { isoToMicros, microsToIso } from '../storage/messages.ts';
import type { TransitionRecord } from '../storage/records.ts';
import { closeToRetry, failedOnServer, parseJsonText } from './frames.ts';
import { sendEvent, sendFrame } from './outbound.ts';
import { roomSender, TokenBucket } from './rate-limit.ts';
import type { PlayerHandle } from './signalling/relay.ts';
import { releaseUpgrade } from './upgrade.ts';

const clientFrame = validator(ClientFrame);
/** Frames a client may send before its socket is set up (they are held, then handled in order). */
const MAX_EARLY_FRAMES = 64;

export function sessionSocketRoute(app: FastifyInstance, ctx: ApiContext): void {
  const { engine, relay } = ctx;
  app.get<{ Params: { id: string } }>(
    '/sessions/:id/ws',
    { websocket: true },
    async (socket: WebSocket, req) => {
      const sessionId = req.params.id;
      const log = releaseUpgrade(socket, req);
      // events that arrive while the snapshot is read are held, then sent after it
      let buffer: SessionEvent[] | null = [];
      let ended = false;
      const send = (e: SessionEvent | Record<string, unknown>) => sendFrame(socket, e);
      /** the place in line this socket was last told: broadcasts that repeat it are not sent again */
      let lastPosition: { position: number; queueLength: number } | null = null;
      const deliver = (e: SessionEvent) => {
        if (e.type === 'session.queue_position') {
          if (e.position === lastPosition?.position && e.queueLength === lastPosition.queueLength) return;
          lastPosition = { position: e.position, queueLength: e.queueLength };
        }
        sendEvent(socket, e);
        if (e.type === 'session.status_changed' && e.status === 'ended' && !ended) {
          ended = true;
          socket.close(e.endCode ?? 1000, e.endReason ?? '');
        }
      };
      const unsubscribe = engine.hub.subscribe(sessionId, (e) => (buffer ? buffer.push(e) : deliver(e)));
      // from here on this socket hears the room live; what a reopened socket missed before it is replayed
      const position = engine.recorder.position(engine.clock.now());
      // frames and a close that arrive meanwhile are held as well: ws drops events nobody listens to yet
      const early: [RawData, boolean][] = [];
      let earlyClose: number | null = null;
      const holdFrame = (raw: RawData, isBinary: boolean) => {
        if (early.length < MAX_EARLY_FRAMES) early.push([raw, isBinary]);
        else
          socket.close(SocketCloseCode.PolicyViolation, 'too many frames before the session socket opened');
      };
      const holdClose = (code: number) => {
        earlyClose = code;
      };
      socket.on('message', holdFrame);
      socket.on('close', holdClose);

      let role: string;
      let identity = 'admin';
      /** the session's project, for log lines (known once the session is read) */
      let projectId: string | undefined;
      let joined = false;
      /** the viewer's arrival was written (engine.viewerAttached) */
      let attached = false;
      /** participants the snapshot listed: their held join events are not sent again */
      const listed = new Set<string>();
      /** the messages replayed: held ones (relayed through another server) are not sent again */
      let replayed = new Set<string>();
      let timeline: TransitionRecord[] = [];
      /** the viewer of a stream session: its signalling to the worker */
      let player: PlayerHandle | null = null;
      /** a participant's token, renewed on its pings past half its life (an agent's comes with its worker's) */
      let credential: VerifiedToken | null = null;
      /** an agent's room messages: the check that its worker serves the session, one after the other */
      let agentChecks: Promise<void> = Promise.resolve();
      try {
        const cursor = replayCursor(req.query as Record<string, unknown>);
        const caller = await callerOf(req, ctx.auth);
        requireSession(caller, sessionId, ['viewer', 'user', 'observer', 'agent']);
        role = caller.kind === 'token' ? caller.token.role : 'observer';
        if (caller.kind === 'token') identity = caller.token.idn ?? caller.token.role;
        if (caller.kind === 'token' && role !== 'agent') credential = caller.token;
        // Epic's player protocol starts with `config`; Usher's events follow as extra message types. Only the
        // viewer plays the stream, so only the viewer gets it. A token names its project, so config goes out
        // before the session is read: the viewer can ask for its streamer while the snapshot is on its way
        let configSent = false;
        const sendConfig = (projectId: string) => {
          if (configSent || role !== 'viewer' || engine.getProject(projectId).settings.kind !== 'stream')
            return;
          configSent = true;
          send(relay.config());
        };
        if (caller.kind === 'token') sendConfig(caller.token.pid);
        let s = await engine.getSession(sessionId);
        if (caller.kind === 'token') requireCurrentAgent(caller.token, s);
        projectId = s.projectId;
        timeline = await engine.store.read.timeline(sessionId);
        // the snapshot shows the timeline's state, so that the held events it already covers can be told apart
        const last = timeline[timeline.length - 1];
        const status = last?.to ?? s.state;
        if (status === 'ended' && s.state !== 'ended') s = await engine.getSession(sessionId);
        sendConfig(s.projectId);
        if (configSent && status !== 'ended') player = relay.playerOpened(sessionId, { send });
        const snapshot: SessionEvent = {
          type: 'session.status_changed',
          sessionId,
          at: new Date(last?.at ?? s.updatedAt).toISOString(),
          status,
          previous: last?.from ?? null,
          cause: last?.cause ?? 'snapshot',
          ...(status === 'ended'
            ? { endCode: s.endCode!, endReason: s.endReason!, outcome: s.outcome! }
            : {}),
        };
        // the viewer's arrival is written before the snapshot goes out: a socket that fails here closes with
        // 1011 before the client took it for a connection (the SDK would start its count of attempts again)
        if (role === 'viewer' && status !== 'ended') {
          await engine.viewerAttached(sessionId);
          attached = true;
        }
        // join before the snapshot, so that a client holding the snapshot is in the room
        if (role !== 'observer' && status !== 'ended') {
          engine.rooms.participantJoined(sessionId, { identity, kind: participantKind(role) });
          joined = true;
        }
        // what a reopened socket missed comes first: read before the snapshot, a failure closes with 1011 before
        // the client counts the connection as made, and a session that ended meanwhile still tells its last words
        if (cursor) replayed = await replayMissed(engine, sessionId, cursor, position, send);
        deliver(snapshot);
        // an idle session has warned its viewer: a socket that opens during the warning (a page reconnecting)
        // is warned too, with the time that is left
        if (status === 'idle') {
          const warning = await engine.afkWarningOf(sessionId);
          if (warning) send(warning);
        }
        const q = status === 'queued' ? await engine.positions.current(s) : null;
        lastPosition = q ? { position: q.position, queueLength: q.queueLength } : null;
        if (q)
          send({
            type: 'session.queue_position',
            sessionId,
            at: new Date(engine.clock.now()).toISOString(),
            ...q,
          });
        for (const participant of engine.rooms.participants(sessionId)) {
          listed.add(participant.identity);
          send({
            type: 'session.participant_joined',
            sessionId,
            at: new Date(engine.clock.now()).toISOString(),
            participant,
          });
        }
      } catch (err) {
        // what was done for this socket is undone: its streamer link, its place in the room
        unsubscribe();
        if (player) relay.playerClosed(player);
        if (joined) engine.rooms.participantLeft(sessionId, identity);
        if (attached)
          void engine
            .viewerDetached(sessionId, SocketCloseCode.InternalError)
            .catch((e) => log.error({ err: e, sessionId, projectId }, 'viewer detach failed'));
        if (failedOnServer(err)) {
          log.error({ err, sessionId, projectId }, 'the session socket could not open');
          closeToRetry(
            socket,
            send,
            err instanceof UsherError ? err.message : 'could not open the session socket',
          );
          return;
        }
        const { code, message } = err as UsherError;
        send({ type: 'error', code, message });
        socket.close(SocketCloseCode.PolicyViolation, message.slice(0, 120));
        return;
      }
      const held = buffer;
      buffer = null;
      for (const e of unseen(held, timeline)) {
        if (e.type === 'session.participant_joined' && listed.delete(e.participant.identity)) continue;
        if (e.type === 'session.message' && replayed.has(e.message.id)) continue;
        if (!ended) deliver(e);
      }

      // one allowance per participant, shared by its sockets and kept while it reconnects
      const sender = roomSender(sessionId, identity);
      const signalling = new TokenBucket(ctx.signallingRate);
      /** who this socket's room messages are from */
      const from = { identity, kind: participantKind(role) };
      const refuse = (ref: string | undefined, code: string, message: string) =>
        send({ type: 'error', code, message, ...(ref !== undefined ? { ref } : {}) });
      /** a relayed message is acked once it is recorded (or refused if it could not be) */
      const acked = (ref: string | undefined, message: Envelope, stored: Promise<boolean>) =>
        stored.then(
          (recorded) => {
            if (ref !== undefined)
              send({ type: 'message_ack', ref, id: message.id, at: message.at, recorded });
          },
          () => refuse(ref, 'NOT_RECORDED', `message ${message.id} was relayed but could not be recorded`),
        );
      /** a token being renewed: the pong waits for it, so the fresh token comes before the pong */
      let renewing = false;
      const onMessage = (raw: RawData, isBinary: boolean) => {
        // the session is over: the socket is closing, and nothing it sends is relayed or recorded
        if (ended) return;
        const parsed = parseClientFrame(raw as Buffer, isBinary);
        if (parsed === null) {
          socket.close(SocketCloseCode.TooLarge, `frames are limited to ${MAX_CLIENT_FRAME_BYTES} bytes`);
          return;
        }
        if (!parsed.ok) {
          send({ type: 'error', code: 'BAD_REQUEST', message: parsed.message });
          return;
        }
        const frame = parsed.value;
        switch (frame.type) {
          case 'ping': {
            const pong = {
              type: 'pong',
              id: frame.id ?? null,
              ...(frame.time !== undefined ? { time: frame.time } : {}),
              at: new Date(engine.clock.now()).toISOString(),
            };
            const current = credential;
            if (!current?.sid || renewing || !engine.sessionTokenDue(current)) return send(pong);
            renewing = true;
            engine
              .renewSessionToken({ ...current, sid: current.sid })
              .then(
                (fresh) => {
                  credential = fresh;
                  send({ type: 'token', token: fresh.token });
                },
                (err) => log.warn({ err, sessionId, projectId }, 'the token could not be renewed'),
              )
              .finally(() => {
                renewing = false;
                send(pong);
              });
            return;
          }
          case 'input':
            if (role === 'viewer' || role === 'user')
              void engine
                .recordInput(sessionId)
                .catch((err) => log.error({ err, sessionId, projectId }, 'input failed'));
            return;
          case 'message': {
            const { ref } = frame;
            if (role === 'observer') return refuse(ref, 'FORBIDDEN', 'observers cannot send room messages');
            if (ctx.messageRate.take(sender) > 0)
              return refuse(
                ref,
                'RATE_LIMITED',
                `room messages are limited to ${ctx.messageRate.limit.perSecond} a second (bursts of ${ctx.messageRate.limit.burst}) per participant; this one was dropped`,
              );
            if (role !== 'agent' && ctx.roomMessageRate.take(sessionId) > 0)
              return refuse(
                ref,
                'RATE_LIMITED',
                `room messages are limited to ${ctx.roomMessageRate.limit.perSecond} a second (bursts of ${ctx.roomMessageRate.limit.burst}) for a session's participants together; this one was dropped`,
              );
            // an agent token speaks for its worker only while that worker serves the session (a crashed one's
            // does not, once auto-restart has moved the session on); the checks go one after the other, so that
            // the messages are relayed in the order they came
            const relay = () => engine.rooms.relayMessage(sessionId, from, frame.messageType, frame.data);
            let relayed: ReturnType<typeof relay>;
            if (role === 'agent') {
              const checked = agentChecks.then(() => engine.rooms.checkWorker(identity, sessionId, true));
              agentChecks = checked.catch(() => {});
              relayed = checked.then(relay);
            } else relayed = relay();
            relayed.then(
              ({ message, stored }) => acked(ref, message, stored),
              (err) => {
                if (err instanceof UsherError && err.code !== 'INTERNAL')
                  return refuse(ref, err.code, err.message);
                log.error({ err, sessionId, projectId }, 'relay failed');
                refuse(ref, 'INTERNAL', 'the message could not be relayed');
              },
            );
            return;
          }
          default:
            if (player) {
              if (signalling.take()) relay.fromPlayer(player, frame);
              else
                send({
                  type: 'error',
                  code: 'RATE_LIMITED',
                  message: `signalling messages are limited to ${ctx.signallingRate.perSecond} a second (bursts of ${ctx.signallingRate.burst}) per socket; this ${frame.type} was dropped`,
                });
            } else
              send({
                type: 'error',
                code: 'BAD_REQUEST',
                message: `${frame.type} is a signalling message: only the viewer of a stream session sends it`,
              });
        }
      };

      const onClose = (code: number) => {
        unsubscribe();
        if (player) relay.playerClosed(player);
        if (joined) engine.rooms.participantLeft(sessionId, identity);
        if (role === 'viewer' && !ended) {
          void engine
            .viewerDetached(sessionId, code)
            .catch((err) => log.error({ err, sessionId, projectId }, 'viewer detach failed'));
        }
      };
      ctx.keepalive.track(socket);
      socket.off('message', holdFrame);
      socket.off('close', holdClose);
      socket.on('message', onMessage);
      socket.on('close', onClose);
      for (const [raw, isBinary] of early) onMessage(raw, isBinary);
      if (earlyClose !== null) onClose(earlyClose);
    },
  );
}

/**
 * The events held while the snapshot was read, minus the status changes it already shows (those committed
 * before the timeline was read: its newest entries), so a client never sees one state twice. Repeated
 * queue positions are dropped by deliver().
 */
function unseen(held: SessionEvent[], timeline: TransitionRecord[]): SessionEvent[] {
  const changes = held.filter((e) => e.type === 'session.status_changed');
  const same = (e: SessionEvent, t: TransitionRecord | undefined) =>
    e.type === 'session.status_changed' &&
    !!t &&
    e.status === t.to &&
    e.previous === t.from &&
    e.cause === t.cause;
  let k = Math.min(changes.length, timeline.length);
  while (k > 0 && !changes.slice(0, k).every((e, i) => same(e, timeline[timeline.length - k + i]))) k--;
  const shown = new Set<SessionEvent>(changes.slice(0, k));
  return held.filter((e) => !shown.has(e));
}

/** Where a reopened socket's replay starts: `?after=` a message's `at` (and `after_id`, its id), or `now`. */
type ReplayCursor = { afterUs: number; afterId?: string } | 'now';

/** The socket's replay cursor (null: no replay asked for); BAD_PARAMETER when it is not one. */
function replayCursor(query: Record<string, unknown>): ReplayCursor | null {
  const { after, after_id: afterId } = query;
  if (after === undefined) {
    if (afterId !== undefined)
      throw new UsherError('BAD_PARAMETER', 'querystring.after_id needs querystring.after as well');
    return null;
  }
  if (after === 'now' && afterId === undefined) return 'now';
  const afterUs = typeof after === 'string' ? isoToMicros(after) : null;
  if (afterUs === null)
    throw new UsherError(
      'BAD_PARAMETER',
      `querystring.after must be "now" or the \`at\` of the last message received, such as 2026-12-04T16:44:35.123456Z; got "${String(after).slice(0, 60)}"`,
    );
  if (afterId === undefined) return { afterUs };
  if (typeof afterId !== 'string' || afterId === '' || afterId.length > 64)
    throw new UsherError('BAD_PARAMETER', 'querystring.after_id must be the id of the last message received');
  return { afterUs, afterId };
}

/**
 * Sends what the socket missed since its cursor, up to the position it hears live from (the newest
 * MAX_REPLAYED_MESSAGES recorded messages, arrivals and departures among them), then `replayed`. Returns the
 * replayed messages' ids.
 */
async function replayMissed(
  engine: Engine,
  sessionId: string,
  cursor: ReplayCursor,
  position: number,
  send: (frame: SessionEvent | Record<string, unknown>) => void,
): Promise<Set<string>> {
  const ids = new Set<string>();
  let complete = true;
  let count = 0;
  if (cursor !== 'now') {
    const missed = await engine.recorder.missed({
      sessionId,
      ...cursor,
      uptoUs: position,
      limit: MAX_REPLAYED_MESSAGES,
    });
    complete = missed.complete;
    count = missed.items.length;
    for (const item of missed.items) {
      if (item.type === 'message') {
        ids.add(item.message.id);
        send({ type: 'session.message', sessionId, at: item.message.at, message: item.message });
      } else send({ type: `session.${item.type}`, sessionId, at: item.at, participant: item.participant });
    }
  }
  const mark: Replayed = { type: 'replayed', upto: microsToIso(position), count, complete };
  send(mark);
  return ids;
}

/** A participant's frame, checked (JSON, nesting, NUL characters, then its shape); null when it is too large. */
function parseClientFrame(buf: Buffer, isBinary: boolean): ReturnType<typeof clientFrame.parse> | null {
  if (buf.byteLength > MAX_CLIENT_FRAME_BYTES) return null;
  const json = parseJsonText(isBinary ? '' : buf.toString('utf8'));
  return json.ok ? clientFrame.parse(json.value) : json;
}

function participantKind(role: string): 'viewer' | 'user' | 'agent' {
  return role === 'agent' ? 'agent' : role === 'user' ? 'user' : 'viewer';
}
