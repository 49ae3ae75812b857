// A worker driver as the engine sees it, with every start counted and logged: the engine asks a driver to start
// each worker exactly once, on the server that decided to, so a start is counted once in a cluster.
import type { WorkerDriver, WorkerLaunch } from '../drivers/driver.ts';

/** What a driver's starts are reported to. */
export interface StartObserver {
  starting(launch: WorkerLaunch, driver: string): void;
  failed(launch: WorkerLaunch, driver: string, err: unknown): void;
}

/** The same driver; start() tells the observer first, and again if the driver refuses. */
export function observedDriver(driver: WorkerDriver, observer: StartObserver): WorkerDriver {
  return {
    name: driver.name,
    get closeStopsWorkers() {
      return driver.closeStopsWorkers;
    },
    async start(launch) {
      observer.starting(launch, driver.name);
      try {
        return await driver.start(launch);
      } catch (err) {
        observer.failed(launch, driver.name, err);
        throw err;
      }
    },
    stop: (workerId, graceMs, handle) => driver.stop(workerId, graceMs, handle),
    isAlive: (workerId, handle) => driver.isAlive(workerId, handle),
    reap: (workerId, handle) => driver.reap(workerId, handle),
    onExit: (listener) => driver.onExit(listener),
    close: () => driver.close(),
  };
}

/** Workers kept after they were started: a log line about a worker finds its project. */
const REMEMBERED_WORKERS = 10_000;

/** The project and region of the workers this server started (and of others it was told about). */
export class WorkerDirectory {
  readonly #workers = new Map<string, { projectId: string; region: string }>();

  get(workerId: string): { projectId: string; region: string } | undefined {
    return this.#workers.get(workerId);
  }

  remember(workerId: string, projectId: string, region: string): void {
    this.#workers.delete(workerId);
    this.#workers.set(workerId, { projectId, region });
    if (this.#workers.size > REMEMBERED_WORKERS) this.#workers.delete(this.#workers.keys().next().value!);
  }
}
