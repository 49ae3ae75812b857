// Messages benchmark: room messages relayed between the users of many agent sessions and recorded (per second,
// relay and ack latency, every message in the database), against a bare `ws` room forwarder; and transcript
// pages read back from 1,000,000 stored messages, over HTTP and from storage alone; on SQLite and PostgreSQL.
import type { ProjectInput } from '@usher/protocol';
import { openStore, type Store } from '@usher/server';
import {
  ADMIN_KEY,
  type Benchmark,
  type BenchOptions,
  type BenchResult,
  BenchServer,
  benchDatabase,
  type DatabaseKind,
  type Figure,
  HttpClient,
  percentile,
  round,
  SECRET,
  type ServerStats,
  threadTime,
} from './lib/harness.ts';
import { logProfile } from './lib/profile.ts';
import type { Sample } from './lib/relay-load.ts';
import { type LoadResult, RoomLoad } from './lib/room-load.ts';
import { RoomForwarder, usherRooms } from './lib/room-relays.ts';
import {
  deepAsks,
  type FilledSession,
  fillTranscripts,
  httpPages,
  type PageTimes,
  randomAsks,
  settleAfterFill,
  storagePages,
} from './lib/transcript-pages.ts';

const PROJECT = 'messages-bench';
/** sessions, each with two users sending to each other (and a warm worker that gets every message) */
const ROOMS = Number(process.env.BENCH_MESSAGES_ROOMS ?? 100);
/** messages each user keeps in flight in the capacity run */
const WINDOW = 4;
/** the issue's target rate, and a tenth of it */
const TARGET_RATE = 20_000;
const MODERATE_RATE = 2_000;
/** in a paced run, a user with this many messages unanswered skips its turn (an overloaded relay) */
const PACED_MAX_IN_FLIGHT = 8;
const WARMUP_MS = 500;
/** counted load per relay and kind of run, in ROUNDS turns alternating between Usher and the forwarder */
const LOAD_MS = Number(process.env.BENCH_MESSAGES_LOAD_MS ?? 3_000);
const ROUNDS = 2;
/** messages one at a time, per relay */
const SERIAL = 1_000;
/** rows in the messages table for the page figures, and the one big session among FILL_SESSIONS */
const TOTAL_ROWS = Number(process.env.BENCH_MESSAGES_ROWS ?? 1_000_000);
const FILL_SESSIONS = 1_000;
const BIG_SESSION_ROWS = Math.min(100_000, Math.floor(TOTAL_ROWS / 10));
const FILL_BATCH = 5_000;
const PAGES = 2_000;
/** as many as the random pages: a p99 of 500 was the 5th-worst page, and moved by a millisecond between runs */
const DEEP_PAGES = 2_000;
const PAGES_IN_FLIGHT = 16;
const PAGES_CONCURRENT = 5_000;
const STORAGE_PAGES = 3_000;
/** messages each connection may send: far above any load here, so that the rate limit never drops one */
const MESSAGE_RATE = { perSecond: 1_000_000, burst: 1_000_000 };
const KINDS = (process.env.BENCH_MESSAGES_DATABASES ?? 'sqlite,postgres').split(',') as DatabaseKind[];

const project: ProjectInput = {
  id: PROJECT,
  name: PROJECT,
  kind: 'agent',
  public: true,
  worker: { driver: 'process', command: ['bench-worker'] },
  regions: { default: { min: 0, max: 0 } },
  afkEnabled: false,
};

/** The loaded runs of each round, in order. */
const LOADS = {
  moderate: { perSecond: MODERATE_RATE, maxInFlight: PACED_MAX_IN_FLIGHT },
  target: { perSecond: TARGET_RATE, maxInFlight: PACED_MAX_IN_FLIGHT },
  capacity: { window: WINDOW },
} as const;
type LoadKey = keyof typeof LOADS;
const LOAD_KEYS = Object.keys(LOADS) as LoadKey[];

/** CPU time over runs as a share of one core: the relay, its workers' process, this process (the users) */
interface CpuShare {
  relay: number;
  workers: number;
  load: number;
  /** the relay's main thread running, and waiting for a CPU (null where Linux does not tell) */
  run: number | null;
  wait: number | null;
}

interface Lag {
  p99Ms: number;
  maxMs: number;
}

