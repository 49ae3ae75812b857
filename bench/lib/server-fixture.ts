// The server under benchmark, in a process of its own: an UsherServer whose `process` driver only hands each
// launch to the parent (a worker host dials in for it), plus event-loop and memory figures on request.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  type Logger,
  UsherServer,
  type WorkerDriver,
  type WorkerExit,
  type WorkerLaunch,
} from '@usher/server';
import pino from 'pino';
import type { BenchServerConfig } from './harness.ts';
import type { LagStats, ServerNotice, ServerReply, ServerRequest } from './ipc.ts';
import { schedstat } from './schedstat.ts';

const send = (m: ServerNotice | ServerReply) => process.send?.(m);

/** Starts nothing: the parent relays each launch to a worker host, whose workers register over /workers/ws. */
class RelayDriver implements WorkerDriver {
  readonly name = 'process' as const;
  readonly closeStopsWorkers = true;
  readonly #live = new Set<string>();
  readonly #listeners: ((e: WorkerExit) => void)[] = [];

  async start(launch: WorkerLaunch): Promise<{ handle: string }> {
    this.#live.add(launch.workerId);
    send({ t: 'launch', launch });
    return { handle: `bench:${launch.workerId}` };
  }

  async stop(workerId: string): Promise<void> {
    if (!this.#live.delete(workerId)) return;
    send({ t: 'stop', workerId });
    for (const l of this.#listeners) l({ workerId, code: 0, signal: null, expected: true });
  }

  async isAlive(workerId: string): Promise<boolean> {
    return this.#live.has(workerId);
  }

  async reap(workerId: string): Promise<void> {
    await this.stop(workerId);
  }

  onExit(listener: (exit: WorkerExit) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    this.#live.clear();
  }
}

const config = JSON.parse(process.env.BENCH_SERVER ?? 'null') as BenchServerConfig | null;
if (!config) throw new Error('BENCH_SERVER (the fixture configuration, JSON) is not set');

const lag = monitorEventLoopDelay({ resolution: 10 });
// BENCH_SERVER_LOG=warn (or info, debug) shows the server's own log on stderr; silent by default
const level = process.env.BENCH_SERVER_LOG;
const log = level ? (pino({ level }, pino.destination(2)) as unknown as Logger) : undefined;
const server = new UsherServer({
  ...(log ? { log } : {}),
  storage: config.storage,
  port: 0,
  adminKeys: [config.adminKey],
  secret: config.secret,
  serverId: 'bench-server',
  drivers: { process: new RelayDriver() },
  projects: config.projects,
  engine: config.engine ?? {},
  // the whole room's allowance too, so that no message is dropped by either
  ...(config.messageRate ? { messageRate: config.messageRate, roomMessageRate: config.messageRate } : {}),
});

function lagStats(): LagStats {
  const ms = (ns: number) => Math.round((ns / 1e6) * 100) / 100;
  return {
    p50Ms: ms(lag.percentile(50)),
    p99Ms: ms(lag.percentile(99)),
    maxMs: ms(lag.max),
    meanMs: ms(lag.mean),
    samples: lag.count,
  };
}

async function handle(req: ServerRequest): Promise<unknown> {
  switch (req.t) {
    case 'stats': {
      const value = {
        lag: lagStats(),
        memory: memory(req.gc ?? false),
        cpu: process.cpuUsage(),
        // the monotonic clock V8's profiler stamps samples with, in µs
        hrUs: Number(process.hrtime.bigint() / 1000n),
        sched: schedstat(),
      };
      if (req.resetLag) {
        lag.reset();
        await startHeapSampling();
      }
      return value;
    }
    case 'queue': {
      const at0 = Date.now();
      const ids = await server.engine.store.read.queuedSessionIds(req.projectId, req.region);
      return { at0, at1: Date.now(), ids };
    }
    case 'pool':
      return server.engine.store.read.poolCounts(req.projectId, req.region);
    case 'close':
      await stopHeapSampling();
      await server.close();
      setImmediate(() => process.exit(0));
      return null;
  }
}

// BENCH_HEAP_SAMPLE=<file>: a sampling profile of the allocations made from the start of the measured phase to
// close, written as a .heapprofile (Chrome DevTools' Memory tab opens it; bench/lib/heap-profile.ts sums it up).
// BENCH_HEAP_SAMPLE_KEEP says which: `all` (the default: garbage included, what makes the collector run),
// `promoted` (what outlived the young generation: what makes its collections slow), `live` (what is still alive
// after a full collection at the end: retained memory).
const heapFile = process.env.BENCH_HEAP_SAMPLE;
const heapKeep = process.env.BENCH_HEAP_SAMPLE_KEEP ?? 'all';
if (heapFile && !['all', 'promoted', 'live'].includes(heapKeep))
  throw new Error(`BENCH_HEAP_SAMPLE_KEEP is all, promoted or live; got "${heapKeep}"`);
let inspector: Session | null = null;

async function startHeapSampling(): Promise<void> {
  if (!heapFile || inspector) return;
  inspector = new Session();
  inspector.connect();
  await inspector.post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: heapKeep !== 'live',
    includeObjectsCollectedByMinorGC: heapKeep === 'all',
  });
}

async function stopHeapSampling(): Promise<void> {
  if (!heapFile || !inspector) return;
  if (heapKeep === 'live') memory(true);
  const { profile } = await inspector.post('HeapProfiler.stopSampling');
  writeFileSync(heapFile, JSON.stringify(profile));
  inspector.disconnect();
  inspector = null;
}

function memory(gc: boolean) {
  const g = (globalThis as { gc?: () => void }).gc;
  if (gc && g) {
    g();
    g();
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

process.on('message', (req: ServerRequest) => {
  handle(req).then(
    (value) => send({ id: req.id, t: 'reply', value }),
    (err: Error) => send({ id: req.id, t: 'reply', error: err.stack ?? String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));

server.listen().then(
  ({ url }) => {
    lag.enable();
    send({ t: 'listening', url });
  },
  (err: Error) => {
    send({ t: 'fatal', message: err.stack ?? String(err) });
    process.exit(1);
  },
);
