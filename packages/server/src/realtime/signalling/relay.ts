// The Pixel Streaming signalling relay: it pairs each stream session's viewer with the streamer of the worker
// the session is seated on, and passes offers, answers and ICE candidates between them, never between
// anyone else. It knows the streamers and viewers connected to this server; when the viewer and the streamer
// are on different servers of one database, their signalling crosses through the bus. See docs/signalling.md.
import {
  type PlayerSignal,
  RELAYED_TO_PLAYER,
  RELAYED_TO_STREAMER,
  SIGNALLING_PROTOCOL_VERSION,
  type StreamerSignal,
} from '@usher/protocol';
import { type Bus, localBus, type PlayerRef, type SignalMessage } from '../../cluster/bus.ts';
import { newId } from '../../engine/ids.ts';

/** ICE candidates held per player until the streamer's offer: a negotiation gathers a few dozen at most. */
export const MAX_EARLY_CANDIDATES = 100;

/** One end of a signalling socket. */
export interface SignalPeer {
  send(message: Record<string, unknown>): void;
}

/** A viewer's socket, as the relay tracks it. */
export interface PlayerHandle {
  readonly sessionId: string;
  readonly peer: SignalPeer;
  /** its id on this server, for signals that come back through the bus */
  readonly ref: string;
  /** subscribed to a streamer on another server */
  remote: boolean;
  /** set by `subscribe`: the id the streamer knows this viewer by */
  playerId: string | null;
  /** the worker subscribed to */
  workerId: string | null;
}

interface Streamer {
  peer: SignalPeer;
  /** the session the worker is seated for, from its assignment */
  sessionId: string | null;
  /** subscribed players, each with the candidates the streamer sent before its offer */
  players: Map<
    string,
    { handle: PlayerHandle; offered: boolean; early: Record<string, unknown>[]; overflowed: boolean }
  >;
}

export interface RelayOptions {
  /** the `peerConnectionOptions` of every `config` message (ICE servers, …) */
  peerConnectionOptions?: Record<string, unknown>;
  /** a streamer sent `disconnectPlayer`: end that viewer's session */
  onDisconnectPlayer: (sessionId: string, reason: string) => void;
  log?: { warn(obj: object, msg: string): void };
  /** the other servers of the database, and this server's id among them */
  bus?: Bus;
  serverId?: string;
}

export class SignallingRelay {
  readonly #o: RelayOptions;
  readonly #streamers = new Map<string, Streamer>();
  /** seated sessions whose worker's streamer is on this server: session → worker */
  readonly #seats = new Map<string, string>();
  /** viewers that asked for the streamer list before their session was seated */
  readonly #waiting = new Map<string, Set<PlayerHandle>>();
  /** viewers on this server, by ref */
  readonly #players = new Map<string, PlayerHandle>();
  /** viewers on other servers subscribed to streamers here, by `server/ref` */
  readonly #remotes = new Map<string, PlayerHandle>();
  readonly #bus: Bus;
  readonly #serverId: string;