/** One relay's runs of each kind, summed over the rounds. */
interface RelayRuns {
  serial: { relay: number[]; ack: number[] };
  loads: Record<LoadKey, LoadResult>;
  cpu: Record<LoadKey, CpuShare>;
  /** Usher only: the worst event-loop lag p99 and max over the rounds */
  lag: Record<LoadKey, Lag> | null;
  /** Usher only: each run's window on the server's clock (µs), to cut its CPU profile */
  windows: Record<LoadKey, { fromUs: number; toUs: number }[]>;
}

interface MessagesRun {
  kind: DatabaseKind;
  setupMs: number;
  usher: RelayRuns;
  bare: RelayRuns;
  /** messages sent through Usher, acked as recorded, and `user_text` rows found in the database */
  check: {
    sent: number;
    recorded: number;
    rows: number;
    wrong: number;
    errors: number;
    lastError: string | null;
  };
  fill: { ms: number; rows: number; fromRelay: number; total: number };
  pages: {
    http: PageTimes;
    deep: PageTimes;
    concurrent: PageTimes;
    storage: PageTimes;
    storageDeep: PageTimes;
    lag: Lag;
    cpu: number;
    /** how the server's main thread spent the pages with PAGES_IN_FLIGHT in flight */
    thread: string;
  };
  profile: string[];
}

export const messagesBenchmark: Benchmark = {
  name: 'messages',
  async run(options: BenchOptions): Promise<BenchResult> {
    const runs: MessagesRun[] = [];
    for (const kind of KINDS) runs.push(await runOn(kind, options));
    return report(runs);
  },
};

const emptyLoad = (): LoadResult => ({
  delivered: 0,
  acked: 0,
  sent: 0,
  ms: 0,
  relay: [],
  ack: [],
  skipped: 0,
});

function add(into: LoadResult, r: LoadResult): void {
  into.delivered += r.delivered;
  into.acked += r.acked;
  into.sent += r.sent;
  into.ms += r.ms;
  into.skipped += r.skipped;
  for (const x of r.relay) into.relay.push(x);
  for (const x of r.ack) into.ack.push(x);
}

const toSample = (s: ServerStats): Sample & { hrUs?: number } => ({
  cpu: s.cpu,
  sched: s.sched,
  hrUs: s.hrUs,
});

/** One side of the comparison: its load and how to sample its processes. */
interface Side {
  name: string;
  load: RoomLoad;
  /** the relay process's CPU, and for Usher its clock (to cut its CPU profile) */
  sample(): Promise<Sample & { hrUs?: number }>;
  workers(): Promise<{ user: number; system: number }>;
  /** Usher only: reset the lag histogram before a run, read it after */
  lag?: (reset: boolean) => Promise<Lag>;
  runs: RelayRuns;
  wallMs: Record<LoadKey, number>;
}

function byLoad<T>(make: () => T): Record<LoadKey, T> {
  return Object.fromEntries(LOAD_KEYS.map((k) => [k, make()])) as Record<LoadKey, T>;
}

function newRuns(usher: boolean): RelayRuns {
  return {
    serial: { relay: [], ack: [] },
    loads: byLoad(emptyLoad),
    cpu: byLoad(() => ({ relay: 0, workers: 0, load: 0, run: 0, wait: 0 })),
    lag: usher ? byLoad(() => ({ p99Ms: 0, maxMs: 0 })) : null,
    windows: byLoad(() => []),
  };
}

/** One loaded run on a side, with its CPU and lag added to the side's totals for its kind. */
async function loaded(
  side: Side,
  key: LoadKey,
  durationMs: number,
  log: (line: string) => void,
): Promise<void> {
  await side.lag?.(true);
  const a = await side.sample();
  const wa = await side.workers();
  const self = process.cpuUsage();
  const t = performance.now();
  const r = await side.load.run({ warmupMs: WARMUP_MS, durationMs, ...LOADS[key] });
  const wallMs = performance.now() - t;
  const used = process.cpuUsage(self);
  const b = await side.sample();
  const wb = await side.workers();
  const lag = await side.lag?.(false);
  add(side.runs.loads[key], r);
  if (a.hrUs !== undefined && b.hrUs !== undefined)
    side.runs.windows[key].push({ fromUs: a.hrUs, toUs: b.hrUs });
  const c = side.runs.cpu[key];
  side.wallMs[key] += wallMs;
  c.relay += (b.cpu.user + b.cpu.system - a.cpu.user - a.cpu.system) / 1000;
  c.workers += (wb.user + wb.system - wa.user - wa.system) / 1000;
  c.load += (used.user + used.system) / 1000;
  if (a.sched && b.sched && c.run !== null && c.wait !== null) {
    c.run += (b.sched.runNs - a.sched.runNs) / 1e6;
    c.wait += (b.sched.waitNs - a.sched.waitNs) / 1e6;
  } else {
    c.run = null;
    c.wait = null;
  }
  log(
    `    ${side.name}, ${loadName(key)}: ${fmt(perS(r.delivered, r.ms))}/s delivered, relay p99 ${ms(percentile(r.relay, 99))}${lag ? `, event-loop lag p99 ${lag.p99Ms} ms` : ''}`,
  );
  const worst = side.runs.lag?.[key];
  if (lag && worst) {
    worst.p99Ms = Math.max(worst.p99Ms, lag.p99Ms);
    worst.maxMs = Math.max(worst.maxMs, lag.maxMs);
  }
}

