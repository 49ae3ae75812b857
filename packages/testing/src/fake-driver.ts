// A worker driver that runs each worker in-process with the real worker SDK over a real WebSocket.
// Tests script how a worker behaves (never ready, crash, refuse) and crash it on demand.
import type { WorkerDriver, WorkerExit, WorkerLaunch } from '@usher/server';
import { type Assignment, UsherWorker } from '@usher/worker';

export interface FakeBehaviour {
  /** say `ready` after registering (default true) */
  ready?: boolean;
  /** take assignments (send `session_started`) (default true); false: onConnect throws, and the SDK says `session_failed` */
  startSessions?: boolean;
  /**
   * answer `shutdown` with `stopped` (default true); false: the shutdown hook hangs until the driver stops
   * the worker (the SDK itself still sends `stopped` once the real-time graceMs has passed)
   */
  stopOnShutdown?: boolean;
  /** an `agent_text` the worker says from onConnect, before it has told the server the session started */
  greeting?: string;
}

export interface FakeWorker {
  id: string;
  launch: WorkerLaunch;
  sdk: UsherWorker;
  assignments: Assignment[];
  /** the session states the server told it (`session_state`), in order */
  sessionStates: { sessionId: string; state: string }[];
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

export class FakeDriver implements WorkerDriver {
  readonly name = 'process' as const;
  /**
   * Like the process driver's children, fake workers stop with the server; set it false for workers that
   * outlive it (as Kubernetes pods and external workers do): close() then leaves them, and stopAll() stops them.
   */
  closeStopsWorkers = true;
  readonly workers = new Map<string, FakeWorker>();
  /** how workers started from now on behave; may depend on the launch */
  behaviour: (launch: WorkerLaunch) => FakeBehaviour = () => ({});
  /** ids of every worker ever started, in order */
  readonly started: string[] = [];
  readonly #listeners: ((e: WorkerExit) => void)[] = [];
  readonly #waiters: ((w: FakeWorker) => void)[] = [];
  /** releases the shutdown hook of a worker that never answers shutdown, once the driver kills it */
  readonly #kill = new Map<string, () => void>();

  async start(launch: WorkerLaunch): Promise<{ handle: string }> {
    const b = { ready: true, startSessions: true, stopOnShutdown: true, ...this.behaviour(launch) };
    const fake: FakeWorker = {
      id: launch.workerId,
      launch,
      sdk: null as unknown as UsherWorker,
      assignments: [],
      sessionStates: [],
    };
    const killed = new Promise<void>((resolve) => this.#kill.set(launch.workerId, resolve));
    const sdk = new UsherWorker({
      env: launch.env,
      autoReady: b.ready,
      logger: quiet,
      reconnect: { initialDelayMs: 20, maxDelayMs: 200, multiplier: 2, jitter: 0, maxAttempts: 50 },
      onConnect: async (a: Assignment) => {
        fake.assignments.push(a);
        if (!b.startSessions) throw new Error('this fake worker refuses sessions');
        if (b.greeting) sdk.send('agent_text', { text: b.greeting });
      },
      onShutdown: async () => {
        if (!b.stopOnShutdown) await killed;
      },
    });
    fake.sdk = sdk;
    sdk.on('sessionState', (info) => fake.sessionStates.push(info));
    this.workers.set(launch.workerId, fake);
    this.started.push(launch.workerId);
    sdk.on('close', () => {
      // the worker closed for good on its own (after `stopped`): its process is gone
      if (this.workers.get(launch.workerId) !== fake) return;
      this.workers.delete(launch.workerId);
      this.#exit(launch.workerId, 0, null, true);
    });
    void sdk.start().catch(() => {});
    for (const w of this.#waiters.splice(0)) w(fake);
    return { handle: `fake:${launch.workerId}` };
  }

  /** Resolves with the next worker started. */
  nextStart(): Promise<FakeWorker> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The worker dies: its socket drops without a close frame and the driver reports an unexpected exit. */
  crash(workerId: string, code = 1): void {
    const w = this.workers.get(workerId);
    if (!w) throw new Error(`no fake worker ${workerId}`);
    this.workers.delete(workerId);
    this.#release(workerId);
    void w.sdk.close().catch(() => {});
    this.#exit(workerId, code, null, false);
  }

  async stop(workerId: string): Promise<void> {
    const w = this.workers.get(workerId);
    if (!w) return;
    this.workers.delete(workerId);
    // stopping is a kill: a worker stuck in its shutdown hook does not hold it up
    this.#release(workerId);
    await w.sdk.close().catch(() => {});
    this.#exit(workerId, null, 'SIGTERM', true);
  }

  #release(workerId: string): void {
    this.#kill.get(workerId)?.();
    this.#kill.delete(workerId);
  }

  async isAlive(workerId: string): Promise<boolean> {
    return this.workers.has(workerId);
  }

  async reap(workerId: string): Promise<void> {
    await this.stop(workerId);
  }

  onExit(listener: (exit: WorkerExit) => void): void {
    this.#listeners.push(listener);
  }

  #exited = new Set<string>();
  #exit(workerId: string, code: number | null, signal: string | null, expected: boolean): void {
    if (this.#exited.has(workerId)) return;
    this.#exited.add(workerId);
    for (const l of this.#listeners) l({ workerId, code, signal, expected });
  }

  async close(): Promise<void> {
    if (this.closeStopsWorkers) await this.stopAll();
  }

  /** Stops every worker still running. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.workers.keys()].map((id) => this.stop(id)));
  }
}
