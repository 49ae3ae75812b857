// Cluster benchmark: admissions per second and latency with one, two and three servers on one PostgreSQL
// (requests spread evenly over the servers, each server with its own share of the warm workers), and how late
// the deadlines of a server killed with SIGKILL fire on the survivors.
import type { ProjectInput } from '@usher/protocol';
import { openStore } from '@usher/server';
import {
  ADMIN_KEY,
  type Benchmark,
  type BenchOptions,
  type BenchResult,
  BenchServer,
  benchDatabase,
  cpuShare,
  type Figure,
  HttpClient,
  percentile,
  round,
  SECRET,
  sleep,
} from './lib/harness.ts';

const PROJECT = 'cluster-bench';
/** warm workers per server */
const WORKERS_PER_SERVER = Number(process.env.BENCH_CLUSTER_WORKERS ?? 600);
const STEP = 200;
/** requests in flight, over all servers */
const CONCURRENCY = Number(process.env.BENCH_CLUSTER_CONCURRENCY ?? 32);
const WARMUP = 60;
const MAX_MEASURE_MS = 6_000;
const SIZES = [1, 2, 3];
/** sessions whose pending deadline the killed server had armed */
const TIMERS = 50;
const PENDING_MS = 3_000;

const project: ProjectInput = {
  id: PROJECT,
  name: PROJECT,
  kind: 'agent',
  public: true,
  worker: { driver: 'process', command: ['bench-worker'] },
  regions: { default: { min: 0, max: 0 } },
};
/** a project with one worker: the first session takes it, the others wait until their pending deadline */
const waiting: ProjectInput = {
  id: 'cluster-timers',
  name: 'cluster-timers',
  kind: 'agent',
  public: true,
  worker: { driver: 'process', command: ['bench-worker'] },
  regions: { default: { min: 0, max: 1 } },
  maxQueueLength: 10_000,
  timeouts: { pendingMs: PENDING_MS },
};

interface SizeRun {
  servers: number;
  admitted: number;
  ms: number;
  latencies: number[];
  other: Record<string, number>;
  /** CPU of each server over the measured phase, % of one core */
  cpu: number[];
}

interface TakeoverRun {
  lateMs: number[];
  endedBy: Record<string, number>;
}

export const clusterBenchmark: Benchmark = {
  name: 'cluster',
  async run(options: BenchOptions): Promise<BenchResult> {
    const sizes: SizeRun[] = [];
    for (const n of SIZES) sizes.push(await admission(n, options));
    const takeover = await timersTakeover(options);
    return report(sizes, takeover);
  },
};

async function startServers(n: number, storage: Parameters<typeof openStore>[0], projects: ProjectInput[]) {
  const servers: BenchServer[] = [];
  for (let i = 0; i < n; i++)
    servers.push(
      await BenchServer.start(
        { storage, projects, adminKey: ADMIN_KEY, secret: SECRET, serverId: `bench-${i}` },
        { cpuProf: false },
      ),
    );
  return servers;
}

async function admission(n: number, { log }: BenchOptions): Promise<SizeRun> {
  const db = await benchDatabase('postgres');
  const servers = await startServers(n, db.storage, [project]);
  const clients = servers.map((s) => new HttpClient(s.url, Math.ceil(CONCURRENCY / n) + 1));
  try {
    // each server starts its share of the warm workers (a PATCH lets the server that takes it refill the pool)
    const total = WORKERS_PER_SERVER * n;
    log(
      `cluster (${n} server${n > 1 ? 's' : ''}): ${total} warm workers, ${WORKERS_PER_SERVER} started by each`,
    );
    for (let size = STEP, i = 0; size <= total; size += STEP, i++) {
      const r = await clients[i % n]!.call('PATCH', `/projects/${PROJECT}`, {
        regions: { default: { min: size, max: size } },
      });
      if (r.status !== 200) throw new Error(`PATCH /projects/${PROJECT}: ${r.status} ${r.body}`);
      await servers[0]!.readyWorkers(PROJECT, size, 120_000, log);
    }
    const latencies: number[] = [];
    const other: Record<string, number> = {};
    let admitted = 0;
    let next = 0;
    const admit = async (measure: boolean) => {
      const client = clients[next++ % n]!;
      const a = performance.now();
      const r = await client.call('POST', '/sessions', { projectId: PROJECT });
      const ms = performance.now() - a;
      const state = r.status === 201 ? (JSON.parse(r.body) as { state: string }).state : `HTTP ${r.status}`;
      if (!measure) return;
      if (state === 'connecting') {
        latencies.push(ms);
        admitted++;
      } else other[state] = (other[state] ?? 0) + 1;
    };
    for (let i = 0; i < WARMUP; i++) await admit(false);
    const budget = total - WARMUP - CONCURRENCY;
    const before = await Promise.all(servers.map((s) => s.stats()));
    let issued = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (issued < budget && performance.now() - t < MAX_MEASURE_MS) {
          issued++;
          await admit(true);
        }
      }),
    );
    const ms = performance.now() - t;
    const after = await Promise.all(servers.map((s) => s.stats()));
    return {
      servers: n,
      admitted,
      ms,
      latencies,
      other,
      cpu: servers.map((_, i) => cpuShare(before[i]!.cpu, after[i]!.cpu, ms)),
    };
  } finally {
    for (const c of clients) c.close();
    for (const s of servers) await s.close();
    await db.drop();
  }
}

