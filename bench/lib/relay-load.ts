// Signalling load between viewer/streamer pairs: each pair trickles ICE candidates both ways through a relay
// (Usher, or the bare forwarder it is compared with) with a bounded number in flight per direction, and every
// delivery is timed from its send. The pairs are plain `ws` clients in this process.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import WebSocket from 'ws';
import { BareStreamer, openViewer, poolSignallingUrl } from './bare-signalling.ts';
import { type HttpClient, sleep } from './harness.ts';
import { IpcClient } from './ipc.ts';
import { schedstat } from './schedstat.ts';

/** One viewer and the streamer it is subscribed to, through a relay. */
export interface Pair {
  viewer: WebSocket;
  streamer: WebSocket;
  playerId: string;
}

/** A typical host candidate, as browsers and UE trickle them. */
const CANDIDATE = {
  candidate:
    'candidate:842163049 1 udp 1677729535 192.0.2.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0',
  sdpMid: '0',
  sdpMLineIndex: 0,
};
const PREFIX = Buffer.from('{"type":"iceCandidate"');

/**
 * n pairs through Usher: n streamers register with a pool token of `projectId` (an external stream project),
 * then n sessions are created and seated on them; each viewer subscribes and gets its streamer's offer.
 */
export async function usherPairs(
  serverUrl: string,
  http: HttpClient,
  projectId: string,
  n: number,
): Promise<{ pairs: Pair[]; streamers: BareStreamer[] }> {
  const signallingUrl = await poolSignallingUrl(http, projectId);
  const streamers = Array.from({ length: n }, (_, i) => new BareStreamer(signallingUrl, `bench-${i}`));
  const byWorker = new Map<string, BareStreamer>();
  for (const s of streamers) byWorker.set(await s.workerId, s);
  const pairs: Pair[] = [];
  for (let i = 0; i < n; i++) {
    const r = await http.call('POST', '/sessions', { projectId });
    if (r.status !== 201) throw new Error(`POST /sessions: ${r.status} ${r.body}`);
    const session = JSON.parse(r.body) as { id: string; token: string; state: string };
    if (session.state !== 'connecting')
      throw new Error(`session ${i} of ${projectId} is ${session.state}, not seated on a ready streamer`);
    const viewer = await openViewer(serverUrl, session);
    viewer.ws.send(JSON.stringify({ type: 'listStreamers' }));
    const workerId = String(((await viewer.next('streamerList')).ids as string[])[0]);
    const streamer = byWorker.get(workerId);
    if (!streamer) throw new Error(`streamerList named ${workerId}, which is none of the bench streamers`);
    const playerId = new Promise<string>((resolve) => {
      streamer.onPlayer = resolve;
    });
    viewer.ws.send(JSON.stringify({ type: 'subscribe', streamerId: workerId }));
    const id = await playerId;
    // Usher holds a streamer's candidates until its offer has gone through, as Epic's frontend needs
    streamer.ws.send(JSON.stringify({ type: 'offer', playerId: id, sdp: 'v=0 (bench)' }));
    await viewer.next('offer');
    pairs.push({ viewer: viewer.ws, streamer: streamer.ws, playerId: id });
  }
  return { pairs, streamers };
}

const FORWARDER_SOURCE = join(import.meta.dirname, 'ws-forwarder.ts');

/**
 * The named alternative: a minimal relay in a process of its own (ws-forwarder.ts: the same `ws` library, no
 * sessions, no validation); a viewer and a streamer meet by a pair number, and each JSON message goes to the
 * other side, with the player id added on the way to the streamer and read to route on the way back.
 */
export class Forwarder {
  readonly child: ChildProcess;
  readonly ipc: IpcClient;
  url = '';

  private constructor(child: ChildProcess) {
    this.child = child;
    this.ipc = new IpcClient(child);
  }

