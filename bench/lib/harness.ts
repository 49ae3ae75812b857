// What every benchmark shares: its result shape, the server and worker-host child processes, a keep-alive
// HTTP client, percentiles, and the machine it ran on.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '@usher/testing';
import { IpcClient, type LagStats, type MemoryStats, type ServerFixtureConfig } from './ipc.ts';
import type { WorkerHostStats } from './worker-host.ts';

/** One measured figure, with what it is held against. */
export interface Figure {
  name: string;
  value: string;
  target: string;
  /** the named alternative and its published figure, or why there is none */
  alternative: string;
}

export interface BenchResult {
  name: string;
  title: string;
  /** how the figures were obtained, in a few lines */
  method: string[];
  figures: Figure[];
  notes: string[];
}

export interface BenchOptions {
  /** run the server process with --cpu-prof and print its top self-time functions */
  cpuProf: boolean;
  log: (line: string) => void;
}

export interface Benchmark {
  name: string;
  run(options: BenchOptions): Promise<BenchResult>;
}

export const ADMIN_KEY = 'bench-admin-key-0123456789';
export const SECRET = 'bench-secret-0123456789-0123456789-0123456789';

const here = import.meta.dirname;

/** A bench/lib script in a Node process of its own, with an IPC channel. */
export function nodeChild(script: string, args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...args, join(here, script)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
}

export const QUIET = ['--disable-warning=ExperimentalWarning'];

export interface ServerStats {
  lag: LagStats;
  memory: MemoryStats;
  cpu: { user: number; system: number };
  /** the server's monotonic clock in µs (to cut its CPU profile to a window) */
  hrUs: number;
  /** its main thread's time on a CPU and time waiting for one (ns), where Linux tells */
  sched: { runNs: number; waitNs: number } | null;
}

/**
 * How the server's main thread spent a window of wallMs: running, waiting for a CPU (other processes had
 * them), and the rest (idle, or blocked in a system call such as disk I/O).
 */
export function threadTime(a: ServerStats, b: ServerStats, wallMs: number): string {
  if (!a.sched || !b.sched) return 'main-thread scheduling not available';
  const run = (b.sched.runNs - a.sched.runNs) / 1e6 / wallMs;
  const wait = (b.sched.waitNs - a.sched.waitNs) / 1e6 / wallMs;
  const p = (x: number) => `${Math.round(x * 100)}%`;
  return `server main thread ${p(run)} on a CPU, ${p(wait)} waiting for one, ${p(Math.max(0, 1 - run - wait))} idle or blocked`;
}

/**
 * What the server fixture is started with: the shared configuration, plus options only some benchmarks set
 * (left out, the server's defaults apply).
 */
export interface BenchServerConfig extends ServerFixtureConfig {
  /** room messages each participant, and each room, may send (UsherServerOptions.messageRate, roomMessageRate) */
  messageRate?: { perSecond: number; burst: number };
}

/** The server under test in a child process, with a worker host for its workers. */
export class BenchServer {
  readonly server: ChildProcess;
  readonly host: ChildProcess;
  readonly ipc: IpcClient;
  readonly hostIpc: IpcClient;
  readonly profileDir: string | null;
  url = '';

  private constructor(server: ChildProcess, host: ChildProcess, profileDir: string | null) {
    this.server = server;
    this.host = host;
    this.profileDir = profileDir;
    this.ipc = new IpcClient(server);
    this.hostIpc = new IpcClient(host);
    // launches and stops of workers go from the server's driver to the worker host
    server.on('message', (m: { t?: string }) => {
      if (m.t === 'launch' || m.t === 'stop') host.send(m);
    });
  }

