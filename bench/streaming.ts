// Streaming benchmark: click-to-first-frame in headless Chromium on a warm demo streamer, split into Usher's
// share and WebRTC's; signalling relay throughput and latency between many viewer/streamer pairs, against a
// bare `ws` forwarder; and the server memory each connected viewer costs.
import type { ProjectInput } from '@usher/protocol';
import { demoProjects } from '../packages/cli/src/demo.ts';
import {
  type FirstFrameResult,
  type FirstFrameSplit,
  measureFirstFrame,
  type VideoStats,
} from './lib/first-frame.ts';
import {
  ADMIN_KEY,
  type Benchmark,
  type BenchOptions,
  type BenchResult,
  benchDatabase,
  type Figure,
  HttpClient,
  percentile,
  round,
  SECRET,
  threadTime,
} from './lib/harness.ts';
import { logProfile } from './lib/profile.ts';
import {
  compareRelays,
  Forwarder,
  type LoadResult,
  type Pair,
  type RelayRun,
  usherPairs,
} from './lib/relay-load.ts';
import { StreamServer } from './lib/stream-server.ts';
import { measureViewerMemory, type ViewerMemory } from './lib/viewer-memory.ts';

/** measured click-to-first-frame runs, after WARMUP_RUNS unmeasured ones */
const RUNS = Number(process.env.BENCH_STREAMING_RUNS ?? 20);
const WARMUP_RUNS = 3;
const FIRST_FRAME_TIMEOUT_MS = 15_000;
/** viewer/streamer pairs of the relay load, and the candidates each keeps in flight per direction */
const PAIRS = Number(process.env.BENCH_STREAMING_PAIRS ?? 50);
const WINDOW = 4;
const LOAD_WARMUP_MS = 500;
/** counted load per relay, in ROUNDS turns that alternate between Usher and the forwarder */
const LOAD_MS = Number(process.env.BENCH_STREAMING_LOAD_MS ?? 6_000);
const ROUNDS = 3;
/** messages sent one at a time through one pair, for the latency without load (per relay) */
const SERIAL_MESSAGES = 2_000;
/** viewers of the memory figure, their sockets opened in MEMORY_STEPS steps */
const VIEWERS = Number(process.env.BENCH_STREAMING_VIEWERS ?? 4_000);
const MEMORY_STEPS = 4;
/** sockets opened before the memory baseline (they start the SQLite checkpointer thread: see viewer-memory.ts) */
const MEMORY_WARMUP = 1_000;

/** the project `usher demo` runs, as it runs it */
const DEMO = 'demo';
const demo = demoProjects().find((p) => p.id === DEMO)!;
const DEMO_WORKERS = demo.regions?.default?.max ?? 2;
const RELAY = 'relay-bench';
const relayProject: ProjectInput = {
  id: RELAY,
  name: 'relay-bench',
  kind: 'stream',
  public: true,
  worker: { driver: 'external' },
  regions: { default: { min: 0, max: PAIRS } },
  reuseWorkers: true,
  afkEnabled: false,
};
const CROWD = 'crowd-bench';
const crowdProject: ProjectInput = {
  id: CROWD,
  name: 'crowd-bench',
  kind: 'stream',
  public: true,
  worker: { driver: 'external' },
  regions: { default: { min: 0, max: 1 } },
  reuseWorkers: true,
  afkEnabled: false,
  maxQueueLength: VIEWERS * 2,
  timeouts: { pendingMs: 3_600_000 },
};

export const streamingBenchmark: Benchmark = {
  name: 'streaming',
  async run(options: BenchOptions): Promise<BenchResult> {
    const { firstFrame, firstFrameThread, usher, bare, profile } = await onUsher(options);
    const memory = await onMemory(options);
    return report({ ff: firstFrame, firstFrameThread, usher, bare, memory, profile });
  },
};