  static async start(): Promise<Forwarder> {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', FORWARDER_SOURCE], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const f = new Forwarder(child);
    f.url = await new Promise<string>((resolve, reject) => {
      child.on('message', (m: { t?: string; url?: string }) => {
        if (m.t === 'listening') resolve(m.url!);
      });
      child.once('exit', (code) => reject(new Error(`the forwarder exited with ${code}`)));
    });
    return f;
  }

  /** the forwarder's CPU time so far (µs), and its main thread's where Linux tells (ns) */
  async sample(): Promise<Sample> {
    const cpu = await this.ipc.request<{ user: number; system: number }>({ t: 'cpu' });
    return { cpu, sched: schedstat(`/proc/${this.child.pid}/schedstat`) };
  }

  async pairs(n: number): Promise<Pair[]> {
    const open = (side: string, i: number) =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(`${this.url}/?pair=p${i}&side=${side}`, { perMessageDeflate: false });
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
    const pairs: Pair[] = [];
    for (let i = 0; i < n; i++)
      pairs.push({ viewer: await open('viewer', i), streamer: await open('streamer', i), playerId: `p${i}` });
    return pairs;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.disconnect();
    await exited;
  }
}

export interface LoadResult {
  /** messages delivered in the measured window, both directions */
  delivered: number;
  ms: number;
  /** send → delivery of each message delivered in the window (ms) */
  latencies: number[];
  /** deliveries that were not the expected iceCandidate (a relay that changed or lost messages) */
  wrong: number;
}

/** One direction of a pair: its send times in order (deliveries are in order on one socket pair). */
class Lane {
  readonly from: WebSocket;
  readonly message: string;
  readonly sentAt: number[] = [];
  head = 0;

  constructor(from: WebSocket, message: string) {
    this.from = from;
    this.message = message;
  }

  send(): void {
    this.sentAt.push(performance.now());
    this.from.send(this.message);
  }

  get inFlight(): number {
    return this.sentAt.length - this.head;
  }
}

/**
 * Every pair sends ICE candidates both ways, keeping `window` in flight per direction, for warmupMs (not
 * counted) then durationMs (counted); then sending stops and what is in flight drains.
 */
export async function pump(
  pairs: Pair[],
  o: { window: number; warmupMs: number; durationMs: number },
): Promise<LoadResult> {
  let sending = true;
  let counting = false;
  const result: LoadResult = { delivered: 0, ms: 0, latencies: [], wrong: 0 };
  const lanes: Lane[] = [];
  for (const p of pairs) {
    const toStreamer = new Lane(p.viewer, JSON.stringify({ type: 'iceCandidate', candidate: CANDIDATE }));
    const toViewer = new Lane(
      p.streamer,
      JSON.stringify({ type: 'iceCandidate', playerId: p.playerId, candidate: CANDIDATE }),
    );
    const deliver = (lane: Lane) => (data: Buffer) => {
      if (data.compare(PREFIX, 0, PREFIX.length, 0, PREFIX.length) !== 0 || lane.inFlight === 0) {
        result.wrong++;
        return;
      }
      const latency = performance.now() - lane.sentAt[lane.head++]!;
      if (counting) {
        result.delivered++;
        result.latencies.push(latency);
      }
      if (sending) lane.send();
    };
    p.streamer.removeAllListeners('message');
    p.viewer.removeAllListeners('message');
    p.streamer.on('message', deliver(toStreamer));
    p.viewer.on('message', deliver(toViewer));
    lanes.push(toStreamer, toViewer);
  }
  for (const lane of lanes) for (let i = 0; i < o.window; i++) lane.send();
  await sleep(o.warmupMs);
  counting = true;
  const t = performance.now();
  await sleep(o.durationMs);
  counting = false;
  result.ms = performance.now() - t;
  sending = false;
  const deadline = Date.now() + 10_000;
  while (lanes.some((l) => l.inFlight > 0) && Date.now() < deadline) await sleep(20);
  return result;
}