  static async start(config: BenchServerConfig, options: { cpuProf: boolean }): Promise<BenchServer> {
    const profileDir = options.cpuProf ? mkdtempSync(join(tmpdir(), 'usher-prof-')) : null;
    const flags = [...QUIET, '--expose-gc'];
    if (profileDir) flags.push('--cpu-prof', '--cpu-prof-dir', profileDir);
    // BENCH_SERVER_FLAGS: extra Node flags for the server process, to try a setting (e.g. --trace-gc)
    flags.push(...(process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter(Boolean));
    const server = nodeChild('server-fixture.ts', flags, {
      BENCH_SERVER: JSON.stringify(config),
    });
    const host = nodeChild('worker-host.ts', QUIET, {});
    const bench = new BenchServer(server, host, profileDir);
    bench.url = await new Promise<string>((resolve, reject) => {
      server.on('message', (m: { t?: string; url?: string; message?: string }) => {
        if (m.t === 'listening') resolve(m.url!);
        if (m.t === 'fatal') reject(new Error(`the server did not start: ${m.message}`));
      });
      server.once('exit', (code) => reject(new Error(`the server exited with ${code} before listening`)));
    });
    return bench;
  }

  stats(options: { resetLag?: boolean; gc?: boolean } = {}): Promise<ServerStats> {
    return this.ipc.request({ t: 'stats', ...options });
  }

  hostStats(): Promise<WorkerHostStats> {
    return this.hostIpc.request({ t: 'stats' });
  }

  pool(projectId: string, region = 'default'): Promise<Record<string, number>> {
    return this.ipc.request({ t: 'pool', projectId, region });
  }

  queue(projectId: string, region = 'default'): Promise<{ at0: number; at1: number; ids: string[] }> {
    return this.ipc.request({ t: 'queue', projectId, region });
  }

  /** Polls until the pool has n ready workers (or throws after timeoutMs). */
  async readyWorkers(projectId: string, n: number, timeoutMs: number, log?: (s: string) => void) {
    const start = Date.now();
    let lastLog = start;
    for (;;) {
      const counts = await this.pool(projectId);
      if ((counts.ready ?? 0) >= n) return Date.now() - start;
      if (Date.now() - start > timeoutMs) {
        throw new Error(`only ${counts.ready ?? 0} of ${n} workers ready after ${timeoutMs} ms`);
      }
      if (log && Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        log(`  ${counts.ready ?? 0}/${n} workers ready`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * Grows a pool to `target` warm workers in steps (PATCH /projects/{id}), waiting for each step to be
   * ready. Starting thousands at once makes the server fall behind on their frames and declare some lost
   * for missed heartbeats (see the benchmark notes), so the pool is filled the way an operator would.
   */
  async growPool(projectId: string, target: number, step: number, log?: (s: string) => void): Promise<void> {
    const http = new HttpClient(this.url, 1);
    try {
      for (let n = Math.min(step, target); ; n = Math.min(n + step, target)) {
        const r = await http.call('PATCH', `/projects/${projectId}`, {
          regions: { default: { min: n, max: n } },
        });
        if (r.status !== 200) throw new Error(`PATCH /projects/${projectId}: ${r.status} ${r.body}`);
        await this.readyWorkers(projectId, n, 120_000, log);
        if (n === target) return;
      }
    } finally {
      http.close();
    }
  }

  /** Stops both processes; returns the server's CPU profile path when it was profiled. */
  async close(): Promise<string | null> {
    const exited = (c: ChildProcess) =>
      c.exitCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()));
    await this.ipc.request({ t: 'close' }).catch(() => {});
    await this.hostIpc.request({ t: 'close' }).catch(() => {});
    await Promise.all([exited(this.server), exited(this.host)]);
    if (!this.profileDir) return null;
    const file = readdirSync(this.profileDir).find((f) => f.endsWith('.cpuprofile'));
    return file ? join(this.profileDir, file) : null;
  }
}

export interface HttpResult {
  status: number;
  body: string;
}

/** A keep-alive HTTP/1.1 client to one origin. */
export class HttpClient {
  readonly agent: Agent;
  readonly host: string;
  readonly port: number;

  constructor(url: string, maxSockets: number) {
    const u = new URL(url);
    this.host = u.hostname;
    this.port = Number(u.port);
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }

  call(method: string, path: string, body?: unknown, auth: string | null = ADMIN_KEY): Promise<HttpResult> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = {};
    if (auth) headers.authorization = `Bearer ${auth}`;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    return new Promise((resolve, reject) => {
      const req = request(
        { host: this.host, port: this.port, method, path, headers, agent: this.agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Nearest-rank percentile of numbers (sorted or not). */
/** CPU time between two process.cpuUsage() readings, as a share of one core over wallMs. */
export function cpuShare(
  a: { user: number; system: number } | undefined,
  b: { user: number; system: number } | undefined,
  wallMs: number,
): number {
  return a && b ? (b.user + b.system - a.user - a.system) / 1000 / wallMs : Number.NaN;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export interface Machine {
  date: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
}

export function machine(): Machine {
  return {
    date: new Date().toISOString().slice(0, 10),
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: round(totalmem() / 1024 ** 3, 1),
    node: process.version,
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export type DatabaseKind = 'sqlite' | 'postgres';

/**
 * A fresh database like the test suite's (a SQLite file in a temp folder, or a new schema in PostgreSQL's
 * `test` database), with the server's default PostgreSQL pool size rather than the tests' smaller one.
 */
export async function benchDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  const db = await createTestDatabase(kind);
  if (db.storage.type === 'postgres') {
    const { poolSize: _tests, ...storage } = db.storage;
    return { ...db, storage };
  }
  return db;
}

/** Runs `count` calls of fn with at most `concurrency` in flight. */
export async function inParallel(count: number, concurrency: number, fn: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(count, concurrency) }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

/** The soft limit on open files of this process (children inherit it), or null where it cannot be read. */
export function openFilesLimit(): number | null {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === 'unlimited' ? null : Number(soft);
  } catch {
    return null;
  }
}