async function relayRounds(sides: Side[], log: (line: string) => void): Promise<void> {
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of sides) {
      const serial = await side.load.oneAtATime(Math.ceil(SERIAL / ROUNDS));
      side.runs.serial.relay.push(...serial.relay);
      side.runs.serial.ack.push(...serial.ack);
      for (const key of LOAD_KEYS) await loaded(side, key, LOAD_MS / ROUNDS, log);
    }
    log(`  round ${round + 1}/${ROUNDS} done`);
  }
  for (const side of sides)
    for (const key of LOAD_KEYS) {
      const c = side.runs.cpu[key];
      const w = side.wallMs[key];
      side.runs.cpu[key] = {
        relay: c.relay / w,
        workers: c.workers / w,
        load: c.load / w,
        run: c.run === null ? null : c.run / w,
        wait: c.wait === null ? null : c.wait / w,
      };
    }
}

async function count(store: Store, where = ''): Promise<number> {
  const row = await store.db.get<{ n: number | string }>(`SELECT count(*) AS n FROM messages${where}`);
  return Number(row?.n ?? 0);
}

async function runOn(kind: DatabaseKind, options: BenchOptions): Promise<MessagesRun> {
  const { log } = options;
  const db = await benchDatabase(kind);
  const setupStart = Date.now();
  const server = await BenchServer.start(
    {
      storage: db.storage,
      projects: [project],
      adminKey: ADMIN_KEY,
      secret: SECRET,
      messageRate: MESSAGE_RATE,
    },
    { cpuProf: options.cpuProf },
  );
  const http = new HttpClient(server.url, PAGES_IN_FLIGHT);
  let store: Store | null = null;
  let forwarder: RoomForwarder | null = null;
  let closed = false;
  try {
    log(`messages (${kind}): ${ROOMS} warm workers, ${ROOMS} sessions with 2 users each`);
    await server.growPool(PROJECT, ROOMS, 100, log);
    const rooms = await usherRooms(server.url, http, PROJECT, ROOMS);
    forwarder = await RoomForwarder.start(ROOMS);
    const fwd = forwarder;
    const bareRooms = await fwd.rooms(ROOMS);
    const setupMs = Date.now() - setupStart;

    const usher: Side = {
      name: 'Usher',
      load: new RoomLoad(rooms),
      sample: async () => toSample(await server.stats()),
      workers: async () => (await server.hostStats()).cpu ?? { user: 0, system: 0 },
      lag: async (reset) => (await server.stats({ resetLag: reset })).lag,
      runs: newRuns(true),
      wallMs: byLoad(() => 0),
    };
    const bare: Side = {
      name: 'forwarder',
      load: new RoomLoad(bareRooms),
      sample: () => fwd.sample(),
      workers: () => fwd.workerStats(),
      runs: newRuns(false),
      wallMs: byLoad(() => 0),
    };
    log(
      `messages (${kind}): ${ROUNDS} rounds of ${SERIAL / ROUNDS} one at a time, ${fmt(MODERATE_RATE)}/s and ${fmt(TARGET_RATE)}/s paced, ${WINDOW} in flight per user; Usher and the bare forwarder alternate`,
    );
    await relayRounds([usher, bare], log);
    for (const r of bareRooms) for (const u of r.users) u.ws.terminate();
    await fwd.close();
    forwarder = null;

    store = await openStore(db.storage);
    await usher.load.drain();
    // the ack says durable: nothing may be missing by now
    const t = usher.load.totals;
    const check = {
      sent: t.sent,
      recorded: t.recorded,
      rows: await count(store, " WHERE type = 'user_text'"),
      wrong: t.wrong + bare.load.totals.wrong,
      errors: t.errors + bare.load.totals.errors,
      lastError: t.lastError ?? bare.load.totals.lastError,
    };
    log(
      `messages (${kind}): ${check.sent.toLocaleString('en')} sent, ${check.recorded.toLocaleString('en')} acked as recorded, ${check.rows.toLocaleString('en')} user_text rows`,
    );

    // 1,000 sessions' transcripts: the big one and the other rooms are real sessions (pages are read from
    // them); the rest exist only in the messages table, as the transcripts of other sessions would
    const fromRelay = await count(store);
    const others = FILL_SESSIONS - 1;
    const rest = TOTAL_ROWS - fromRelay - BIG_SESSION_ROWS;
    const dayAgoUs = (Date.now() - 86_400_000) * 1000;
    const plan: FilledSession[] = [
      { id: rooms[0]!.sessionId, count: BIG_SESSION_ROWS, firstUs: dayAgoUs, stepUs: 1_000 },
    ];
    for (let i = 0; i < others; i++)
      plan.push({
        id: i + 1 < rooms.length ? rooms[i + 1]!.sessionId : `s_fill_${String(i).padStart(4, '0')}`,
        count: Math.floor(rest / others) + (i < rest % others ? 1 : 0),
        firstUs: dayAgoUs + i,
        stepUs: 1_000_000,
      });
    log(
      `messages (${kind}): filling the messages table to ${TOTAL_ROWS.toLocaleString('en')} rows (${(TOTAL_ROWS - fromRelay).toLocaleString('en')} more, ${FILL_BATCH.toLocaleString('en')} a statement)`,
    );
    const fillMs = await fillTranscripts(store, plan, {
      batchRows: FILL_BATCH,
      concurrency: kind === 'postgres' ? 2 : 1,
      log,
    });
    const total = await count(store);
    log(`messages (${kind}): ${total.toLocaleString('en')} rows after ${round(fillMs / 1000, 1)} s`);
    const settleMs = await settleAfterFill(store);
    if (settleMs > 0)
      log(`messages (${kind}): VACUUM (ANALYZE) messages took ${round(settleMs / 1000, 1)} s`);

    const big = plan[0]!;
    // pages are asked of the real sessions with enough messages for a full page before the cursor
    const real = plan.slice(0, rooms.length).filter((x) => x.count >= 120);
    log(`messages (${kind}): transcript pages over HTTP and from storage`);
    await httpPages(http, randomAsks(real, 200, 60), 1); // warm-up
    const pagesHttp = await httpPages(http, randomAsks(real, PAGES, 60), 1);
    const deep = await httpPages(http, deepAsks(big, DEEP_PAGES), 1);
    const pageStart = await server.stats({ resetLag: true });
    const concurrent = await httpPages(http, randomAsks(real, PAGES_CONCURRENT, 60), PAGES_IN_FLIGHT);
    const pageEnd = await server.stats();
    await storagePages(store, randomAsks(real, 200, 60)); // warm-up
    const storage = await storagePages(store, randomAsks(real, STORAGE_PAGES, 60));
    const storageDeep = await storagePages(store, deepAsks(big, DEEP_PAGES));

    await store.close();
    store = null;
    for (const r of rooms) for (const u of r.users) u.ws.terminate();
    http.close();
    closed = true;
    const profilePath = await server.close();
    const profile = [
      ...LOAD_KEYS.flatMap((k) => {
        const w = usher.runs.windows[k][0];
        return w ? logProfile(profilePath, 25, w, `${kind}, ${loadName(k)}, first round`, log) : [];
      }),
      ...logProfile(
        profilePath,
        15,
        { fromUs: pageStart.hrUs, toUs: pageEnd.hrUs },
        `${kind}, pages ${PAGES_IN_FLIGHT} in flight`,
        log,
      ),
    ];
    return {
      kind,
      setupMs,
      usher: usher.runs,
      bare: bare.runs,
      check,
      fill: { ms: fillMs, rows: TOTAL_ROWS - fromRelay, fromRelay, total },
      pages: {
        http: pagesHttp,
        deep,
        concurrent,
        storage,
        storageDeep,
        lag: pageEnd.lag,
        cpu:
          (pageEnd.cpu.user + pageEnd.cpu.system - pageStart.cpu.user - pageStart.cpu.system) /
          1000 /
          concurrent.ms,
        thread: threadTime(pageStart, pageEnd, concurrent.ms),
      },
      profile,
    };
  } finally {
    await forwarder?.close();
    await store?.close();
    if (!closed) {
      http.close();
      await server.close();
    }
    await db.drop();
  }
}

