// Delivers session events to whoever listens on this server (sockets, webhooks, the dashboard), and, when
// servers share a database, to the other servers through the bus. Worker changes go to the other servers only
// while one of them has an operator feed open (it says so on the bus): they are many, and few listen.
import type { SessionEvent } from '@usher/protocol';
import { type Bus, localBus } from '../cluster/bus.ts';
import type { WorkerRecord } from '../storage/records.ts';

/** `local` is false for an event another server published (it reached this one through the bus). */
export type SessionListener = (event: SessionEvent, local: boolean) => void;
export type WorkerListener = (worker: WorkerRecord) => void;

/**
 * A server's wish for this one's worker changes lasts this many of this server's beats (ServerRegistry) unless
 * renewed: the watching server says it again at each of its own beats, so a wish whose server died, or whose
 * "no longer" was lost, does not outlive it for long.
 */
const WATCH_LEASE_BEATS = 3;

export class EventHub {
  readonly #bySession = new Map<string, Set<SessionListener>>();
  readonly #all = new Set<SessionListener>();
  readonly #workers = new Set<WorkerListener>();
  /** the worker listeners that want every server's changes (the operator feeds) */
  readonly #everywhere = new Set<WorkerListener>();
  /** the other servers that want this one's worker changes, with the beat at which each last said so */
  readonly #watchers = new Map<string, number>();
  #beats = 0;
  #bus: Bus = localBus;
  #serverId = '';
  #listenerFailed: (err: unknown) => void = () => {};

  /**
   * Where a listener's error goes. A listener that throws never keeps an event from the others, nor fails
   * whoever published it (an event is published after its transaction committed).
   */
  onListenerError(handler: (err: unknown) => void): void {
    this.#listenerFailed = handler;
  }

  #call<A>(listener: (arg: A, local: boolean) => void, arg: A, local = true): void {
    try {
      listener(arg, local);
    } catch (err) {
      this.#listenerFailed(err);
    }
  }

  /** Events published here go to the other servers too, and theirs come here. */
  connect(bus: Bus, serverId: string): void {
    this.#bus = bus;
    this.#serverId = serverId;
    bus.onMessage((m) => {
      if (m.kind === 'event') this.#deliver(m.event, false);
      else if (m.kind === 'worker_changed') for (const l of [...this.#everywhere]) this.#call(l, m.worker);
      else if (m.kind === 'worker_watch') {
        if (m.watching) this.#watchers.set(m.serverId, this.#beats);
        else this.#watchers.delete(m.serverId);
      } else if (m.kind === 'hello') {
        // a server that just started has no feed open yet (it may be one that restarted), and learns of ours
        this.#watchers.delete(m.serverId);
        if (this.#everywhere.size > 0) this.#watch(true);
      }
    });
  }

  /**
   * This server's beat (ServerRegistry), with the servers alive: wishes of servers gone or not renewed lapse,
   * and this server renews its own while it has a feed open (a wish sent while the bus was down, or while
   * this server thought itself alone, reaches the others this way too).
   */
  beat(alive: ReadonlySet<string>): void {
    this.#beats++;
    for (const [id, heardAt] of this.#watchers)
      if (!alive.has(id) || this.#beats - heardAt > WATCH_LEASE_BEATS) this.#watchers.delete(id);
    if (this.#everywhere.size > 0) this.#watch(true);
  }

  /** A server that died wants nothing more. */
  forgetServer(serverId: string): void {
    this.#watchers.delete(serverId);
  }

  #watch(watching: boolean): void {
    if (this.#bus.shared) this.#bus.send({ kind: 'worker_watch', serverId: this.#serverId, watching });
  }

  subscribe(sessionId: string, listener: SessionListener): () => void {
    let set = this.#bySession.get(sessionId);
    if (!set) {
      set = new Set();
      this.#bySession.set(sessionId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#bySession.delete(sessionId);
    };
  }

  /**
   * Every event of every session, this server's and (when servers share a database) the others'. Listeners that
   * act once per event in a cluster (metrics, webhooks) keep only those with `local` true.
   */
  subscribeAll(listener: SessionListener): () => void {
    this.#all.add(listener);
    return () => this.#all.delete(listener);
  }

  /**
   * Delivers an event to this server's listeners only (each server tells its own sockets, as with queue
   * positions). `local`: whether it counts as this server's event (webhooks and metrics count only those).
   */
  publishHere(event: SessionEvent, local: boolean): void {
    this.#deliver(event, local);
  }

  publish(event: SessionEvent): void {
    this.#deliver(event, true);
    if (this.#bus.shared) this.#bus.send({ kind: 'event', event });
  }

  #deliver(event: SessionEvent, local: boolean): void {
    for (const l of this.#all) this.#call(l, event, local);
    const set = this.#bySession.get(event.sessionId);
    if (set) for (const l of [...set]) this.#call(l, event, local);
  }

  /**
   * Every change of a worker's state, session or draining flag on this server, after it is committed; with
   * `everywhere`, the other servers' changes too (when servers share a database), as the operator feed wants
   * them.
   */
  subscribeWorkers(listener: WorkerListener, options: { everywhere?: boolean } = {}): () => void {
    this.#workers.add(listener);
    if (options.everywhere) {
      this.#everywhere.add(listener);
      if (this.#everywhere.size === 1) this.#watch(true);
    }
    return () => {
      if (!this.#workers.delete(listener)) return;
      if (this.#everywhere.delete(listener) && this.#everywhere.size === 0) this.#watch(false);
    };
  }

  /** Whether anyone, here or on another server, wants this server's worker changes. */
  get hasWorkerListeners(): boolean {
    return this.#workers.size > 0 || this.#watchers.size > 0;
  }

  publishWorker(worker: WorkerRecord): void {
    if (this.#watchers.size > 0 && this.#bus.shared) this.#bus.send({ kind: 'worker_changed', worker });
    for (const l of [...this.#workers]) this.#call(l, worker);
  }

  hasListeners(sessionId: string): boolean {
    return this.#bySession.has(sessionId);
  }
}
