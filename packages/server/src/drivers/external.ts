// The driver for workers started elsewhere (e.g. an app run by hand) that dial in with a pool token.

import { announceExit, type WorkerDriver, type WorkerExit, type WorkerLaunch } from './driver.ts';

/** The handle of every external worker: there is nothing to find again after a restart. */
export const EXTERNAL_HANDLE = 'external';

export class ExternalDriver implements WorkerDriver {
  readonly name = 'external' as const;
  readonly closeStopsWorkers = false;
  readonly #listeners: Array<(exit: WorkerExit) => void> = [];
  /** workers asked to stop, so that losing their socket afterwards counts as expected */
  readonly #stopping = new Set<string>();

  /** Nothing to start: the worker connects by itself. */
  async start(_launch: WorkerLaunch): Promise<{ handle: string }> {
    return { handle: EXTERNAL_HANDLE };
  }

  /** The server tells the worker to stop over its socket; this only remembers that the stop was asked for. */
  async stop(workerId: string, _graceMs: number): Promise<void> {
    this.#stopping.add(workerId);
  }

  /** The driver cannot tell; the worker's socket and heartbeats decide. */
  async isAlive(_workerId: string, _handle: string): Promise<boolean> {
    return true;
  }

  /** Nothing to reap: a left-behind external worker dials in again or times out. */
  async reap(_workerId: string, _handle: string): Promise<void> {}

  onExit(listener: (exit: WorkerExit) => void): void {
    this.#listeners.push(listener);
  }

  /** The server calls this once, when a worker's socket is gone for good; it is reported as that worker's exit. */
  lost(workerId: string, error?: string): void {
    const exit: WorkerExit = {
      workerId,
      code: null,
      signal: null,
      expected: this.#stopping.delete(workerId),
    };
    if (error !== undefined) exit.error = error;
    announceExit(this.#listeners, exit);
  }

  async close(): Promise<void> {
    this.#stopping.clear();
  }
}