/**
 * Three servers; the one that will be killed takes TIMERS sessions that can only wait, so it arms their pending
 * deadlines; it is killed with SIGKILL right away; the survivors' lateness is ended_at minus the deadline.
 */
async function timersTakeover({ log }: BenchOptions): Promise<TakeoverRun> {
  const db = await benchDatabase('postgres');
  const servers = await startServers(3, db.storage, [waiting]);
  const victim = new HttpClient(servers[2]!.url, 8);
  try {
    log(
      `cluster takeover: ${TIMERS} sessions asked of the server about to die (all but one wait), pending deadline ${PENDING_MS} ms`,
    );
    const ids: string[] = [];
    await Promise.all(
      Array.from({ length: TIMERS }, async () => {
        const r = await victim.call('POST', '/sessions', { projectId: waiting.id });
        if (r.status !== 201) throw new Error(`POST /sessions: ${r.status} ${r.body}`);
        ids.push((JSON.parse(r.body) as { id: string }).id);
      }),
    );
    victim.close();
    servers[2]!.server.kill('SIGKILL');
    servers[2]!.host.kill('SIGKILL');
    const store = await openStore(db.storage);
    try {
      const deadline = Date.now() + PENDING_MS + 30_000;
      for (;;) {
        const sessions = await store.read.listSessions({ projectId: waiting.id, limit: 10_000 });
        const open = sessions.filter((s) => s.state === 'queued');
        if (open.length === 0 || Date.now() > deadline) {
          const lateMs: number[] = [];
          const endedBy: Record<string, number> = {};
          for (const s of sessions) {
            if (s.endReason !== 'pending_timeout' || s.endedAt === null) continue;
            // the pending deadline counts from the request
            lateMs.push(s.endedAt - (s.createdAt + PENDING_MS));
            endedBy[s.endReason ?? '?'] = (endedBy[s.endReason ?? '?'] ?? 0) + 1;
          }
          if (open.length > 0) endedBy['still open'] = open.length;
          return { lateMs, endedBy };
        }
        await sleep(100);
      }
    } finally {
      await store.close();
    }
  } finally {
    for (const s of servers.slice(0, 2)) await s.close();
    await db.drop();
  }
}

const ms = (n: number) => `${round(n, 1)} ms`;

function report(sizes: SizeRun[], takeover: TakeoverRun): BenchResult {
  const figures: Figure[] = [];
  const one = sizes[0]!;
  const rate = (r: SizeRun) => r.admitted / (r.ms / 1000);
  for (const r of sizes) {
    const others = Object.entries(r.other)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ');
    figures.push({
      name: `sessions seated per second, ${r.servers} server${r.servers > 1 ? 's' : ''} on one PostgreSQL (${CONCURRENCY} in flight); p50 / p99`,
      value: `${Math.round(rate(r)).toLocaleString('en')}/s (${round(rate(r) / rate(one), 2)}× one server); ${ms(percentile(r.latencies, 50))} / ${ms(percentile(r.latencies, 99))}${others ? `; also ${others}` : ''}; server CPU ${r.cpu.map((c) => `${Math.round(c * 100)}%`).join(', ')}`,
      target: r.servers === 1 ? '≥ 2,000/s, p99 < 10 ms (issue 2)' : 'state how it scales',
      alternative: 'Agones allocation: about 300–400 allocations/s (published)',
    });
  }
  const late = takeover.lateMs;
  figures.push({
    name: `a killed server's deadlines (${TIMERS} pending deadlines it armed): how late the survivors fire them, p50 / max`,
    value: late.length
      ? `${ms(percentile(late, 50))} / ${ms(Math.max(...late))}; ${Object.entries(takeover.endedBy)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ')}`
      : 'none fired',
    target: 'within the 1 s deadline poll',
    alternative: '—',
  });
  return {
    name: 'cluster',
    title: 'Several servers on one PostgreSQL',
    method: [
      `For 1, 2 and 3 servers: each server is its own process with its own worker host, all on one fresh PostgreSQL schema; the pool of warm workers (${WORKERS_PER_SERVER.toLocaleString('en')} per server) is grown ${STEP} at a time through \`PATCH /projects/{id}\` sent to each server in turn, so every server starts and holds its share of the workers. The load generator sends \`POST /sessions\` round-robin to the servers, ${CONCURRENCY} in flight in all, after ${WARMUP} warm-up requests, until the pool is nearly used up or ${MAX_MEASURE_MS / 1000} s pass; a response counts when its state is \`connecting\`.`,
      `Takeover: three servers; ${TIMERS} sessions of a project with a single worker are asked of the third, which seats one and queues the rest, arming their ${PENDING_MS / 1000} s pending deadlines; it is killed with SIGKILL at once. Lateness is each queued session's \`ended_at\` minus its deadline (\`created_at\` + ${PENDING_MS / 1000} s), as the database records it.`,
      'Everything, PostgreSQL included, shares the 2 CPUs: more servers add processes, not cores.',
    ],
    figures,
    notes: [
      'A server seats a session in one transaction that locks the pool; servers that share a pool take turns on that lock, and every event also goes out as a PostgreSQL notification. On one machine the servers compete for the same two cores as PostgreSQL itself.',
    ],
  };
}

if (import.meta.main) {
  const r = await clusterBenchmark.run({ cpuProf: false, log: console.log });
  console.log(JSON.stringify(r, null, 2));
}