  constructor(options: RelayOptions) {
    this.#o = options;
    this.#bus = options.bus ?? localBus;
    this.#serverId = options.serverId ?? 'this-server';
    this.#bus.onMessage((m) => {
      if (m.kind === 'signal') this.#fromBus(m.signal);
    });
  }

  #signal(signal: SignalMessage): void {
    if (this.#bus.shared) this.#bus.send({ kind: 'signal', signal });
  }

  /** The first message on every signalling socket. */
  config(): Record<string, unknown> {
    return {
      type: 'config',
      peerConnectionOptions: this.#o.peerConnectionOptions ?? {},
      protocolVersion: SIGNALLING_PROTOCOL_VERSION,
    };
  }

  // ------------------------------------------------------------------ streamers

  /** A streamer identified; one that comes back on a new socket replaces its old one. */
  streamerConnected(workerId: string, peer: SignalPeer): void {
    const old = this.#streamers.get(workerId);
    if (old) this.#streamerLost(old);
    this.#streamers.set(workerId, { peer, sessionId: null, players: new Map() });
  }

  streamerClosed(workerId: string, peer: SignalPeer): void {
    const s = this.#streamers.get(workerId);
    if (s?.peer !== peer) return;
    this.#streamerLost(s);
    if (s.sessionId && this.#seats.get(s.sessionId) === workerId) this.#seats.delete(s.sessionId);
    this.#streamers.delete(workerId);
  }

  /**
   * The streamer's socket went away (or was replaced) while viewers watched it. Their peer connections went with
   * it (a UE app drops its players when its signalling drops), so each one waits for the streamer list again:
   * once the streamer is back and seated for the session, it is sent again, and the viewer subscribes anew
   * (Epic's frontend and the Web SDK both do on a new list). Otherwise the session ends for the lost worker.
   */
  #streamerLost(s: Streamer): void {
    for (const { handle } of [...s.players.values()]) {
      this.#unsubscribe(handle);
      if (s.sessionId && handle.sessionId === s.sessionId) this.#wait(handle);
    }
  }

  /** The worker took this session: a viewer waiting for the streamer list gets it now. */
  seated(workerId: string, sessionId: string): void {
    const s = this.#streamers.get(workerId);
    if (!s) return;
    s.sessionId = sessionId;
    this.#seats.set(sessionId, workerId);
    this.#answerWaiting(sessionId, workerId);
    this.#signal({ op: 'seated', sessionId, workerId });
  }

  #answerWaiting(sessionId: string, workerId: string): void {
    const waiting = this.#waiting.get(sessionId);
    this.#waiting.delete(sessionId);
    for (const handle of waiting ?? []) handle.peer.send({ type: 'streamerList', ids: [workerId] });
  }

  /** The worker's session is over: its viewer is disconnected from the streamer. */
  released(workerId: string, sessionId: string | null): void {
    const s = this.#streamers.get(workerId);
    if (!s) return;
    this.#dropPlayers(s);
    const id = sessionId ?? s.sessionId;
    if (id && this.#seats.get(id) === workerId) {
      this.#seats.delete(id);
      // the session is over: nobody waits for its streamer to come back
      this.#waiting.delete(id);
    }
    s.sessionId = null;
  }

  fromStreamer(workerId: string, m: StreamerSignal): void {
    const s = this.#streamers.get(workerId);
    if (!s) return;
    if (m.type === 'disconnectPlayer') {
      const p = s.players.get(m.playerId);
      if (p)
        this.#o.onDisconnectPlayer(p.handle.sessionId, m.reason ?? 'the streamer disconnected the player');
      return;
    }
    if (!RELAYED_TO_PLAYER.has(m.type) || !('playerId' in m)) return;
    const p = s.players.get(m.playerId);
    if (!p) {
      this.#o.log?.warn(
        { workerId, playerId: m.playerId, type: m.type },
        'signal for a player not subscribed to this streamer dropped',
      );
      return;
    }
    // Epic's frontend drops candidates that arrive before the offer: hold them until it has gone through (a
    // streamer that never offers holds at most MAX_EARLY_CANDIDATES)
    if (m.type === 'iceCandidate' && !p.offered) {
      if (p.early.length < MAX_EARLY_CANDIDATES) p.early.push(m);
      else if (!p.overflowed) {
        p.overflowed = true;
        this.#o.log?.warn(
          { workerId, playerId: m.playerId },
          `more than ${MAX_EARLY_CANDIDATES} ICE candidates before an offer: the rest are dropped`,
        );
      }
      return;
    }
    p.handle.peer.send(m);
    if (m.type === 'offer' && !p.offered) {
      p.offered = true;
      for (const c of p.early) p.handle.peer.send(c);
      p.early = [];
    }
  }

  // ------------------------------------------------------------------ viewers

  playerOpened(sessionId: string, peer: SignalPeer): PlayerHandle {
    const handle: PlayerHandle = {
      sessionId,
      peer,
      ref: newId('pr'),
      remote: false,
      playerId: null,
      workerId: null,
    };
    this.#players.set(handle.ref, handle);
    return handle;
  }

  playerClosed(handle: PlayerHandle): void {
    this.#players.delete(handle.ref);
    this.#stopWaiting(handle);
    this.#unsubscribe(handle);
  }

  /** The viewer gets the streamer list once its session is seated on a streamer (here or, through `seated`, elsewhere). */
  #wait(handle: PlayerHandle): void {
    const set = this.#waiting.get(handle.sessionId) ?? new Set();
    set.add(handle);
    this.#waiting.set(handle.sessionId, set);
  }

  #stopWaiting(handle: PlayerHandle): void {
    const set = this.#waiting.get(handle.sessionId);
    if (set?.delete(handle) && set.size === 0) this.#waiting.delete(handle.sessionId);
  }

  fromPlayer(handle: PlayerHandle, m: PlayerSignal): void {
    switch (m.type) {
      case 'listStreamers': {
        const workerId = this.#seats.get(handle.sessionId);
        if (workerId) handle.peer.send({ type: 'streamerList', ids: [workerId] });
        else if (!this.#waiting.get(handle.sessionId)?.has(handle)) {
          this.#wait(handle);
          // the streamer may be on another server (asked once per wait: a viewer repeating itself sends nothing)
          this.#signal({ op: 'list', sessionId: handle.sessionId });
        }
        return;
      }
      case 'subscribe':
        this.#subscribe(handle, m.streamerId);
        return;
      case 'unsubscribe':
        this.#unsubscribe(handle);
        return;
      case 'stats':
        return;
    }
    if (!RELAYED_TO_STREAMER.has(m.type)) return;
    if (handle.remote && handle.workerId) {
      this.#signal({ op: 'toStreamer', workerId: handle.workerId, from: this.#refOf(handle), m });
      return;
    }
    const s = handle.workerId ? this.#streamers.get(handle.workerId) : undefined;
    if (!s || !handle.playerId) {
      handle.peer.send({
        type: 'error',
        code: 'CONFLICT',
        message: `${m.type} needs a subscription: send listStreamers, then subscribe to the id it returns`,
      });
      return;
    }
    s.peer.send({ ...m, playerId: handle.playerId });
  }

  #subscribe(handle: PlayerHandle, streamerId: string): void {
    const workerId = this.#seats.get(handle.sessionId);
    if (!workerId && !this.#streamers.has(streamerId) && this.#bus.shared && !this.#isRemote(handle)) {
      // not a streamer of this server: the server it is on answers
      this.#unsubscribe(handle);
      handle.remote = true;
      handle.workerId = streamerId;
      this.#signal({
        op: 'subscribe',
        workerId: streamerId,
        sessionId: handle.sessionId,
        from: this.#refOf(handle),
      });
      return;
    }
    const s = workerId ? this.#streamers.get(workerId) : undefined;
    if (!s || workerId !== streamerId) {
      handle.peer.send({
        type: 'subscribeFailed',
        message: workerId
          ? `streamer "${streamerId}" is not the one this session is seated on ("${workerId}")`
          : 'this session is not seated on a worker yet; send listStreamers and wait for the streamerList',
      });
      return;
    }
    this.#unsubscribe(handle);
    // one stream per session: the newest socket of its viewer (a reloaded page, another tab) takes it over
    for (const other of [...s.players.values()]) {
      if (other.handle.sessionId !== handle.sessionId) continue;
      this.#unsubscribe(other.handle);
      other.handle.peer.send({
        type: 'error',
        code: 'CONFLICT',
        message: 'another connection of this session subscribed to its streamer: this one no longer plays',
      });
    }
    const playerId = newId('pl');
    handle.playerId = playerId;
    handle.workerId = streamerId;
    s.players.set(playerId, { handle, offered: false, early: [], overflowed: false });
    // sessionId is Usher's addition: stock streamers ignore it, Usher-aware ones may show or log it
    s.peer.send({
      type: 'playerConnected',
      playerId,
      dataChannel: true,
      sfu: false,
      sendOffer: true,
      sessionId: handle.sessionId,
    });
  }

  #unsubscribe(handle: PlayerHandle): void {
    const { playerId, workerId } = handle;
    handle.playerId = null;
    handle.workerId = null;
    if (handle.remote) {
      handle.remote = false;
      if (workerId) this.#signal({ op: 'unsubscribe', workerId, from: this.#refOf(handle) });
      return;
    }
    if (!playerId || !workerId) return;
    const s = this.#streamers.get(workerId);
    if (s?.players.delete(playerId)) s.peer.send({ type: 'playerDisconnected', playerId });
  }

  #dropPlayers(s: Streamer): void {
    for (const { handle } of [...s.players.values()]) this.#unsubscribe(handle);
  }

  // ------------------------------------------------------------------ across servers

  #refOf(handle: PlayerHandle): PlayerRef {
    return { server: this.#serverId, ref: handle.ref };
  }

  #isRemote(handle: PlayerHandle): boolean {
    return !this.#players.has(handle.ref);
  }

  #fromBus(signal: SignalMessage): void {
    switch (signal.op) {
      case 'seated':
        this.#answerWaiting(signal.sessionId, signal.workerId);
        return;
      case 'list': {
        const workerId = this.#seats.get(signal.sessionId);
        if (workerId) this.#signal({ op: 'seated', sessionId: signal.sessionId, workerId });
        return;
      }
      case 'subscribe': {
        if (!this.#streamers.has(signal.workerId)) return;
        const key = `${signal.from.server}/${signal.from.ref}`;
        const previous = this.#remotes.get(key);
        if (previous) {
          this.#unsubscribe(previous);
          this.#stopWaiting(previous);
        }
        const from = signal.from;
        // a stand-in for the viewer: what the streamer sends it goes back through the bus
        const handle: PlayerHandle = {
          sessionId: signal.sessionId,
          peer: { send: (m) => this.#signal({ op: 'toPlayer', to: from, m }) },
          ref: from.ref,
          remote: false,
          playerId: null,
          workerId: null,
        };
        this.#subscribe(handle, signal.workerId);
        if (handle.playerId) this.#remotes.set(key, handle);
        return;
      }
      case 'toStreamer': {
        const handle = this.#remotes.get(`${signal.from.server}/${signal.from.ref}`);
        const s = handle?.workerId ? this.#streamers.get(handle.workerId) : undefined;
        if (handle?.playerId && s) s.peer.send({ ...signal.m, playerId: handle.playerId });
        return;
      }
      case 'unsubscribe': {
        const key = `${signal.from.server}/${signal.from.ref}`;
        const handle = this.#remotes.get(key);
        this.#remotes.delete(key);
        if (handle) {
          this.#unsubscribe(handle);
          this.#stopWaiting(handle);
        }
        return;
      }
      case 'toPlayer': {
        if (signal.to.server !== this.#serverId) return;
        const handle = this.#players.get(signal.to.ref);
        if (!handle) return;
        if (signal.m.type === 'subscribeFailed') {
          handle.remote = false;
          handle.workerId = null;
        }
        handle.peer.send(signal.m);
        return;
      }
    }
  }
}