/** Click-to-first-frame on the demo streamers, then the relay load, on one server. */
async function onUsher(options: BenchOptions): Promise<{
  firstFrame: FirstFrameResult;
  firstFrameThread: string;
  usher: RelayRun;
  bare: RelayRun;
  profile: string[];
}> {
  const { log } = options;
  const db = await benchDatabase('sqlite');
  const server = await StreamServer.start(
    {
      storage: db.storage,
      projects: [demo, relayProject],
      adminKey: ADMIN_KEY,
      secret: SECRET,
      pagesRoot: `${import.meta.dirname}/lib/streaming-page`,
    },
    { cpuProf: options.cpuProf },
  );
  const http = new HttpClient(server.url, 8);
  let closed = false;
  try {
    log(`streaming: waiting for ${DEMO_WORKERS} demo streamers`);
    await server.readyWorkers(DEMO, DEMO_WORKERS, 60_000);
    log(`streaming: click to first frame in Chromium, ${WARMUP_RUNS} warm-up + ${RUNS} runs`);
    const before = await server.stats();
    const t = performance.now();
    const firstFrame = await measureFirstFrame(server, {
      projectId: DEMO,
      workers: DEMO_WORKERS,
      runs: RUNS,
      warmup: WARMUP_RUNS,
      timeoutMs: FIRST_FRAME_TIMEOUT_MS,
      log,
    });
    const firstFrameThread = threadTime(before, await server.stats(), performance.now() - t);

    log(`streaming: ${PAIRS} viewer/streamer pairs through Usher and through a bare ws forwarder`);
    const { pairs, streamers } = await usherPairs(server.url, http, RELAY, PAIRS);
    const forwarder = await Forwarder.start();
    let relays: RelayRun[];
    let window: { fromUs: number; toUs: number };
    try {
      const forwarded = await forwarder.pairs(PAIRS);
      const start = await server.stats();
      relays = await compareRelays(
        [
          { pairs, sample: () => server.stats() },
          { pairs: forwarded, sample: () => forwarder.sample() },
        ],
        {
          rounds: ROUNDS,
          window: WINDOW,
          warmupMs: LOAD_WARMUP_MS,
          durationMs: LOAD_MS / ROUNDS,
          serialMessages: SERIAL_MESSAGES,
        },
      );
      window = { fromUs: start.hrUs, toUs: (await server.stats()).hrUs };
      closePairs(forwarded);
    } finally {
      await forwarder.close();
    }
    closePairs(pairs);
    for (const s of streamers) s.ws.terminate();
    http.close();
    closed = true;
    const profile = logProfile(await server.close(), 25, window, 'relay load', log);
    return { firstFrame, firstFrameThread, usher: relays[0]!, bare: relays[1]!, profile };
  } finally {
    if (!closed) {
      http.close();
      await server.close();
    }
    await db.drop();
  }
}

async function onMemory(options: BenchOptions): Promise<ViewerMemory> {
  const db = await benchDatabase('sqlite');
  const server = await StreamServer.start(
    { storage: db.storage, projects: [crowdProject], adminKey: ADMIN_KEY, secret: SECRET },
    { cpuProf: false },
  );
  const http = new HttpClient(server.url, 32);
  try {
    return await measureViewerMemory(server, http, {
      projectId: CROWD,
      viewers: VIEWERS,
      warmup: MEMORY_WARMUP,
      steps: MEMORY_STEPS,
      log: options.log,
    });
  } finally {
    http.close();
    await server.close();
    await db.drop();
  }
}

function closePairs(pairs: Pair[]): void {
  for (const p of pairs) {
    p.viewer.terminate();
    p.streamer.terminate();
  }
}

// ------------------------------------------------------------------ report

function ms(n: number): string {
  return Number.isNaN(n) ? '—' : `${round(n, n < 10 ? 2 : 1)} ms`;
}

function pp(values: number[], a = 50, b = 95): string {
  return `${ms(percentile(values, a))} / ${ms(percentile(values, b))}`;
}

const met = (ok: boolean) => (ok ? 'met' : 'not met');
const kib = (bytes: number) => `${round(bytes / 1024, 1)} KiB`;
const pct = (share: number) => `${Math.round(share * 100)}%`;
const perS = (r: LoadResult) => (r.delivered / r.ms) * 1000;
const thread = (r: RelayRun) =>
  r.cpu.run === null || r.cpu.wait === null
    ? ''
    : ` (its main thread ${pct(r.cpu.run)} on a CPU, ${pct(r.cpu.wait)} waiting for one)`;

