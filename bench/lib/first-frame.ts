// Click-to-first-frame in headless Chromium: the page starts a session of a stream project through the Web
// SDK, whose fetch, WebSocket and RTCPeerConnection are wrapped to stamp every step with performance.now(),
// until the <video> presents its first frame. The server's tap stamps the same messages on its side, and the
// two timelines are combined — each difference taken on one clock — into Usher's share and the rest.
import { launchChromium } from '@usher/testing/chromium';
import type { TapFrame, TapRequest } from './stream-fixture.ts';
import type { StreamServer } from './stream-server.ts';

/** The page's stamps of one run (ms on the page's clock), by step. */
export type PageMarks = Record<string, number>;

interface PageRun {
  marks: PageMarks;
  /** what signalled the first frame, or 'timeout' */
  how: string;
  errors: string[];
  /** the browser's inbound video statistics at the first frame (RTCInboundRtpStreamStats), if any */
  video: VideoStats | null;
}

export interface VideoStats {
  packetsReceived: number;
  framesReceived: number;
  keyFramesDecoded: number;
  pliCount: number;
}

/** One run, split into Usher's share and the rest (all ms). */
export interface FirstFrameSplit {
  total: number;
  usher: number;
  /** the part of `usher` spent in the server process: between a request or message arriving and the answer
   * or relayed message leaving (POST, socket to snapshot, listStreamers, subscribe, offer, answer) */
  usherServer: number;
  /** total − usher: the streamer's offer, WebRTC (SDP, ICE, DTLS), the encoder's first frame, the decoder */
  rest: number;
  /** the parts of Usher's share */
  post: number;
  serverPost: number;
  socketToSnapshot: number;
  /** the page's socket: constructed → open */
  handshake: number;
  /** in the server: the socket's opening request → its snapshot sent */
  serverSnapshot: number;
  streamerListRtt: number;
  /** subscribe → offer minus the streamer's time, plus the answer's way to the streamer */
  relayHops: number;
  /** the parts of the rest */
  streamerOffer: number;
  offerToFrame: number;
  iceConnectedAfterOffer: number;
}

export interface FirstFrameResult {
  splits: FirstFrameSplit[];
  /** the browser's inbound video statistics at each measured first frame */
  video: VideoStats[];
  how: Record<string, number>;
  failures: string[];
}

/**
 * Runs `runs` measured sessions (after `warmup` unmeasured ones) one after another, each on a warm worker
 * of `projectId`: before each, every one of its `workers` is ready.
 */
export async function measureFirstFrame(
  server: StreamServer,
  options: {
    projectId: string;
    workers: number;
    runs: number;
    warmup: number;
    timeoutMs: number;
    log: (line: string) => void;
  },
): Promise<FirstFrameResult> {
  const browser = await launchChromium();
  const splits: FirstFrameSplit[] = [];
  const video: VideoStats[] = [];
  const how: Record<string, number> = {};
  const failures: string[] = [];
  try {
    const page = await browser.newPage();
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => 'usher' in window, null, { timeout: 10_000 });
    for (let i = 0; i < options.warmup + options.runs; i++) {
      await server.readyWorkers(options.projectId, options.workers, 30_000);
      await server.tap(true);
      const run = await page.evaluate(pageRun, {
        server: server.url,
        projectId: options.projectId,
        timeoutMs: options.timeoutMs,
      });
      const tap = await server.tapRead();
      await server.tap(false);
      if (process.env.BENCH_STREAMING_TIMELINE) logTimeline(run.marks, tap.frames, tap.requests, options.log);
      if (i < options.warmup) continue;
      how[run.how] = (how[run.how] ?? 0) + 1;
      if (run.video) video.push(run.video);
      const split = run.how === 'timeout' ? null : splitRun(run.marks, tap.frames, tap.requests);
      if (split) splits.push(split);
      else
        failures.push(
          `run ${i + 1 - options.warmup}: ${run.how}${run.errors.length ? ` (${run.errors.join('; ')})` : ''}; page steps ${Object.keys(run.marks).join(', ')}`,
        );
    }
  } finally {
    await browser.close();
  }
  return { splits, video, how, failures };
}

