// How workers are started and stopped. The engine talks only to this interface; `process`, `external`
// and (later) `kubernetes` implement it.

export interface WorkerLaunch {
  workerId: string;
  projectId: string;
  region: string;
  /** the project's worker spec (driver-specific fields) */
  spec: Record<string, unknown>;
  /** credentials and addresses the worker needs, as environment variables (see WORKER_ENV) */
  env: Record<string, string>;
}

export interface WorkerExit {
  workerId: string;
  /** exit code, or null when killed by a signal or when the driver cannot tell */
  code: number | null;
  signal: string | null;
  /** true when the driver itself stopped the worker (stop/kill), false when it died on its own */
  expected: boolean;
  /** why the worker could not run, when the driver knows (e.g. the command was not found) */
  error?: string;
}

export interface WorkerDriver {
  readonly name: 'process' | 'external' | 'kubernetes';
  /** Starts a worker. Resolves once the start was initiated (not when the worker is ready). */
  start(launch: WorkerLaunch): Promise<{ handle: string }>;
  /**
   * Asks a worker to stop (SIGTERM or equivalent); force-kills it after graceMs. Resolves when it is gone.
   * `handle`, the stored one, finds a worker this driver did not start (another server's pod).
   */
  stop(workerId: string, graceMs: number, handle?: string | null): Promise<void>;
  /** Whether the driver still knows a live worker with this id (used to reap after a restart). */
  isAlive(workerId: string, handle: string): Promise<boolean>;
  /** Reaps a worker left by an earlier server run, given its stored handle. */
  reap(workerId: string, handle: string): Promise<void>;
  /** Called once for each worker that exits, whether stopped or crashed. */
  onExit(listener: (exit: WorkerExit) => void): void;
  /**
   * Whether close() stops the workers this driver started (a process driver's children do; Kubernetes pods
   * and external workers outlive the server unless configured otherwise). A closing server records such
   * workers as stopped first, so that no other server seats a session on them.
   */
  readonly closeStopsWorkers: boolean;
  /** Stops every worker this driver started (see closeStopsWorkers) and releases its resources. */
  close(): Promise<void>;
}

/** A stored handle read back: its JSON object, or null when it is not one (a handle of another driver). */
export function handleFields(handle: string): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(handle);
  } catch {
    return null;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

/**
 * Tells every listener of an exit. A listener that throws does not keep the others from hearing it; its error
 * surfaces as an uncaught one, as from an EventEmitter.
 */
export function announceExit(listeners: readonly ((exit: WorkerExit) => void)[], exit: WorkerExit): void {
  for (const listener of listeners) {
    try {
      listener(exit);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}