function report(r: {
  ff: FirstFrameResult;
  firstFrameThread: string;
  usher: RelayRun;
  bare: RelayRun;
  memory: ViewerMemory;
  profile: string[];
}): BenchResult {
  const { ff, usher, bare, memory, profile } = r;
  const s = ff.splits;
  const col = (k: keyof FirstFrameSplit) => s.map((x) => x[k]);
  const p50 = (k: keyof FirstFrameSplit) => ms(percentile(col(k), 50));
  const runs = `${s.length} runs${ff.failures.length ? `, ${ff.failures.length} failed` : ''}`;
  const usherP95 = percentile(col('usher'), 95);
  const figures: Figure[] = [
    {
      name: `click to first frame, warm worker, p50 / p95 (${runs})`,
      value: pp(col('total')),
      target: '—',
      alternative: "Epic's SignallingWebServer with its frontend: no published figure found",
    },
    {
      name: "Usher's share of it, p50 / p95",
      value: `${pp(col('usher'))} — p50 of its parts: POST /sessions ${p50('post')}, socket to snapshot ${p50('socketToSnapshot')} (handshake ${p50('handshake')}), streamer list round trip ${p50('streamerListRtt')}, relay hops ${p50('relayHops')}`,
      target: `p95 < 20 ms: ${met(usherP95 < 20)}`,
      alternative: 'none published',
    },
    {
      name: "of Usher's share, the time in the server process, p50 / p95",
      value: `${pp(col('usherServer'))} — p50 of its parts: POST /sessions ${p50('serverPost')}, socket request to snapshot sent ${p50('serverSnapshot')}; the rest of Usher's share is the browser's fetch and WebSocket, the SDK and loopback`,
      target: `p95 < 20 ms: ${met(percentile(col('usherServer'), 95) < 20)}`,
      alternative: 'none published',
    },
    {
      name: "WebRTC's and the streamer's share, p50 / p95",
      value: `${pp(col('rest'))} — p50 of its parts: the streamer's offer ${p50('streamerOffer')}, offer to first frame ${p50('offerToFrame')} (ICE connected ${p50('iceConnectedAfterOffer')} after the offer)`,
      target: '—',
      alternative: '—',
    },
    {
      name: `signalling relayed, ${PAIRS} viewer/streamer pairs, ${WINDOW} ICE candidates in flight per direction`,
      value: `${Math.round(perS(usher.load)).toLocaleString('en')} messages/s (${usher.load.delivered.toLocaleString('en')} in ${round(usher.load.ms / 1000, 1)} s${usher.load.wrong ? `; ${usher.load.wrong} wrong` : ''})`,
      target: 'none set',
      alternative: `bare \`ws\` forwarder (bench/lib/ws-forwarder.ts): ${Math.round(perS(bare.load)).toLocaleString('en')} messages/s (Usher ${pct(perS(usher.load) / perS(bare.load))} of it)`,
    },
    {
      name: 'relay latency under that load, p50 / p99',
      value: pp(usher.load.latencies, 50, 99),
      target: 'none set',
      alternative: `bare \`ws\` forwarder: ${pp(bare.load.latencies, 50, 99)}`,
    },
    {
      name: 'relay latency, one message at a time, p50 / p99',
      value: pp(usher.serial, 50, 99),
      target: 'none set',
      alternative: `bare \`ws\` forwarder: ${pp(bare.serial, 50, 99)}`,
    },
    {
      name: 'CPU during the relay load (% of one core)',
      value: `Usher server ${pct(usher.cpu.relay)}${thread(usher)}; load generator ${pct(usher.cpu.load)}`,
      target: '—',
      alternative: `bare \`ws\` forwarder ${pct(bare.cpu.relay)}${thread(bare)}; load generator ${pct(bare.cpu.load)}`,
    },
    {
      name: `memory per connected viewer (${memory.viewers.toLocaleString('en')} stream-session sockets)`,
      value: `${kib(memory.perViewerRss)} RSS, ${kib(memory.perViewerHeap)} JS heap per open socket (by step of ${(memory.viewers / memory.steps.length).toLocaleString('en')}: RSS ${memory.steps.map((x) => kib(x.rss)).join(', ')}; heap ${memory.steps.map((x) => kib(x.heap)).join(', ')}); the session itself, before its socket: ${kib(memory.perSessionRss)} RSS, ${kib(memory.perSessionHeap)} heap`,
      target: `< 20 KB (19.5 KiB) RSS: ${met(memory.perViewerRss < 20_000)}`,
      alternative: 'an idle `ws` connection alone: about 8–9 KiB RSS (FIELD-NOTES.md)',
    },
  ];
  const notes: string[] = [];
  const how = Object.entries(ff.how)
    .map(([k, v]) => `${v} by ${k}`)
    .join(', ');
  notes.push(
    `first frame signalled: ${how}. Over the runs: ${r.firstFrameThread} (Chromium, the two demo streamers with their ffmpeg and the server share the CPUs).`,
  );
  if (ff.video.length) {
    const med = (k: keyof VideoStats) =>
      percentile(
        ff.video.map((v) => v[k]),
        50,
      );
    notes.push(
      `most of "offer to first frame" is waiting for the demo streamer's video, not the connection: ICE connected a median ${p50('iceConnectedAfterOffer')} after the offer, but at the first frame the browser had received (median) ${med('packetsReceived')} RTP packets making ${med('framesReceived')} frame (${med('keyFramesDecoded')} keyframe decoded) and had sent ${med('pliCount')} keyframe requests (PLI), i.e. no video reached it before that keyframe. The demo streamer starts ffmpeg when a viewer subscribes, encodes a keyframe every quarter second and does not act on PLI. The fastest run took ${ms(Math.min(...col('total')))} in all.`,
    );
  }
  for (const f of ff.failures.slice(0, 5)) notes.push(`failed run: ${f}`);
  notes.push(
    `memory setup (${memory.viewers.toLocaleString('en')} sessions and sockets) took ${round(memory.setupMs / 1000, 1)} s.`,
  );
  if (profile.length) notes.push(`relay-load profile: ${profile.slice(0, 8).join('; ')}`);
  return {
    name: 'streaming',
    title: 'Streaming: first frame, signalling relay, memory per viewer',
    method: [
      `Click to first frame: the server runs the \`demo\` project of \`usher demo\` (${DEMO_WORKERS} demo streamers started by the process driver, \`reuseWorkers\`); headless Chromium (\`/usr/bin/chromium\` through \`playwright-core\`) opens a page at the server's origin that loads \`/sdk/usher.js\`. Each run waits until both workers are ready (warm: the streamer is up and registered; its ffmpeg starts when a viewer connects, as the demo streamer does), then calls \`UsherSession.start()\` with a new \`<video>\` and ends when \`requestVideoFrameCallback\` reports the first presented frame; then \`leave()\`. ${WARMUP_RUNS} unmeasured runs first.`,
      "The page stamps each step with performance.now() through the SDK's injectable `fetch`, `WebSocket` and `RTCPeerConnection` (wrappers that stamp and pass through). The server process stamps every WebSocket frame it receives or sends and every HTTP request (by wrapping `ws` and the HTTP server's `request` event in that process; no server code is changed). Every difference is taken between two stamps of one process, on its clock.",
      "Usher's share = (page sends `subscribe`) − (click), which holds POST /sessions, the socket, its snapshot, the streamer-list round trip and the SDK; + (page receives the offer − page sends `subscribe`) − (server receives the streamer's offer − server sends `playerConnected`), i.e. that round trip minus the streamer's time; + the answer's hop: the server's time from receiving the answer to sending it on, plus one browser→server leg (half the wire time of the subscribe→offer round trip). The rest of the click-to-first-frame time is WebRTC's and the streamer's: creating the offer (werift), SDP in the browser, ICE, DTLS, ffmpeg's first keyframe, decoding. Loopback legs between the server and the streamer count as the streamer's.",
      `Relay: ${PAIRS} streamers (bare \`ws\` clients registered with a pool token on an external stream project) and ${PAIRS} viewers (bare \`ws\` session sockets, seated, subscribed, offered); each pair sends \`iceCandidate\` messages both ways, keeping ${WINDOW} in flight per direction (${PAIRS * 2 * WINDOW} in all). The alternative gets the same clients and load: a bare \`ws\` forwarder in its own process (parse, add or read \`playerId\`, send; no sessions, no validation). The two take ${ROUNDS} turns each, alternating, so that other work on the machine falls on both alike; a turn is ${Math.round(SERIAL_MESSAGES / ROUNDS)} messages one at a time through one pair (alternating directions), then ${LOAD_WARMUP_MS} ms of load not counted and ${round(LOAD_MS / ROUNDS / 1000, 1)} s counted. Latency is send → delivery at the other end, both ends in the load generator (one process, one clock).`,
      `Memory: a fresh server with an external stream project of 1 worker (one bare streamer) and ${(MEMORY_WARMUP + VIEWERS).toLocaleString('en')} sessions (one seated, the rest queued). Every viewer's socket is opened as the SDK opens it (config, snapshot, queue position, then \`listStreamers\`, held while the session waits): ${MEMORY_WARMUP.toLocaleString('en')} before the baseline, whose writes also start the server's SQLite checkpointer thread (a fixed cost of about 20 MiB RSS per database, which would otherwise land in the first step), then ${VIEWERS.toLocaleString('en')} in ${MEMORY_STEPS} steps; server RSS and JS heap after GC are read before and after each step. The figure is the growth over all steps divided by ${VIEWERS.toLocaleString('en')}; RSS grows in jumps (V8 and malloc reserve memory ahead), so the steps are shown beside it.`,
      'SQLite (a file in a temp folder). Server, streamers, Chromium and the load generator share the machine; Chromium coarsens performance.now() to 0.1 ms.',
    ],
    figures,
    notes,
  };
}

if (import.meta.main) {
  const r = await streamingBenchmark.run({ cpuProf: process.argv.includes('--cpu-prof'), log: console.log });
  console.log(JSON.stringify(r, null, 2));
}
