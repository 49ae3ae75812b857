// Session rooms on this server: who is in each room (here, and on other servers as their events tell), the room
// messages relayed to every participant and to the session's worker and recorded when their type is, and the
// frames on their way to each session's worker.
import {
  type Envelope,
  type Participant,
  SERVER_MESSAGE_TYPES,
  type ServerToWorkerFrame,
  type SessionEvent,
  UsherError,
} from '@usher/protocol';
import type { StoredMessage } from '../storage/messages.ts';
import type { Store } from '../storage/store.ts';
import type { Logger } from '../util/logger.ts';
import type { Clock } from './clock.ts';
import type { EventHub } from './event-hub.ts';
import { Participants } from './participants.ts';
import { Recorder } from './recorder.ts';

/** A relayed room message, and whether it is stored: true once durable, false when its type is not recorded. */
export interface RelayedMessage {
  message: Envelope;
  stored: Promise<boolean>;
}

/** How long a session's worker, as read, serves its room messages (real time; see Rooms.#sessionWorkers). */
const SESSION_WORKER_TTL_MS = 1_000;
/** Sessions whose worker is kept at most (see Rooms.#sessionWorkers). */
const MAX_SESSION_WORKERS = 50_000;

export interface RoomsOptions {
  store: Store;
  hub: EventHub;
  /** stamps messages and presence */
  clock: Clock;
  /** real time: how old a session's worker as read may be */
  livenessClock: Clock;
  recorder: Recorder;
  log: Logger;
  /** runs work in the background, tracked so that shutdown waits for it */
  track(task: () => void | Promise<void>): void;
  /** a frame for a worker, wherever its socket is */
  sendWorker(workerId: string, frame: ServerToWorkerFrame): void;
  /** a room message went through the session: its idle deadline moves */
  activity(sessionId: string): void;
  /** this server's id, in its presence news */
  serverId: string;
  /** tells the other servers who is in a room through this one (nothing when this server is alone) */
  sendPresence(news: PresenceNews): void;
}

/**
 * What a server tells the others of a participant in a session's room: `here`, its first socket is on that
 * server; `gone`, its last left; `drop`, LiveKit said it left (the webhook may reach any server): the server that
 * holds it lets it go and tells the room.
 */
export interface PresenceNews {
  sessionId: string;
  participant: Participant;
  serverId: string;
  change: 'here' | 'gone' | 'drop';
}

/** A participant in a room through other servers, and which. */
interface ElsewhereEntry {
  participant: Participant;
  servers: Set<string>;
}

export class Rooms {
  readonly #o: RoomsOptions;
  readonly #participants = new Participants();
  /** per session and identity, the other servers that hold the participant, as their presence news tells */
  readonly #elsewhere = new Map<string, Map<string, ElsewhereEntry>>();
  /** per session, frames on their way to its worker (#toSessionWorker) */
  readonly #outboxes = new Map<string, { frame: ServerToWorkerFrame; needsStarted: boolean }[]>();
  /**
   * Per session, its worker as last read, so that room messages reach it without a read each. Dropped when the
   * session's state changes (the only time its worker changes), here or on another server, and read again
   * after SESSION_WORKER_TTL_MS in case another server's change was not heard.
   */
  readonly #sessionWorkers = new Map<string, { workerId: string | null; readAt: number }>();
  /** moves at every drop: a read that started before one is not kept */
  #sessionWorkersEpoch = 0;

  constructor(options: RoomsOptions) {
    this.#o = options;
  }

