// What one server observes of itself: the sessions' pools in memory, the Prometheus metrics, log lines with
// session, project and worker ids, and its drivers' starts and exits. server.ts builds one per server.
import { WORKER_ENV } from '@usher/protocol';
import type { WorkerDriver } from '../drivers/driver.ts';
import type { EventHub } from '../engine/event-hub.ts';
import type { Recorder } from '../engine/recorder.ts';
import { sessionKeys } from '../storage/observability.ts';
import type { ProjectRecord } from '../storage/records.ts';
import type { Store } from '../storage/store.ts';
import type { Logger } from '../util/logger.ts';
import { observedDriver, WorkerDirectory } from './drivers.ts';
import { logSessionEvents } from './lifecycle-log.ts';
import { withProjectIds } from './log-ids.ts';
import { Metrics } from './metrics.ts';
import { SessionDirectory } from './session-directory.ts';

export interface ObservabilityOptions {
  store: Store;
  hub: EventHub;
  /** the server's logger, as given */
  log: Logger;
  /** the projects configured now: metrics show each of their pools, 0 when it has nothing */
  projects: () => readonly ProjectRecord[];
}

export class Observability {
  /** the sessions' projects and regions, for the metrics, the logs, the webhooks and the operator's feed */
  readonly sessions: SessionDirectory;
  readonly workers = new WorkerDirectory();
  readonly metrics: Metrics;
  /** the server's logger, completing lines that name a session or worker with its project */
  readonly log: Logger;
  readonly #offs: (() => void)[] = [];

  constructor(o: ObservabilityOptions) {
    this.sessions = new SessionDirectory(
      (ids) => sessionKeys(o.store.read.q, ids),
      (err) => o.log.error({ err }, 'a session could not be looked up (its project and region)'),
    );
    this.log = withProjectIds(o.log, {
      session: (id) => this.sessions.peek(id),
      worker: (id) => this.workers.get(id),
    });
    // the directory first: the listeners after it see each event's times in the sessions' keys
    this.#offs.push(o.hub.subscribeAll((event) => this.sessions.observe(event)));
    this.metrics = new Metrics({
      store: o.store,
      hub: o.hub,
      sessions: this.sessions,
      pools: () =>
        o
          .projects()
          .flatMap((p) =>
            Object.keys(p.settings.regions).map((region) => ({ projectId: p.settings.id, region })),
          ),
      hasPool: (projectId, region) =>
        o.projects().some((p) => p.settings.id === projectId && Object.hasOwn(p.settings.regions, region)),
      onError: (err) => o.log.error({ err }, 'metrics: an event could not be counted'),
    });
    this.#offs.push(() => this.metrics.close());
    this.#offs.push(logSessionEvents(o.hub, this.sessions, this.log));
  }

  /** The drivers as the engine gets them: each start counted and logged; each exit logged. */
  drivers(drivers: Record<string, WorkerDriver>): Record<string, WorkerDriver> {
    const observed: Record<string, WorkerDriver> = {};
    for (const [name, driver] of Object.entries(drivers)) {
      driver.onExit(({ workerId, code, signal, expected, error }) =>
        this.log.info(
          { workerId, code, signal, expected, ...(error !== undefined ? { error } : {}) },
          'worker exited',
        ),
      );
      observed[name] = observedDriver(driver, {
        starting: (launch, driverName) => {
          this.workers.remember(launch.workerId, launch.projectId, launch.region);
          this.metrics.workerStarting(launch, driverName);
          const sessionId = launch.env[WORKER_ENV.sessionId];
          this.log.info(
            {
              workerId: launch.workerId,
              projectId: launch.projectId,
              region: launch.region,
              driver: driverName,
              ...(sessionId ? { sessionId } : {}),
            },
            'worker starting',
          );
        },
        failed: (launch, driverName) => this.metrics.workerStartFailed(launch, driverName),
      });
    }
    return observed;
  }

  /** Counts the transcript entries the recorder has made durable. */
  watchRecorder(recorder: Recorder): void {
    recorder.onWritten((batch) => this.metrics.recorded(batch));
  }

  close(): void {
    for (const off of this.#offs.splice(0)) off();
  }
}