// ------------------------------------------------------------------ report

function ms(n: number): string {
  return Number.isNaN(n) ? '—' : `${round(n, n < 10 ? 2 : 1)} ms`;
}

const pp = (values: number[]) => `${ms(percentile(values, 50))} / ${ms(percentile(values, 99))}`;
const pct = (share: number) => `${Math.round(share * 100)}%`;
const perS = (n: number, msTotal: number) => Math.round((n / msTotal) * 1000);
const fmt = (n: number) => n.toLocaleString('en');
const met = (ok: boolean) => (ok ? 'met' : 'not met');

function rates(r: LoadResult): string {
  return `${fmt(perS(r.delivered, r.ms))}/s delivered to the other user, ${fmt(perS(r.acked, r.ms))}/s recorded and acked`;
}

/** Usher's ack says the message is stored; the forwarder's only that it was relayed. */
function latencies(r: { relay: number[]; ack: number[] }, durable = true): string {
  return `relay ${pp(r.relay)}; ack${durable ? ' (durable)' : ''} ${pp(r.ack)}`;
}

function cpu(c: CpuShare, relay: string, workers: string): string {
  const thread =
    c.run === null || c.wait === null
      ? ''
      : ` (its main thread ${pct(c.run)} on a CPU, ${pct(c.wait)} waiting for one)`;
  return `${relay} ${pct(c.relay)}${thread}, ${workers} ${pct(c.workers)}, load generator ${pct(c.load)}`;
}