  /**
   * A room message: every participant's socket gets it as `session.message`, and the session's worker gets it
   * unless the worker sent it. A message of a recorded type is stored with the next batch. Any message counts
   * as activity for the idle timeout.
   */
  async relayMessage(
    sessionId: string,
    from: Envelope['from'],
    type: string,
    data: unknown,
    options: { toWorker?: boolean } = {},
  ): Promise<RelayedMessage> {
    // a transcript's record of who came and went is the server's alone
    if (SERVER_MESSAGE_TYPES.includes(type))
      throw new UsherError(
        'BAD_REQUEST',
        `"${type}" messages are written by the server when someone joins or leaves; a room message cannot take that type`,
      );
    const entry = this.#o.recorder.envelope(this.#o.clock.now(), { sessionId, type, from, data });
    const { message } = entry;
    // relayed first: the sockets' writes of this turn then leave before the recording batch is written
    this.#o.hub.publish({ type: 'session.message', sessionId, at: message.at, message });
    if (from.kind !== 'agent' && options.toWorker !== false)
      this.#toSessionWorker(sessionId, { type: 'message', message }, false);
    const stored = this.#keep(entry);
    // the idle deadline moves in the background: the sender's ack does not wait for it
    this.#o.activity(sessionId);
    return { message, stored };
  }

