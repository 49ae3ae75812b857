// The Pixel Streaming signalling relay: it pairs each stream session's viewer with the streamer of the worker
// the session is seated on, and passes offers, answers and ICE candidates between them, never between
// anyone else. It knows the streamers and viewers connected to this server. See docs/signalling.md.
import {
  type PlayerSignal,
  RELAYED_TO_PLAYER,
  RELAYED_TO_STREAMER,
  SIGNALLING_PROTOCOL_VERSION,
  type StreamerSignal,
} from '@usher/protocol';
import { newId } from '../../engine/ids.ts';

/** One end of a signalling socket. */
export interface SignalPeer {
  send(message: Record<string, unknown>): void;
}

/** A viewer's socket, as the relay tracks it. */
export interface PlayerHandle {
  readonly sessionId: string;
  readonly peer: SignalPeer;
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
  players: Map<string, { handle: PlayerHandle; offered: boolean; early: Record<string, unknown>[] }>;
}

export interface RelayOptions {
  /** the `peerConnectionOptions` of every `config` message (ICE servers, …) */
  peerConnectionOptions?: Record<string, unknown>;
  /** a streamer sent `disconnectPlayer`: end that viewer's session */
  onDisconnectPlayer: (sessionId: string, reason: string) => void;
  log?: { warn(obj: object, msg: string): void };
}

export class SignallingRelay {
  readonly #o: RelayOptions;
  readonly #streamers = new Map<string, Streamer>();
  /** seated sessions whose worker's streamer is on this server: session → worker */
  readonly #seats = new Map<string, string>();
  /** viewers that asked for the streamer list before their session was seated */
  readonly #waiting = new Map<string, Set<PlayerHandle>>();

  constructor(options: RelayOptions) {
    this.#o = options;
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

  streamerConnected(workerId: string, peer: SignalPeer): void {
    const old = this.#streamers.get(workerId);
    if (old) this.#dropPlayers(old);
    this.#streamers.set(workerId, { peer, sessionId: null, players: new Map() });
  }

  streamerClosed(workerId: string, peer: SignalPeer): void {
    const s = this.#streamers.get(workerId);
    if (s?.peer !== peer) return;
    this.#dropPlayers(s);
    if (s.sessionId && this.#seats.get(s.sessionId) === workerId) this.#seats.delete(s.sessionId);
    this.#streamers.delete(workerId);
  }

  /** The worker took this session: a viewer waiting for the streamer list gets it now. */
  seated(workerId: string, sessionId: string): void {
    const s = this.#streamers.get(workerId);
    if (!s) return;
    s.sessionId = sessionId;
    this.#seats.set(sessionId, workerId);
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
    if (id && this.#seats.get(id) === workerId) this.#seats.delete(id);
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
    // Epic's frontend drops candidates that arrive before the offer: hold them until it has gone through
    if (m.type === 'iceCandidate' && !p.offered) {
      p.early.push(m);
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
    return { sessionId, peer, playerId: null, workerId: null };
  }

  playerClosed(handle: PlayerHandle): void {
    this.#waiting.get(handle.sessionId)?.delete(handle);
    if (this.#waiting.get(handle.sessionId)?.size === 0) this.#waiting.delete(handle.sessionId);
    this.#unsubscribe(handle);
  }

  fromPlayer(handle: PlayerHandle, m: PlayerSignal): void {
    switch (m.type) {
      case 'listStreamers': {
        const workerId = this.#seats.get(handle.sessionId);
        if (workerId) handle.peer.send({ type: 'streamerList', ids: [workerId] });
        else {
          const set = this.#waiting.get(handle.sessionId) ?? new Set();
          set.add(handle);
          this.#waiting.set(handle.sessionId, set);
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
    const playerId = newId('pl');
    handle.playerId = playerId;
    handle.workerId = streamerId;
    s.players.set(playerId, { handle, offered: false, early: [] });
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
    if (!playerId || !workerId) return;
    const s = this.#streamers.get(workerId);
    if (s?.players.delete(playerId)) s.peer.send({ type: 'playerDisconnected', playerId });
  }

  #dropPlayers(s: Streamer): void {
    for (const { handle } of [...s.players.values()]) this.#unsubscribe(handle);
  }
}