function loadName(k: LoadKey): string {
  const l = LOADS[k];
  return 'window' in l ? 'capacity' : `${fmt(l.perSecond)}/s`;
}

function pageFigure(p: PageTimes): string {
  return `${pp(p.latencies)}${p.wrong ? ` (${p.wrong} wrong pages; last: ${p.lastWrong})` : ''}`;
}

function report(runs: MessagesRun[]): BenchResult {
  const figures: Figure[] = [];
  const notes: string[] = [];
  for (const r of runs) {
    const db = r.kind === 'sqlite' ? 'SQLite' : 'PostgreSQL';
    const u = r.usher;
    const b = r.bare;
    const target = r.kind === 'sqlite';
    const cap = u.loads.capacity;
    const bcap = b.loads.capacity;
    const paced = u.loads.target;
    const pacedOk = perS(paced.acked, paced.ms) >= TARGET_RATE * 0.98 && percentile(paced.relay, 99) < 5;
    const fwd = (l: LoadResult) => `${fmt(perS(l.delivered, l.ms))}/s; ${latencies(l, false)}`;
    figures.push(
      {
        name: `messages relayed and recorded per second at capacity (${db}, ${WINDOW} in flight per user); latency p50 / p99`,
        value: `${rates(cap)} (${fmt(cap.delivered)} in ${round(cap.ms / 1000, 1)} s); ${latencies(cap)}`,
        target: target
          ? `≥ ${fmt(TARGET_RATE)}/s: ${met(perS(cap.acked, cap.ms) >= TARGET_RATE)}`
          : 'none set',
        alternative: `bare \`ws\` room forwarder (bench/lib/room-forwarder.ts; relays, records nothing): ${fmt(perS(bcap.delivered, bcap.ms))}/s (Usher ${pct(cap.delivered / cap.ms / (bcap.delivered / bcap.ms))} of it); ${latencies(bcap, false)}`,
      },
      {
        name: `${fmt(TARGET_RATE)} messages/s offered (${db}): rate; latency p50 / p99`,
        value: `${rates(paced)}${paced.skipped ? ` (${fmt(paced.skipped)} sends skipped: the user had ${PACED_MAX_IN_FLIGHT} unanswered)` : ''}; ${latencies(paced)}`,
        target: target ? `≥ ${fmt(TARGET_RATE)}/s with relay p99 < 5 ms: ${met(pacedOk)}` : 'none set',
        alternative: `bare \`ws\` room forwarder: ${fwd(b.loads.target)}`,
      },
      {
        name: `${fmt(MODERATE_RATE)} messages/s offered (${db}): latency p50 / p99`,
        value: `${latencies(u.loads.moderate)} (${fmt(perS(u.loads.moderate.acked, u.loads.moderate.ms))}/s recorded)`,
        target: target ? `relay p99 < 5 ms: ${met(percentile(u.loads.moderate.relay, 99) < 5)}` : 'none set',
        alternative: `bare \`ws\` room forwarder: ${fwd(b.loads.moderate)}`,
      },
      {
        name: `one message at a time (${db}): latency p50 / p99`,
        value: latencies(u.serial),
        target: target ? `relay p99 < 5 ms: ${met(percentile(u.serial.relay, 99) < 5)}` : 'none set',
        alternative: `bare \`ws\` room forwarder: ${latencies(b.serial, false)}`,
      },
      {
        name: `every message sent is in the database (${db})`,
        value: `${fmt(r.check.sent)} sent, ${fmt(r.check.recorded)} acked as recorded, ${fmt(r.check.rows)} \`user_text\` rows${r.check.wrong ? `; ${r.check.wrong} deliveries or acks out of order or unknown` : ''}${r.check.errors ? `; ${r.check.errors} error frames (last: ${r.check.lastError})` : ''}`,
        target: `all: ${met(r.check.rows === r.check.sent && r.check.recorded === r.check.sent && !r.check.wrong && !r.check.errors)}`,
        alternative: '—',
      },
      {
        name: `server during the relay runs (${db})`,
        value: `event-loop lag p99 (max), worst round: ${LOAD_KEYS.map((k) => `${loadName(k)} ${u.lag?.[k].p99Ms} ms (${u.lag?.[k].maxMs} ms)`).join(', ')}; CPU at capacity, % of one core: ${cpu(u.cpu.capacity, 'Usher server', 'worker host')}; at ${fmt(TARGET_RATE)}/s: ${cpu(u.cpu.target, 'server', 'worker host')}`,
        target: '—',
        alternative: `at capacity: ${cpu(b.cpu.capacity, 'forwarder', 'worker stand-ins')}`,
      },
      {
        name: `transcript page of 50, random cursor, over HTTP one at a time, p50 / p99 (${db}, ${fmt(r.fill.total)} messages)`,
        value: pageFigure(r.pages.http),
        target: `p99 < 5 ms: ${met(percentile(r.pages.http.latencies, 99) < 5)}`,
        alternative: 'none named in the issue',
      },
      {
        name: `deep pages (cursor among the oldest 260 of ${fmt(BIG_SESSION_ROWS)} messages), over HTTP, p50 / p99 (${db})`,
        value: pageFigure(r.pages.deep),
        target: `p99 < 5 ms: ${met(percentile(r.pages.deep.latencies, 99) < 5)}`,
        alternative: 'none named in the issue',
      },
      {
        name: `pages with ${PAGES_IN_FLIGHT} in flight over HTTP: rate, p50 / p99 (${db})`,
        value: `${fmt(perS(r.pages.concurrent.latencies.length, r.pages.concurrent.ms))} pages/s, ${pageFigure(r.pages.concurrent)}; server CPU ${pct(r.pages.cpu)}, event-loop lag p99 ${r.pages.lag.p99Ms} ms; ${r.pages.thread}`,
        target: '—',
        alternative: '—',
      },
      {
        name: `the storage query alone (MessageLog.page), p50 / p99 (${db})`,
        value: `random cursor ${pageFigure(r.pages.storage)}; deep ${pageFigure(r.pages.storageDeep)}`,
        target: '—',
        alternative: '—',
      },
    );
    notes.push(
      `${r.kind}: filling the messages table with ${fmt(r.fill.rows)} rows (to ${fmt(r.fill.total)} with the ${fmt(r.fill.fromRelay)} the relay runs recorded) took ${round(r.fill.ms / 1000, 1)} s (${fmt(perS(r.fill.rows, r.fill.ms))} rows/s); starting the server, ${ROOMS} workers, sessions and sockets ${round(r.setupMs / 1000, 1)} s.`,
    );
  }
  for (const r of runs)
    if (r.profile.length) notes.push(`${r.kind} profile: ${r.profile.slice(0, 10).join('; ')}`);
  return {
    name: 'messages',
    title: 'Messages: relayed and recorded, transcript pages',
    method: [
      `One agent project with ${ROOMS} warm workers (bare \`ws\` clients in a worker-host process: they register, say \`ready\`, answer \`assign\` with \`session_started\` and read every message they are given). ${ROOMS} sessions, each with two users who joined through \`POST /sessions/{id}/join\` (the session's token) and opened \`GET /sessions/{id}/ws\` with their own tokens; no viewer socket. AFK is off.`,
      `Each user sends \`{type:'message', messageType:'user_text', data:{text (93 characters), n}, ref}\`; the server relays it as \`session.message\` to both users' sockets and to the session's worker, records it and answers \`message_ack\` once the row is written. Relay latency is send → delivery at the other user; ack latency is send → \`message_ack\` at the sender (durable). Both ends are in the load generator (one process, one clock).`,
      `Four kinds of run: ${fmt(SERIAL)} messages one at a time (alternating users, each waits for its delivery and ack); paced at ${fmt(MODERATE_RATE)} and at ${fmt(TARGET_RATE)} messages/s in all, round-robin over the ${ROOMS * 2} users, checked every millisecond (a user with ${PACED_MAX_IN_FLIGHT} unanswered skips its turn, which shows as skipped sends when the relay cannot keep up); at capacity, every user keeps ${WINDOW} messages in flight (${ROOMS * 2 * WINDOW} in all), the next sent when one is both delivered and acked. Each loaded run: ${WARMUP_MS} ms not counted, then counted; ${round(LOAD_MS / 1000, 1)} s counted per kind, in ${ROUNDS} turns that alternate with the forwarder's so that other work on the machine falls on both alike.`,
      `The per-participant and per-room message rates (\`UsherServerOptions.messageRate\`, default 50/s with bursts of 100; \`roomMessageRate\`, default 500/s with bursts of 1,000) are raised to ${fmt(MESSAGE_RATE.perSecond)}/s for the benchmark, so that no message is dropped by them.`,
      "The alternative gets the same users and load: a bare `ws` room forwarder in its own process (room-forwarder.ts) that wraps each message in Usher's envelope, sends it to both users and the room's worker stand-in (one bare client per room in another process, which parses it) and acks it at once; like Usher, it sends a socket's frames of one event-loop turn in one write. No sessions, validation, authentication or recording: it shows what this machine and load generator allow a relay, whatever it does.",
      'The check: after the runs the load generator opens the same database and counts the `user_text` rows; every message sent must be there.',
      `Pages: the messages table is filled to ${fmt(TOTAL_ROWS)} rows through \`MessageLog.append\` (the server's own multi-row INSERT, ${fmt(FILL_BATCH)} rows a statement) from the load generator on the same database: ${fmt(FILL_SESSIONS)} sessions' transcripts, one of ${fmt(BIG_SESSION_ROWS)} messages, the others about ${fmt(Math.round((TOTAL_ROWS - BIG_SESSION_ROWS) / (FILL_SESSIONS - 1)))}; user, agent and transcript lines, every 20th a \`debug\` message. The big one and the ${ROOMS - 1} other benchmark sessions are real sessions; the others exist only in the messages table. On PostgreSQL the table is then vacuumed and analysed (\`VACUUM (ANALYZE) messages\`), as autovacuum does soon after such a load, so that the pages are not measured beside that work.`,
      `\`GET /sessions/{id}/messages?limit=50&before=…\` with the admin key over keep-alive HTTP/1.1: ${fmt(PAGES)} pages one at a time with a cursor at a random message (half of them in the big session, half in one of the other benchmark sessions), ${fmt(DEEP_PAGES)} deep pages (a cursor among the big session's oldest 260 messages), then ${fmt(PAGES_CONCURRENT)} random pages with ${PAGES_IN_FLIGHT} in flight; each page is checked (50 messages, the expected newest). The storage query alone: \`store.messages.page()\` on the load generator's own connection, ${fmt(STORAGE_PAGES)} random and ${fmt(DEEP_PAGES)} deep cursors.`,
      'SQLite: a file in a temp folder (WAL). PostgreSQL: a fresh schema in database `test` on 127.0.0.1, pool of 10 connections (the server default). Server, worker host, forwarder, load generator and PostgreSQL share the machine.',
    ],
    figures,
    notes,
  };
}

if (import.meta.main) {
  const r = await messagesBenchmark.run({ cpuProf: process.argv.includes('--cpu-prof'), log: console.log });
  console.log(JSON.stringify(r, null, 2));
}
