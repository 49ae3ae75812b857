// Admission benchmark: how many sessions per second POST /sessions creates and seats on warm workers, and
// how long a request takes until the session is `connecting`, on SQLite and on PostgreSQL; beside it, the same
// load on a bare admission server (bench/lib/bare-admission.ts), the least such a request costs on this machine.
import type { ChildProcess } from 'node:child_process';
import type { ProjectInput } from '@usher/protocol';
import type { BareAdmissionConfig } from './lib/bare-admission.ts';
import {
  ADMIN_KEY,
  type Benchmark,
  type BenchOptions,
  type BenchResult,
  BenchServer,
  benchDatabase,
  cpuShare,
  type DatabaseKind,
  type Figure,
  HttpClient,
  nodeChild,
  percentile,
  QUIET,
  round,
  SECRET,
  type ServerStats,
  threadTime,
} from './lib/harness.ts';
import { IpcClient } from './lib/ipc.ts';
import { logProfile } from './lib/profile.ts';
import type { WorkerHostStats } from './lib/worker-host.ts';

const PROJECT = 'admission-bench';
/**
 * Warm workers, enough for about two seconds of the throughput phase: a shorter window is mostly the start of
 * the load, and its figure varied by ±10% from run to run. Filling a pool costs more than linear time, so the
 * pools stay modest; BENCH_ADMISSION_POOL overrides both.
 */
const POOLS: Record<DatabaseKind, number> = {
  sqlite: Number(process.env.BENCH_ADMISSION_POOL ?? 10_000),
  postgres: Number(process.env.BENCH_ADMISSION_POOL ?? 5_000),
};
/** the pool is grown this many workers at a time */
const POOL_STEP = 250;
/** requests in flight during the throughput phase */
const CONCURRENCY = Number(process.env.BENCH_ADMISSION_CONCURRENCY ?? 32);
const WARMUP = 100;
/** one request at a time, to see the latency without queueing */
const SERIAL = 200;
const MAX_MEASURE_MS = 8_000;
const KINDS = (process.env.BENCH_ADMISSION_DATABASES ?? 'sqlite,postgres').split(',') as DatabaseKind[];

const TARGET: Record<DatabaseKind, number> = { sqlite: 5_000, postgres: 2_000 };
const AGONES = 'Agones allocation: about 300–400 allocations/s (published)';
const BARE = 'bare admission server';

const project: ProjectInput = {
  id: PROJECT,
  name: PROJECT,
  kind: 'agent',
  public: true,
  worker: { driver: 'process', command: ['bench-worker'] },
  // grown to its size once the server is up
  regions: { default: { min: 0, max: 0 } },
};

interface Phase {
  count: number;
  ms: number;
  latencies: number[];
  /** responses whose state was not `connecting`, by state or HTTP status */
  other: Record<string, number>;
}

interface AdmissionRun {
  kind: DatabaseKind;
  pool: number;
  setupMs: number;
  serial: Phase;
  loaded: Phase;
  lag: { p50Ms: number; p99Ms: number; maxMs: number };
  /** how the server's main thread spent the throughput phase */
  thread: string;
  /** CPU time over the throughput phase, as a share of one core */
  cpu: { server: number; host: number; load: number };
  profile: string[];
  bare: BareRun;
}

/** The same phases against the bare admission server. */
interface BareRun {
  serial: Phase;
  loaded: Phase;
  cpu: { server: number; load: number };
}

export const admissionBenchmark: Benchmark = {
  name: 'admission',
  async run(options: BenchOptions): Promise<BenchResult> {
    const runs: AdmissionRun[] = [];
    for (const kind of KINDS) runs.push(await runOn(kind, options));
    return report(runs);
  },
};

async function runOn(kind: DatabaseKind, options: BenchOptions): Promise<AdmissionRun> {
  const { log } = options;
  const pool = POOLS[kind];
  const db = await benchDatabase(kind);
  const setupStart = Date.now();
  const server = await BenchServer.start(
    { storage: db.storage, projects: [project], adminKey: ADMIN_KEY, secret: SECRET },
    { cpuProf: options.cpuProf },
  );
  const http = new HttpClient(server.url, CONCURRENCY);
  let closed = false;
  try {
    log(`admission (${kind}): growing the pool to ${pool} warm workers, ${POOL_STEP} at a time`);
    await server.growPool(PROJECT, pool, POOL_STEP, log);
    const setupMs = Date.now() - setupStart;

    const budget = pool - WARMUP - SERIAL - CONCURRENCY;
    let start!: ServerStats;
    let hostStart!: WorkerHostStats;
    const { serial, loaded } = await measure(http, kind, budget, log, async () => {
      start = await server.stats({ resetLag: true });
      hostStart = await server.hostStats();
    });
    const selfMs = loaded.cpuMs;
    const end = await server.stats();
    const hostEnd = await server.hostStats();

    closed = true;
    http.close();
    const profilePath = await server.close();
    const bare = await runBare(kind, pool, log);
    const profile = logProfile(
      profilePath,
      25,
      { fromUs: start.hrUs, toUs: end.hrUs },
      `${kind}, loaded phase`,
      log,
    );
    return {
      kind,
      pool,
      setupMs,
      serial,
      loaded,
      lag: end.lag,
      thread: threadTime(start, end, loaded.ms),
      cpu: {
        server: cpuShare(start.cpu, end.cpu, loaded.ms),
        host: cpuShare(hostStart.cpu, hostEnd.cpu, loaded.ms),
        load: selfMs / loaded.ms,
      },
      profile,
      bare,
    };
  } finally {
    if (!closed) {
      http.close();
      await server.close();
    }
    await db.drop();
  }
}

