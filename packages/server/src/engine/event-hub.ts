// Delivers session events to whoever listens on this server (sockets, webhooks, the dashboard), and, when
// servers share a database, to the other servers through the bus.
import type { SessionEvent } from '@usher/protocol';
import { type Bus, localBus } from '../cluster/bus.ts';
import type { WorkerRecord } from '../storage/records.ts';

/** `local` is false for an event another server published (it reached this one through the bus). */
export type SessionListener = (event: SessionEvent, local: boolean) => void;
export type WorkerListener = (worker: WorkerRecord) => void;

export class EventHub {
  readonly #bySession = new Map<string, Set<SessionListener>>();
  readonly #all = new Set<SessionListener>();
  readonly #workers = new Set<WorkerListener>();
  #bus: Bus = localBus;

  /** Events published here go to the other servers too, and theirs come here. */
  connect(bus: Bus): void {
    this.#bus = bus;
    bus.onMessage((m) => {
      if (m.kind === 'event') this.#deliver(m.event, false);
    });
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

  publish(event: SessionEvent): void {
    this.#deliver(event, true);
    if (this.#bus.shared) this.#bus.send({ kind: 'event', event });
  }

  #deliver(event: SessionEvent, local: boolean): void {
    for (const l of this.#all) l(event, local);
    const set = this.#bySession.get(event.sessionId);
    if (set) for (const l of [...set]) l(event, local);
  }

  /** Every change of a worker's state, session or draining flag, after it is committed. */
  subscribeWorkers(listener: WorkerListener): () => void {
    this.#workers.add(listener);
    return () => this.#workers.delete(listener);
  }

  get hasWorkerListeners(): boolean {
    return this.#workers.size > 0;
  }

  publishWorker(worker: WorkerRecord): void {
    for (const l of [...this.#workers]) l(worker);
  }

  hasListeners(sessionId: string): boolean {
    return this.#bySession.has(sessionId);
  }
}
