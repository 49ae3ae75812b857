// A small typed event emitter: `on` returns its own unsubscribe function.

export type Listener<T> = (payload: T) => void;

/** By default a listener's error is rethrown on its own, where the page's error handling sees it. */
function rethrow(err: unknown): void {
  queueMicrotask(() => {
    throw err;
  });
}

export class Emitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();
  readonly #onListenerError: (err: unknown) => void;

  constructor(onListenerError: (err: unknown) => void = rethrow) {
    this.#onListenerError = onListenerError;
  }

  /** Calls `listener` on every `event` until the returned function (or `off`) is called. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(event)?.delete(listener);
  }

  /** A listener that throws stops neither the others nor the SDK. */
  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (err) {
        this.#onListenerError(err);
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