/**
 * Warm-up, one at a time, then CONCURRENCY in flight up to `budget` sessions or MAX_MEASURE_MS; `loading` is
 * called just before the loaded phase starts (to read the processes' counters). Returns the phases, and the load generator's CPU time in the
 * loaded one.
 */
async function measure(
  http: HttpClient,
  label: string,
  budget: number,
  log: (line: string) => void,
  loading: () => Promise<void> = async () => {},
): Promise<{ serial: Phase; loaded: Phase & { cpuMs: number } }> {
  const admit = async (phase: Phase) => {
    const a = performance.now();
    const r = await http.call('POST', '/sessions', { projectId: PROJECT });
    const ms = performance.now() - a;
    const state = r.status === 201 ? (JSON.parse(r.body) as { state: string }).state : `HTTP ${r.status}`;
    if (state === 'connecting') phase.latencies.push(ms);
    else phase.other[state] = (phase.other[state] ?? 0) + 1;
    phase.count++;
  };
  const phase = (): Phase => ({ count: 0, ms: 0, latencies: [], other: {} });

  log(`admission (${label}): warm-up ${WARMUP}, then ${SERIAL} one at a time`);
  const warm = phase();
  for (let i = 0; i < WARMUP; i++) await admit(warm);
  const serial = phase();
  let t = performance.now();
  for (let i = 0; i < SERIAL; i++) await admit(serial);
  serial.ms = performance.now() - t;

  log(
    `admission (${label}): ${CONCURRENCY} in flight, up to ${budget} sessions or ${MAX_MEASURE_MS / 1000} s`,
  );
  await loading();
  const selfStart = process.cpuUsage();
  const loaded = phase();
  let issued = 0;
  t = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (issued < budget && performance.now() - t < MAX_MEASURE_MS) {
        issued++;
        await admit(loaded);
      }
    }),
  );
  loaded.ms = performance.now() - t;
  const self = process.cpuUsage(selfStart);
  return { serial, loaded: { ...loaded, cpuMs: (self.user + self.system) / 1000 } };
}

/** The same phases against the bare admission server, on a fresh database of the same kind. */
async function runBare(kind: DatabaseKind, pool: number, log: (line: string) => void): Promise<BareRun> {
  const db = await benchDatabase(kind);
  const config: BareAdmissionConfig = { storage: db.storage, adminKey: ADMIN_KEY, workers: pool };
  const child = nodeChild('bare-admission.ts', QUIET, { BENCH_BARE_ADMISSION: JSON.stringify(config) });
  try {
    const url = await listening(child);
    const ipc = new IpcClient(child);
    const http = new HttpClient(url, CONCURRENCY);
    try {
      const budget = pool - WARMUP - SERIAL - CONCURRENCY;
      let before = { user: 0, system: 0 };
      const { serial, loaded } = await measure(http, `${kind}, bare`, budget, log, async () => {
        before = await ipc.request<{ user: number; system: number }>({ t: 'cpu' });
      });
      const after = await ipc.request<{ user: number; system: number }>({ t: 'cpu' });
      return {
        serial,
        loaded,
        cpu: { server: cpuShare(before, after, loaded.ms), load: loaded.cpuMs / loaded.ms },
      };
    } finally {
      http.close();
    }
  } finally {
    child.kill();
    await db.drop();
  }
}

function listening(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    child.on('message', (m: { t?: string; url?: string }) => {
      if (m.t === 'listening') resolve(m.url!);
    });
    child.once('exit', (code) => reject(new Error(`the bare admission server exited with ${code}`)));
  });
}

function rate(p: Phase): number {
  return (p.latencies.length / p.ms) * 1000;
}

function ms(n: number): string {
  return `${round(n, n < 10 ? 2 : 1)} ms`;
}

function pct(share: number): string {
  return `${Math.round(share * 100)}%`;
}

function others(p: Phase): string {
  const entries = Object.entries(p.other);
  return entries.length === 0 ? '' : `; not seated: ${entries.map(([k, v]) => `${v} ${k}`).join(', ')}`;
}

