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
import type { PresenceNote } from '../cluster/bus.ts';
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
  /** this server, as its presence notes name it */
  serverId: string;
  /** sends a presence note to the other servers (nothing when this server is alone) */
  notify(note: PresenceNote): void;
  /**
   * This server is stopping and another will adopt it: the sockets it closes now are not departures (their
   * participants reconnect elsewhere); the adopting server announces those who do not come back.
   */
  handingOver(): boolean;
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
}

export class Rooms {
  readonly #o: RoomsOptions;
  readonly #participants = new Participants();
  /** the agents announced in each session's room on this server, the most recent MAX_AGENTS_SEEN (agentSpoke) */
  readonly #agentsSeen = new Map<string, true>();
  /** per session, participants with sockets on other servers, and which servers (their presence notes) */
  readonly #elsewhere = new Map<string, Map<string, { participant: Participant; servers: Set<string> }>>();
  /**
   * Departures this server did not announce because another server held the participant, by session and
   * identity, with the servers heard to have done the same since (presenceNote): the most recent MAX_UNANNOUNCED
   */
  readonly #unannounced = new Map<string, Set<string>>();
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

  /** Who is in the session's room now, on this server and (as their presence notes tell) on the others. */
  participants(sessionId: string): Participant[] {
    const here = this.#participants.list(sessionId);
    const elsewhere = this.#elsewhere.get(sessionId);
    if (!elsewhere) return here;
    const known = new Set(here.map((p) => p.identity));
    return [
      ...here,
      ...[...elsewhere.values()].map((e) => e.participant).filter((p) => !known.has(p.identity)),
    ];
  }