/** One message at a time through one pair, alternating directions: the relay's latency without load. */
export async function oneAtATime(pair: Pair, count: number): Promise<number[]> {
  const latencies: number[] = [];
  const toStreamer = JSON.stringify({ type: 'iceCandidate', candidate: CANDIDATE });
  const toViewer = JSON.stringify({ type: 'iceCandidate', playerId: pair.playerId, candidate: CANDIDATE });
  pair.streamer.removeAllListeners('message');
  pair.viewer.removeAllListeners('message');
  for (let i = 0; i < count; i++) {
    const [from, to, message] =
      i % 2 === 0 ? [pair.viewer, pair.streamer, toStreamer] : [pair.streamer, pair.viewer, toViewer];
    const arrived = new Promise<void>((resolve) => to.once('message', () => resolve()));
    const t = performance.now();
    from.send(message);
    await arrived;
    latencies.push(performance.now() - t);
  }
  return latencies;
}

/** A relay's process at one instant: its CPU time (µs) and, where Linux tells, its main thread's (ns). */
export interface Sample {
  cpu: { user: number; system: number };
  sched: { runNs: number; waitNs: number } | null;
}

/** One relay under comparison: its pairs and how to sample its process. */
export interface RelaySide {
  pairs: Pair[];
  sample(): Promise<Sample>;
}

export interface RelayRun {
  /** one message at a time through one pair (ms) */
  serial: number[];
  load: LoadResult;
  /** shares of one core over the loaded windows: the relay process, its main thread running and waiting
   * for a CPU (null where not known), and this process (the load generator) */
  cpu: { relay: number; run: number | null; wait: number | null; load: number };
}

/**
 * The same load through each relay, in `rounds` alternating turns (so that other work on the machine falls
 * on all of them alike): per turn, serialMessages / rounds messages one at a time, then pump().
 */
export async function compareRelays(
  sides: RelaySide[],
  o: { rounds: number; window: number; warmupMs: number; durationMs: number; serialMessages: number },
): Promise<RelayRun[]> {
  const runs: RelayRun[] = sides.map(() => ({
    serial: [],
    load: { delivered: 0, ms: 0, latencies: [], wrong: 0 },
    cpu: { relay: 0, run: 0, wait: 0, load: 0 },
  }));
  const wall = sides.map(() => 0);
  for (let round = 0; round < o.rounds; round++) {
    for (const [i, side] of sides.entries()) {
      const run = runs[i]!;
      run.serial.push(...(await oneAtATime(side.pairs[0]!, Math.ceil(o.serialMessages / o.rounds))));
      const a = await side.sample();
      const self = process.cpuUsage();
      const t = performance.now();
      const load = await pump(side.pairs, {
        window: o.window,
        warmupMs: o.warmupMs,
        durationMs: o.durationMs,
      });
      const ms = performance.now() - t;
      const used = process.cpuUsage(self);
      const b = await side.sample();
      wall[i]! += ms;
      run.load.delivered += load.delivered;
      run.load.ms += load.ms;
      run.load.wrong += load.wrong;
      for (const l of load.latencies) run.load.latencies.push(l);
      run.cpu.relay += (b.cpu.user + b.cpu.system - a.cpu.user - a.cpu.system) / 1000;
      run.cpu.load += (used.user + used.system) / 1000;
      if (a.sched && b.sched && run.cpu.run !== null && run.cpu.wait !== null) {
        run.cpu.run += (b.sched.runNs - a.sched.runNs) / 1e6;
        run.cpu.wait += (b.sched.waitNs - a.sched.waitNs) / 1e6;
      } else {
        run.cpu.run = null;
        run.cpu.wait = null;
      }
    }
  }
  for (const [i, run] of runs.entries()) {
    const w = wall[i]!;
    run.cpu = {
      relay: run.cpu.relay / w,
      run: run.cpu.run === null ? null : run.cpu.run / w,
      wait: run.cpu.wait === null ? null : run.cpu.wait / w,
      load: run.cpu.load / w,
    };
  }
  return runs;
}
