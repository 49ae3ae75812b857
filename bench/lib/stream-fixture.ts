// The server of the streaming benchmark, in a process of its own: an UsherServer with its real drivers (the
// `process` driver starts the demo streamers), a page folder for the browser, and a tap that stamps every
// WebSocket frame and HTTP request the server receives or sends — observed from outside the server's code, by
// wrapping `ws` and the HTTP server's events in this process — so that a benchmark can tell the server's
// share of a timeline from its peers'.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type Logger, UsherServer } from '@usher/server';
import pino from 'pino';
import WebSocket from 'ws';
import type { ServerFixtureConfig } from './ipc.ts';
import { schedstat } from './schedstat.ts';

export interface StreamFixtureConfig extends ServerFixtureConfig {
  /** a folder served at `/` */
  pagesRoot?: string;
}

/** One stamped frame: when (this process's performance.now()), which way, and its `type`. */
export interface TapFrame {
  at: number;
  dir: 'in' | 'out';
  type: string;
}

/** One HTTP request: when it arrived and when its response was written (an upgrade: when it arrived). */
export interface TapRequest {
  method: string;
  url: string;
  at: number;
  doneAt: number;
}

export type StreamFixtureRequest =
  | { id: number; t: 'stats'; resetLag?: boolean; gc?: boolean }
  | { id: number; t: 'pool'; projectId: string; region: string }
  | { id: number; t: 'tap'; on: boolean }
  | { id: number; t: 'tapRead' }
  | { id: number; t: 'close' };

const send = (m: unknown) => process.send?.(m);

const config = JSON.parse(process.env.BENCH_SERVER ?? 'null') as StreamFixtureConfig | null;
if (!config) throw new Error('BENCH_SERVER (the fixture configuration, JSON) is not set');

// ------------------------------------------------------------------ the tap

let tapOn = false;
let frames: TapFrame[] = [];
let requests: TapRequest[] = [];
/** the `type` of a JSON message: it is the first key of every message Usher and its peers send */
const TYPE = /^\{"type":"([^"]{1,64})"/;

function stamp(dir: 'in' | 'out', data: unknown): void {
  const at = performance.now();
  const head =
    typeof data === 'string'
      ? data.slice(0, 80)
      : Buffer.isBuffer(data)
        ? data.toString('utf8', 0, Math.min(80, data.length))
        : '';
  frames.push({ at, dir, type: TYPE.exec(head)?.[1] ?? '?' });
}

// the server's sockets are the only `ws` sockets in this process
const wsSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]) {
  if (tapOn) stamp('out', data);
  return (wsSend as (...a: unknown[]) => void).call(this, data, ...rest);
} as typeof WebSocket.prototype.send;
const wsEmit = WebSocket.prototype.emit;
WebSocket.prototype.emit = function (this: WebSocket, event: string | symbol, ...args: unknown[]) {
  if (tapOn && event === 'message') stamp('in', args[0]);
  return wsEmit.call(this, event, ...args);
};

// ------------------------------------------------------------------ the server

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
  serverId: 'bench-stream-server',
  projects: config.projects,
  ...(config.pagesRoot ? { pagesRoot: config.pagesRoot } : {}),
  engine: config.engine ?? {},
  // the relay benchmark's viewers send candidates as fast as they are answered: no limit of a real viewer's
  signallingRate: { perSecond: 1_000_000, burst: 1_000_000 },
});

function memory(gc: boolean) {
  const g = (globalThis as { gc?: () => void }).gc;
  if (gc && g) {
    g();
    g();
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

async function handle(req: StreamFixtureRequest): Promise<unknown> {
  switch (req.t) {
    case 'stats': {
      const ms = (ns: number) => Math.round((ns / 1e6) * 100) / 100;
      const value = {
        lag: {
          p50Ms: ms(lag.percentile(50)),
          p99Ms: ms(lag.percentile(99)),
          maxMs: ms(lag.max),
          meanMs: ms(lag.mean),
          samples: lag.count,
        },
        memory: memory(req.gc ?? false),
        cpu: process.cpuUsage(),
        hrUs: Number(process.hrtime.bigint() / 1000n),
        sched: schedstat(),
      };
      if (req.resetLag) lag.reset();
      return value;
    }
    case 'pool':
      return server.engine.store.read.poolCounts(req.projectId, req.region);
    case 'tap':
      tapOn = req.on;
      frames = [];
      requests = [];
      return null;
    case 'tapRead': {
      const value = { frames, requests };
      frames = [];
      requests = [];
      return value;
    }
    case 'close':
      tapOn = false;
      await server.close();
      setImmediate(() => process.exit(0));
      return null;
  }
}

process.on('message', (req: StreamFixtureRequest) => {
  handle(req).then(
    (value) => send({ id: req.id, t: 'reply', value }),
    (err: Error) => send({ id: req.id, t: 'reply', error: err.stack ?? String(err) }),
  );
});
// the parent is gone: stop the workers (demo streamers) before leaving
process.on('disconnect', () => {
  void server.close().finally(() => process.exit(0));
});

server.listen().then(
  ({ url }) => {
    server.app.server.prependListener('request', (req, res) => {
      if (!tapOn) return;
      const at = performance.now();
      res.once('finish', () =>
        requests.push({ method: req.method ?? '', url: req.url ?? '', at, doneAt: performance.now() }),
      );
    });
    // a WebSocket's opening request: its frames show when the socket was ready
    server.app.server.prependListener('upgrade', (req) => {
      if (!tapOn) return;
      const at = performance.now();
      requests.push({ method: 'UPGRADE', url: req.url ?? '', at, doneAt: at });
    });
    lag.enable();
    send({ t: 'listening', url });
  },
  (err: Error) => {
    send({ t: 'fatal', message: err.stack ?? String(err) });
    process.exit(1);
  },
);