  /** The servers that hold a socket of the participant in the session's room, as this server knows (this one too). */
  holders(sessionId: string, identity: string): string[] {
    const others = [...(this.#elsewhere.get(sessionId)?.get(identity)?.servers ?? [])];
    return this.#participants.has(sessionId, identity) ? [this.#o.serverId, ...others] : others;
  }

  #heldElsewhere(sessionId: string, identity: string): boolean {
    return (this.#elsewhere.get(sessionId)?.get(identity)?.servers.size ?? 0) > 0;
  }

  /**
   * Another server's presence note: a participant's first socket in a room opened there, or its last closed.
   * A participant is in the room while any server holds a socket of theirs: a server announces an arrival or a
   * departure only when no other holds one, so a participant whose connection moves to another server (a
   * reconnect through a load balancer) is not seen to leave. Should two servers' last sockets close at once, each
   * believing the other holds one, neither announced the departure: of the two, the one whose id sorts first does
   * once it hears the other's note. A note `everywhere` (see leftEverywhere) drops the participant here too.
   */
  presenceNote(n: PresenceNote): void {
    if (n.serverId === this.#o.serverId) return;
    const { sessionId, participant } = n;
    if (n.everywhere) {
      this.#participants.drop(sessionId, participant.identity);
      this.#dropElsewhere(sessionId, participant.identity, null);
      return;
    }
    let room = this.#elsewhere.get(sessionId);
    const key = roomKey(sessionId, participant.identity);
    if (n.present) {
      // back, or held there all along: no departure of theirs is pending
      this.#unannounced.delete(key);
      if (!room) {
        room = new Map();
        this.#elsewhere.set(sessionId, room);
      }
      const entry = room.get(participant.identity) ?? { participant, servers: new Set<string>() };
      entry.servers.add(n.serverId);
      room.set(participant.identity, entry);
      return;
    }
    this.#dropElsewhere(sessionId, participant.identity, n.serverId);
    // last sockets closed at once on several servers, each taking another for a holder: once nobody holds the
    // participant, of those that held back the one whose id sorts first announces the departure (a server that
    // took no part only forgets)
    const crossed = this.#unannounced.get(key);
    if (!crossed) return;
    if (n.announced) {
      this.#unannounced.delete(key);
      return;
    }
    crossed.add(n.serverId);
    if (this.holders(sessionId, participant.identity).length > 0) return;
    this.#unannounced.delete(key);
    if ([...crossed].every((id) => this.#o.serverId < id)) this.#announceLeft(sessionId, participant);
  }

  #dropElsewhere(sessionId: string, identity: string, serverId: string | null): void {
    const room = this.#elsewhere.get(sessionId);
    const entry = room?.get(identity);
    if (!room || !entry) return;
    if (serverId === null) entry.servers.clear();
    else entry.servers.delete(serverId);
    if (entry.servers.size === 0) room.delete(identity);
    if (room.size === 0) this.#elsewhere.delete(sessionId);
  }

  /**
   * A session event another server published. The room was told that a participant left: nobody holds them as far
   * as that server knew, and if this one does (their sockets moved here as that one's last closed), it tells the
   * room they are here after all. (Who holds whom is the notes' business: the sender's came first.)
   */
  presenceElsewhere(e: SessionEvent): void {
    if (e.type === 'session.participant_left' && e.participant.kind !== 'agent') {
      const here = this.#participants.get(e.sessionId, e.participant.identity);
      if (here) this.#announceJoined(e.sessionId, here);
    }
    // an ended session's room is forgotten by ended(), which still needs to know who holds whom
  }

  /**
   * This server was taken for dead and adopted, and the adopting server announced the departure of everyone it
   * held: those still connected here are announced again, and the other servers told that this one holds them.
   */
  reclaimed(): void {
    this.#tellHeld();
    for (const [sessionId, participant] of this.#participants.all())
      if (!this.#heldElsewhere(sessionId, participant.identity)) this.#announceJoined(sessionId, participant);
  }

  /**
   * A server started (its `hello`): it holds nobody yet, whatever an earlier run under its id held, and it learns
   * from this one whom this one holds.
   */
  serverStarted(serverId: string): void {
    this.serverGone(serverId, false);
    this.#tellHeld();
  }

  /** A presence note to the other servers: see presenceNote. */
  #note(
    sessionId: string,
    participant: Participant,
    present: boolean,
    announced: boolean,
    everywhere = false,
  ): void {
    this.#o.notify({
      kind: 'presence',
      serverId: this.#o.serverId,
      sessionId,
      participant,
      present,
      announced,
      ...(everywhere ? { everywhere } : {}),
    });
  }

  /** Presence notes for everyone this server holds, to the others. */
  #tellHeld(): void {
    for (const [sessionId, participant] of this.#participants.all())
      this.#note(sessionId, participant, true, true);
  }

  /**
   * A server is gone (it died, or stopped and was adopted): it holds nobody any more. The participants only it
   * held have left; the server that adopted it (`announce`) says so, the others only forget.
   */
  serverGone(serverId: string, announce: boolean): void {
    for (const [sessionId, room] of [...this.#elsewhere]) {
      for (const [identity, entry] of [...room]) {
        if (!entry.servers.has(serverId)) continue;
        this.#dropElsewhere(sessionId, identity, serverId);
        // an agent is not gone with a server: its worker reconnects elsewhere, or its loss is a crash (leftEverywhere)
        if (announce && entry.participant.kind !== 'agent' && this.holders(sessionId, identity).length === 0)
          this.#announceLeft(sessionId, entry.participant);
      }
    }
  }

  /**
   * A participant's socket joined the room; the first one on this server announces the participant to the room
   * and worker, unless another server holds them already.
   */
  participantJoined(sessionId: string, participant: Participant): void {
    if (!this.#participants.join(sessionId, participant)) return;
    const elsewhere = this.#heldElsewhere(sessionId, participant.identity);
    this.#note(sessionId, participant, true, !elsewhere);
    if (!elsewhere) this.#announceJoined(sessionId, participant);
  }

  #announceJoined(sessionId: string, participant: Participant): void {
    this.#recordPresence(sessionId, 'participant_joined', participant);
    const at = new Date(this.#o.clock.now()).toISOString();
    this.#o.hub.publish({ type: 'session.participant_joined', sessionId, at, participant });
    if (participant.kind !== 'agent')
      this.#toSessionWorker(sessionId, { type: 'participant_joined', sessionId, participant });
  }

  /**
   * The session's agent is in its room (it said session_started): once, however often this is said (it holds
   * no socket of the room, and its one departure, when its session ends or it crashes, must be announced).
   */
  agentPresent(sessionId: string, workerId: string): void {
    if (this.#participants.has(sessionId, workerId)) return;
    this.#agentsSeen.delete(roomKey(sessionId, workerId));
    this.#agentsSeen.set(roomKey(sessionId, workerId), true);
    if (this.#agentsSeen.size > MAX_AGENTS_SEEN)
      this.#agentsSeen.delete(this.#agentsSeen.keys().next().value!);
    this.participantJoined(sessionId, { identity: workerId, kind: 'agent' });
  }

  /**
   * The session's agent spoke: it is in the room if it was never announced there. The SDK says session_started
   * once onConnect is done, so a greeting sent from onConnect comes first, and would otherwise be recorded
   * before the agent's arrival. An agent that has come and gone is not brought back by a late message (one
   * still on the wire as its session ended).
   */
  agentSpoke(sessionId: string, workerId: string): void {
    if (!this.#agentsSeen.has(roomKey(sessionId, workerId))) this.agentPresent(sessionId, workerId);
  }

  /**
   * A participant whose presence is not a socket of Usher's left: the session's agent (its session is ending, or
   * it crashed), or a LiveKit participant (LiveKit's webhook said so). Announced by the server that hears of it,
   * wherever the participant was announced, and forgotten by every server.
   */
  leftEverywhere(sessionId: string, identity: string): void {
    const participant =
      this.#participants.drop(sessionId, identity) ??
      this.#elsewhere.get(sessionId)?.get(identity)?.participant ??
      null;
    if (!participant) return;
    this.#dropElsewhere(sessionId, identity, null);
    this.#note(sessionId, participant, false, true, true);
    this.#announceLeft(sessionId, participant);
  }

  /**
   * A participant's socket left; the last one on this server announces that the participant left, unless
   * another server holds a socket of theirs.
   */
  participantLeft(sessionId: string, identity: string): void {
    const participant = this.#participants.leave(sessionId, identity);
    if (!participant || this.#o.handingOver()) return;
    const elsewhere = this.#heldElsewhere(sessionId, identity);
    if (elsewhere) {
      const key = roomKey(sessionId, identity);
      this.#unannounced.set(key, new Set());
      if (this.#unannounced.size > MAX_UNANNOUNCED)
        this.#unannounced.delete(this.#unannounced.keys().next().value!);
    }
    this.#note(sessionId, participant, false, !elsewhere);
    if (!elsewhere) this.#announceLeft(sessionId, participant);
  }

  /**
   * Tells the room (its sockets, its transcript) and, unless the session ended (`toWorker` false), its worker that
   * the participant left.
   */
  #announceLeft(sessionId: string, participant: Participant, toWorker = true): void {
    this.#recordPresence(sessionId, 'participant_left', participant);
    const at = new Date(this.#o.clock.now()).toISOString();
    this.#o.hub.publish({ type: 'session.participant_left', sessionId, at, participant });
    if (toWorker && participant.kind !== 'agent')
      this.#toSessionWorker(sessionId, { type: 'participant_left', sessionId, participant });
  }

  /**
   * The session ended: everyone still in its room on this server leaves it now, not when their sockets finish
   * closing, so the transcript holds every departure by the time anyone can read the ended session.
   */
  ended(sessionId: string): void {
    for (const participant of this.#participants.clear(sessionId)) {
      this.#unannounced.delete(roomKey(sessionId, participant.identity));
      // one held on several servers: the one whose id sorts first says it
      const others = this.#elsewhere.get(sessionId)?.get(participant.identity)?.servers ?? new Set<string>();
      if ([...others].every((id) => this.#o.serverId < id)) this.#announceLeft(sessionId, participant, false);
    }
    this.#elsewhere.delete(sessionId);
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
    // a stopped worker keeps naming its last session: it serves it no more
    if (!w || w.sessionId !== sessionId || w.state === 'stopped')
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

/** How many announced agents Rooms remembers, to tell a late message of one that left from a first greeting. */
const MAX_AGENTS_SEEN = 10_000;

/** How many unannounced departures Rooms remembers (presenceNote): crossings are rare and settle at once. */
const MAX_UNANNOUNCED = 10_000;

/** A participant's key in maps across sessions: the session and the identity. */
function roomKey(sessionId: string, identity: string): string {
  return `${sessionId}\u0000${identity}`;
}