/** BENCH_STREAMING_TIMELINE=1: each run's steps on the page and in the server, in ms from its first. */
function logTimeline(m: PageMarks, frames: TapFrame[], requests: TapRequest[], log: (line: string) => void) {
  const from = (t0: number) => (t: number) => (t - t0).toFixed(1);
  const page = from(m.t0 ?? 0);
  const server = from(requests[0]?.at ?? frames[0]?.at ?? 0);
  const steps = Object.entries(m).sort((a, b) => a[1] - b[1]);
  log(`  page: ${steps.map(([k, t]) => `${k} ${page(t)}`).join(', ')}`);
  log(
    `  server: ${requests.map((r) => `${r.method} ${r.url.split('?')[0]} ${server(r.at)}–${server(r.doneAt)}`).join(', ')}`,
  );
  log(`  server: ${frames.map((f) => `${f.dir} ${f.type} ${server(f.at)}`).join(', ')}`);
}

/** The first stamp of a frame of this type and direction, at or after `after`. */
function stampOf(frames: TapFrame[], dir: 'in' | 'out', type: string, after = 0): number | null {
  return frames.find((f) => f.dir === dir && f.type === type && f.at >= after)?.at ?? null;
}

/**
 * Usher's share of one run: everything from the click until the page sends `subscribe` (the session's POST,
 * the socket and its snapshot, the streamer list, the SDK), the subscribe → offer round trip minus the
 * streamer's time between Usher's `playerConnected` and its `offer`, and the answer's way to the streamer
 * (the server's time on it plus one browser-to-server leg, half the round trip's wire time).
 */
export function splitRun(m: PageMarks, frames: TapFrame[], requests: TapRequest[]): FirstFrameSplit | null {
  const need = [
    't0',
    'fetched',
    'in:session.status_changed',
    'out:listStreamers',
    'in:streamerList',
    'out:subscribe',
    'in:offer',
    'frame',
  ];
  if (need.some((k) => m[k] === undefined)) return null;
  const subscribeIn = stampOf(frames, 'in', 'subscribe');
  const connectedOut = stampOf(frames, 'out', 'playerConnected', subscribeIn ?? 0);
  const offerIn = stampOf(frames, 'in', 'offer', connectedOut ?? 0);
  const offerOut = stampOf(frames, 'out', 'offer', offerIn ?? 0);
  const answerIn = stampOf(frames, 'in', 'answer', offerOut ?? 0);
  const answerOut = stampOf(frames, 'out', 'answer', answerIn ?? 0);
  if ([subscribeIn, connectedOut, offerIn, offerOut, answerIn, answerOut].includes(null)) return null;
  const listIn = stampOf(frames, 'in', 'listStreamers');
  const listOut = stampOf(frames, 'out', 'streamerList', listIn ?? 0);
  const post = requests.find((r) => r.method === 'POST' && r.url.startsWith('/sessions'));
  const upgrade = requests.find((r) => r.method === 'UPGRADE' && r.url.startsWith('/sessions/'));
  const snapshotOut = upgrade ? stampOf(frames, 'out', 'session.status_changed', upgrade.at) : null;

  const toSubscribe = m['out:subscribe']! - m.t0!;
  const streamerOffer = offerIn! - connectedOut!;
  const subscribeToOffer = m['in:offer']! - m['out:subscribe']! - streamerOffer;
  const wire = subscribeToOffer - (connectedOut! - subscribeIn!) - (offerOut! - offerIn!);
  const answerHop = answerOut! - answerIn! + Math.max(0, wire) / 2;
  const total = m.frame! - m.t0!;
  const usher = toSubscribe + subscribeToOffer + answerHop;
  const serverPost = post ? post.doneAt - post.at : Number.NaN;
  const serverSnapshot = upgrade && snapshotOut !== null ? snapshotOut - upgrade.at : Number.NaN;
  const usherServer =
    serverPost +
    serverSnapshot +
    (listIn !== null && listOut !== null ? listOut - listIn : Number.NaN) +
    (connectedOut! - subscribeIn!) +
    (offerOut! - offerIn!) +
    (answerOut! - answerIn!);
  return {
    total,
    usher,
    usherServer,
    rest: total - usher,
    post: m.fetched! - m.t0!,
    serverPost,
    socketToSnapshot: m['in:session.status_changed']! - m.fetched!,
    handshake: m.open !== undefined && m.socket !== undefined ? m.open - m.socket : Number.NaN,
    serverSnapshot,
    streamerListRtt: m['in:streamerList']! - m['out:listStreamers']!,
    relayHops: subscribeToOffer + answerHop,
    streamerOffer,
    offerToFrame: m.frame! - m['in:offer']!,
    iceConnectedAfterOffer: m.iceConnected !== undefined ? m.iceConnected - m['in:offer']! : Number.NaN,
  };
}