  /** Stores a participant's arrival or departure in the transcript (it reaches sockets as its own event). */
  #recordPresence(sessionId: string, type: 'participant_joined' | 'participant_left', p: Participant): void {
    const from = { identity: p.identity, kind: p.kind };
    void this.#keep(
      this.#o.recorder.envelope(this.#o.clock.now(), { sessionId, type, from, data: { participant: p } }),
    );
  }

  /**
   * Records the message if its type is recorded: true once it is durable, false when it is not kept. A failed
   * write is logged, and reported to whoever waits for it (nobody waiting must not crash the server).
   */
  #keep({ message, atUs }: StoredMessage): Promise<boolean> {
    if (!Recorder.records(message.type)) return Promise.resolve(false);
    const stored = this.#o.recorder.record(message, atUs).then(() => true);
    stored.catch((err) =>
      this.#o.log.error({ err, sessionId: message.sessionId, messageId: message.id }, 'recording failed'),
    );
    return stored;
  }

  /** Who is in the session's room now, on this server and (as their events tell) on the others. */
  participants(sessionId: string): Participant[] {
    const here = this.#participants.list(sessionId);
    const elsewhere = this.#elsewhere.get(sessionId);
    if (!elsewhere) return here;
    const known = new Set(here.map((p) => p.identity));
    const there = [...elsewhere.values()].map((e) => e.participant);
    return [...here, ...there.filter((p) => !known.has(p.identity))];
  }

  /**
   * Presence news from another server. A participant counts as in the room while any server holds it, so a
   * participant whose connection moved to another server (a reconnect through a load balancer, before the old
   * socket was found dead) neither arrives twice nor leaves while it is there.
   */
  presence(news: PresenceNews): void {
    const { sessionId, participant, serverId } = news;
    const { identity } = participant;
    if (news.change === 'drop') {
      const dropped = this.#participants.drop(sessionId, identity);
      if (!dropped) return;
      this.#o.sendPresence({ sessionId, participant: dropped, serverId: this.#o.serverId, change: 'gone' });
      this.#left(sessionId, dropped);
      return;
    }
    const room = this.#elsewhere.get(sessionId) ?? new Map<string, ElsewhereEntry>();
    if (news.change === 'here') {
      this.#elsewhere.set(sessionId, room);
      const entry = room.get(identity) ?? { participant, servers: new Set<string>() };
      entry.servers.add(serverId);
      room.set(identity, entry);
      return;
    }
    const entry = room.get(identity);
    entry?.servers.delete(serverId);
    if (entry?.servers.size === 0) room.delete(identity);
    if (room.size === 0) this.#elsewhere.delete(sessionId);
  }

  /**
   * Session events from other servers. A departure they announce is one they took for the last: if the
   * participant is here after all (its news had not reached them), it is announced again.
   */
  presenceElsewhere(e: SessionEvent): void {
    if (e.type === 'session.participant_left') {
      const { identity } = e.participant;
      this.#elsewhere.get(e.sessionId)?.delete(identity);
      const here = this.#participants.list(e.sessionId).find((p) => p.identity === identity);
      if (here) {
        this.#o.sendPresence({
          sessionId: e.sessionId,
          participant: here,
          serverId: this.#o.serverId,
          change: 'here',
        });
        this.#joined(e.sessionId, here);
      }
    }
  }

  /**
   * The servers that run now: participants held only by servers that died are let go. The server that
   * claimed a dead one announces their departures (serverDied); the others only forget them.
   */
  serversAlive(alive: ReadonlySet<string>): void {
    for (const [sessionId, room] of this.#elsewhere) {
      for (const [identity, entry] of room) {
        for (const server of entry.servers) if (!alive.has(server)) entry.servers.delete(server);
        if (entry.servers.size === 0) room.delete(identity);
      }
      if (room.size === 0) this.#elsewhere.delete(sessionId);
    }
  }

  /** This server claimed a dead one: who was in a room only through it has left. */
  serverDied(dead: string): void {
    for (const [sessionId, room] of [...this.#elsewhere]) {
      for (const [identity, entry] of [...room]) {
        if (!entry.servers.delete(dead) || entry.servers.size > 0) continue;
        room.delete(identity);
        if (!this.#participants.list(sessionId).some((p) => p.identity === identity))
          this.#left(sessionId, entry.participant);
      }
      if (room.size === 0) this.#elsewhere.delete(sessionId);
    }
  }

  /** The servers that hold the participant (this one included), as this server knows. */
  holders(sessionId: string, identity: string): string[] {
    const here = this.#participants.list(sessionId).some((p) => p.identity === identity);
    const there = this.#elsewhere.get(sessionId)?.get(identity)?.servers ?? [];
    return [...(here ? [this.#o.serverId] : []), ...there].sort();
  }

  /** Whether another server holds the participant. */
  #heldElsewhere(sessionId: string, identity: string): boolean {
    return (this.#elsewhere.get(sessionId)?.get(identity)?.servers.size ?? 0) > 0;
  }

  /**
   * A participant's socket joined the room. Its first one here tells the other servers; it is announced to the
   * room and the worker unless another server holds it already.
   */
  participantJoined(sessionId: string, participant: Participant): void {
    if (!this.#participants.join(sessionId, participant)) return;
    this.#o.sendPresence({ sessionId, participant, serverId: this.#o.serverId, change: 'here' });
    if (!this.#heldElsewhere(sessionId, participant.identity)) this.#joined(sessionId, participant);
  }

  /**
   * A participant's socket left. Its last one here tells the other servers; its departure is announced unless
   * another server still holds it. `anywhere` (LiveKit's webhooks, which any server may receive): a participant
   * held by another server is let go there.
   */
  participantLeft(sessionId: string, identity: string, options: { anywhere?: boolean } = {}): void {
    const participant = this.#participants.leave(sessionId, identity);
    if (!participant) {
      const there = options.anywhere ? this.#elsewhere.get(sessionId)?.get(identity) : undefined;
      if (there)
        this.#o.sendPresence({
          sessionId,
          participant: there.participant,
          serverId: this.#o.serverId,
          change: 'drop',
        });
      return;
    }
    this.#o.sendPresence({ sessionId, participant, serverId: this.#o.serverId, change: 'gone' });
    if (!this.#heldElsewhere(sessionId, identity)) this.#left(sessionId, participant);
  }

  #joined(sessionId: string, participant: Participant): void {
    this.#recordPresence(sessionId, 'participant_joined', participant);
    const at = new Date(this.#o.clock.now()).toISOString();
    this.#o.hub.publish({ type: 'session.participant_joined', sessionId, at, participant });
    if (participant.kind !== 'agent')
      this.#toSessionWorker(sessionId, { type: 'participant_joined', sessionId, participant });
  }

  #left(sessionId: string, participant: Participant): void {
    this.#announceLeft(sessionId, participant);
    if (participant.kind !== 'agent')
      this.#toSessionWorker(sessionId, { type: 'participant_left', sessionId, participant });
  }

  #announceLeft(sessionId: string, participant: Participant): void {
    this.#recordPresence(sessionId, 'participant_left', participant);
    const at = new Date(this.#o.clock.now()).toISOString();
    this.#o.hub.publish({ type: 'session.participant_left', sessionId, at, participant });
  }

  /**
   * The session ended: everyone still in its room on this server leaves it now, not when their sockets finish
   * closing, so the transcript holds every departure by the time anyone can read the ended session.
   */
  ended(sessionId: string): void {
    const elsewhere = this.#elsewhere.get(sessionId);
    this.#elsewhere.delete(sessionId);
    // one held by several servers is announced by one of them: the first by id
    const self = this.#o.serverId;
    for (const participant of this.#participants.clear(sessionId)) {
      const others = elsewhere?.get(participant.identity)?.servers ?? new Set<string>();
      if ([...others].every((server) => self < server)) this.#announceLeft(sessionId, participant);
    }
  }

  /**
   * Frames for a session's worker, kept in the order they were sent: one read of the session serves every
   * frame queued while it runs. Presence frames wait for the worker to have started the session; room messages
   * go to a worker as soon as it holds the seat.
   */
  #toSessionWorker(sessionId: string, frame: ServerToWorkerFrame, needsStarted = true): void {
    const queued = this.#outboxes.get(sessionId);
    if (queued) {
      queued.push({ frame, needsStarted });
      return;
    }
    // a frame that does not wait for the worker to start (a room message) goes to the worker last read
    if (!needsStarted) {
      const known = this.#freshSessionWorker(sessionId);
      if (known) {
        if (known.workerId) this.#o.sendWorker(known.workerId, frame);
        return;
      }
    }
    const box = [{ frame, needsStarted }];
    this.#outboxes.set(sessionId, box);
    this.#o.track(async () => {
      try {
        while (box.length > 0) {
          const epoch = this.#sessionWorkersEpoch;
          const readAt = this.#o.livenessClock.now();
          const s = await this.#o.store.read.getSession(sessionId);
          const workerId = s?.workerId ?? null;
          if (s && s.state !== 'ended') this.#rememberSessionWorker(sessionId, workerId, epoch, readAt);
          else this.#sessionWorkers.delete(sessionId);
          for (const f of box.splice(0))
            if (workerId && (s?.workerStarted || !f.needsStarted)) this.#o.sendWorker(workerId, f.frame);
        }
      } finally {
        this.#outboxes.delete(sessionId);
      }
    });
  }

  /**
   * Checks that the worker serves the session (else FORBIDDEN), and keeps it as the session's worker. With
   * `cached`, a worker read less than SESSION_WORKER_TTL_MS ago needs no read.
   */
  async checkWorker(workerId: string, sessionId: string, cached = false): Promise<void> {
    if (cached && this.#freshSessionWorker(sessionId)?.workerId === workerId) return;
    const epoch = this.#sessionWorkersEpoch;
    const readAt = this.#o.livenessClock.now();
    const w = await this.#o.store.read.getWorker(workerId);
    if (!w || w.sessionId !== sessionId)
      throw new UsherError('FORBIDDEN', `worker "${workerId}" does not serve session "${sessionId}"`);
    this.#rememberSessionWorker(sessionId, workerId, epoch, readAt);
  }

  /** The session's state changed (here or on another server): its worker is read again when next needed. */
  forgetWorker(sessionId: string): void {
    this.#sessionWorkersEpoch++;
    this.#sessionWorkers.delete(sessionId);
  }

  /** Keeps a session's worker as read, unless the session's state changed since the read started. */
  #rememberSessionWorker(sessionId: string, workerId: string | null, epoch: number, readAt: number): void {
    if (epoch !== this.#sessionWorkersEpoch) return;
    // only a cache: past its bound it starts again (a stopping worker may go on naming an ended session)
    if (this.#sessionWorkers.size >= MAX_SESSION_WORKERS) this.#sessionWorkers.clear();
    this.#sessionWorkers.set(sessionId, { workerId, readAt });
  }

  /** The session's worker as last read, if that was not too long ago. */
  #freshSessionWorker(sessionId: string): { workerId: string | null } | undefined {
    const known = this.#sessionWorkers.get(sessionId);
    return known && this.#o.livenessClock.now() - known.readAt < SESSION_WORKER_TTL_MS ? known : undefined;
  }
}