function report(runs: AdmissionRun[]): BenchResult {
  const figures: Figure[] = [];
  for (const r of runs) {
    const db = r.kind === 'sqlite' ? 'SQLite' : 'PostgreSQL';
    figures.push(
      {
        name: `sessions seated per second (${db}, ${CONCURRENCY} in flight)`,
        value: `${Math.round(rate(r.loaded)).toLocaleString('en')}/s (${r.loaded.latencies.length.toLocaleString('en')} sessions in ${round(r.loaded.ms / 1000, 1)} s${others(r.loaded)})`,
        target: `≥ ${TARGET[r.kind].toLocaleString('en')}/s`,
        alternative: `${BARE}: ${Math.round(rate(r.bare.loaded)).toLocaleString('en')}/s (Usher ${pct(rate(r.loaded) / rate(r.bare.loaded))} of it${others(r.bare.loaded)}); ${AGONES}`,
      },
      {
        name: `POST /sessions → connecting, p50 / p99 (${db}, ${CONCURRENCY} in flight)`,
        value: `${ms(percentile(r.loaded.latencies, 50))} / ${ms(percentile(r.loaded.latencies, 99))}`,
        target: 'p99 < 10 ms',
        alternative: `${BARE}: ${ms(percentile(r.bare.loaded.latencies, 50))} / ${ms(percentile(r.bare.loaded.latencies, 99))}; Agones publishes throughput, not a latency percentile`,
      },
      {
        name: `POST /sessions → connecting, p50 / p99 (${db}, one at a time)`,
        value: `${ms(percentile(r.serial.latencies, 50))} / ${ms(percentile(r.serial.latencies, 99))} (${Math.round(rate(r.serial))}/s${others(r.serial)})`,
        target: 'p99 < 10 ms',
        alternative: `${BARE}: ${ms(percentile(r.bare.serial.latencies, 50))} / ${ms(percentile(r.bare.serial.latencies, 99))} (${Math.round(rate(r.bare.serial))}/s)`,
      },
      {
        name: `server under load (${db})`,
        value: `event-loop lag p99 ${r.lag.p99Ms} ms (max ${r.lag.maxMs} ms); CPU in % of one core: server ${pct(r.cpu.server)}, worker host ${pct(r.cpu.host)}, load generator ${pct(r.cpu.load)}; ${r.thread}`,
        target: '—',
        alternative: `${BARE}: CPU in % of one core: server ${pct(r.bare.cpu.server)}, load generator ${pct(r.bare.cpu.load)}`,
      },
    );
  }
  const notes = runs.map(
    (r) =>
      `${r.kind}: starting the server and registering ${r.pool.toLocaleString('en')} warm workers took ${round(r.setupMs / 1000, 1)} s (not measured).`,
  );
  for (const r of runs)
    if (r.profile.length) notes.push(`${r.kind} profile: ${r.profile.slice(0, 8).join('; ')}`);
  return {
    name: 'admission',
    title: 'Admission: sessions seated on warm workers',
    method: [
      `One agent project with a pool of warm workers (min = max: ${runs.map((r) => `${r.pool.toLocaleString('en')} on ${r.kind}`).join(', ')}; grown ${POOL_STEP} at a time through \`PATCH /projects/{id}\` before measuring). Each worker is a bare \`ws\` client in a separate worker-host process: it registers with the \`USHER_WORKER_TOKEN\` of its launch, says \`ready\`, answers \`assign\` with \`session_started\` and heartbeats every 5 s. The server's \`process\` driver only relays launches to that host.`,
      `The load generator (this process; the server runs in its own) sends \`POST /sessions\` with the admin key over keep-alive HTTP/1.1: ${WARMUP} warm-up requests, ${SERIAL} one at a time, then ${CONCURRENCY} in flight until the pool is nearly used up or ${MAX_MEASURE_MS / 1000} s pass. Latency is request to response; a response counts only when its state is \`connecting\` (seated on a ready worker).`,
      'SQLite: a file in a temp folder (WAL). PostgreSQL: a fresh schema in database `test` on 127.0.0.1, pool of 10 connections (the server default).',
      'Server, worker host, load generator and PostgreSQL share the machine.',
      `The alternative, a bare admission server (bench/lib/bare-admission.ts), is measured after Usher with the same load generator and phases, on a fresh database of the same kind with the same number of ready workers: Fastify checks the bearer key and the JSON body, then one transaction per request takes a ready worker, stores the session and its two transitions and marks the worker busy, and the answer is 201 \`{id, state: 'connecting'}\`. No events, timers, tokens, worker sockets, metrics or batching: the least such a request costs on this machine, so the gap between the two is what Usher's work costs, and the bare figure is near the best this machine allows.`,
    ],
    figures,
    notes,
  };
}

if (import.meta.main) {
  const r = await admissionBenchmark.run({ cpuProf: process.argv.includes('--cpu-prof'), log: console.log });
  console.log(JSON.stringify(r, null, 2));
}