/**
 * Runs in the page (serialised by Playwright: it may use nothing from this module). Starts a session with the
 * SDK, stamps each step, waits for the first presented video frame, then leaves the session.
 */
async function pageRun(a: { server: string; projectId: string; timeoutMs: number }): Promise<PageRun> {
  const { UsherSession } = (window as unknown as { usher: typeof import('@usher/web') }).usher;
  const marks: PageMarks = {};
  const mark = (step: string, at = performance.now()) => {
    if (!(step in marks)) marks[step] = at;
  };
  const typeOf = (data: unknown) =>
    typeof data === 'string' ? (/^\{"type":"([^"]{1,64})"/.exec(data.slice(0, 80))?.[1] ?? '?') : '?';

  class TimedSocket extends WebSocket {
    constructor(url: string) {
      super(url);
      mark('socket');
      this.addEventListener('open', () => mark('open'));
      // added before the SDK sets onmessage, so it runs first: the stamp is the arrival, not the handling
      this.addEventListener('message', (ev) => mark(`in:${typeOf(ev.data)}`));
    }
    override send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
      mark(`out:${typeOf(data)}`);
      super.send(data);
    }
  }
  let pc: RTCPeerConnection | null = null;
  class TimedPeerConnection extends RTCPeerConnection {
    constructor(configuration?: RTCConfiguration) {
      super(configuration);
      pc = this;
      mark('peerConnection');
      this.addEventListener('iceconnectionstatechange', () => {
        if (this.iceConnectionState === 'connected' || this.iceConnectionState === 'completed')
          mark('iceConnected');
      });
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState === 'connected') mark('connected');
      });
      this.addEventListener('track', () => mark('track'));
    }
  }
  const timedFetch = async (url: string, init: RequestInit) => {
    mark('fetch');
    const response = await fetch(url, init);
    mark('fetched');
    return response;
  };

  document.querySelectorAll('video').forEach((old) => {
    old.remove();
  });
  const video = document.createElement('video');
  video.width = 640;
  video.height = 360;
  document.body.append(video);
  const errors: string[] = [];
  const firstFrame = new Promise<string>((resolve) => {
    video.requestVideoFrameCallback(() => {
      mark('frame');
      resolve('requestVideoFrameCallback');
    });
    video.addEventListener('loadeddata', () => mark('loadeddata'));
    setTimeout(() => resolve('timeout'), a.timeoutMs);
  });

  mark('t0');
  const session = await UsherSession.start({
    server: a.server,
    projectId: a.projectId,
    video,
    fetch: timedFetch,
    WebSocket: TimedSocket,
    RTCPeerConnection: TimedPeerConnection,
  });
  session.on('error', (e) => errors.push(`${e.code}: ${e.message}`));
  session.on('stream', () => mark('stream'));
  const how = await firstFrame;
  let stats: VideoStats | null = null;
  (await (pc as RTCPeerConnection | null)?.getStats())?.forEach((r: Record<string, unknown>) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video')
      stats = {
        packetsReceived: Number(r.packetsReceived ?? 0),
        framesReceived: Number(r.framesReceived ?? 0),
        keyFramesDecoded: Number(r.keyFramesDecoded ?? 0),
        pliCount: Number(r.pliCount ?? 0),
      };
  });
  // the server ends the session; the benchmark waits for the worker to be ready again
  session.leave();
  return { marks, how, errors, video: stats };
}
