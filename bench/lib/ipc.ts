// Messages between a benchmark, its server process and its worker-host process (Node IPC channels).
import type { ChildProcess } from 'node:child_process';
import type { ProjectInput } from '@usher/protocol';
import type { StorageOptions, WorkerLaunch } from '@usher/server';

/** What the server fixture is started with (JSON in the BENCH_SERVER environment variable). */
export interface ServerFixtureConfig {
  storage: StorageOptions;
  projects: ProjectInput[];
  adminKey: string;
  secret: string;
  /** engine options, e.g. positionIntervalMs */
  engine?: Record<string, number>;
  /** the server's id (default bench-server); servers sharing a database need distinct ones */
  serverId?: string;
}

export interface LagStats {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  samples: number;
}

export interface MemoryStats {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** Requests the parent sends to the server fixture; each carries an id echoed in the reply. */
export type ServerRequest =
  | { id: number; t: 'stats'; resetLag?: boolean; gc?: boolean }
  | { id: number; t: 'queue'; projectId: string; region: string }
  | { id: number; t: 'pool'; projectId: string; region: string }
  | { id: number; t: 'close' };

/** Unsolicited messages from the server fixture. */
export type ServerNotice =
  | { t: 'listening'; url: string }
  | { t: 'launch'; launch: WorkerLaunch }
  | { t: 'stop'; workerId: string }
  | { t: 'fatal'; message: string };

export interface ServerReply {
  id: number;
  t: 'reply';
  value?: unknown;
  error?: string;
}

/** Request/reply over a child's IPC channel. */
export class IpcClient {
  readonly child: ChildProcess;
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (m: { t?: string; id?: number; value?: unknown; error?: string }) => {
      if (m.t !== 'reply' || m.id === undefined) return;
      const w = this.#waiting.get(m.id);
      if (!w) return;
      this.#waiting.delete(m.id);
      if (m.error) w.reject(new Error(m.error));
      else w.resolve(m.value);
    });
    child.on('exit', (code, signal) => {
      for (const w of this.#waiting.values()) w.reject(new Error(`the child exited (${code ?? signal})`));
      this.#waiting.clear();
    });
  }

  request<T>(body: Record<string, unknown> & { t: string }): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ ...body, id });
    });
  }
}
