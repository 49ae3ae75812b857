// Many lightweight workers in one process: each is a bare `ws` client speaking the worker protocol
// (register with its launch token, ready, session_started on assign, stopped on shutdown, heartbeats).
// The parent relays launches from the server fixture here; no SDK, no child process per worker.
import type { WorkerLaunch } from '@usher/server';
import WebSocket from 'ws';

interface HostRequest {
  id?: number;
  t: 'launch' | 'stop' | 'stats' | 'close';
  launch?: WorkerLaunch;
  workerId?: string;
}

export interface WorkerHostStats {
  launched: number;
  registered: number;
  open: number;
  assigned: number;
  shutdowns: number;
  errors: number;
  lastError: string | null;
  /** this process's CPU time so far (µs) */
  cpu?: { user: number; system: number };
}

const stats: WorkerHostStats = {
  launched: 0,
  registered: 0,
  open: 0,
  assigned: 0,
  shutdowns: 0,
  errors: 0,
  lastError: null,
};

/** Sockets being opened at once: more would only fill the server's accept backlog. */
const MAX_CONNECTING = 64;

class LightWorker {
  readonly launch: WorkerLaunch;
  readonly ws: WebSocket;
  heartbeatMs = 5_000;
  nextBeat = Number.POSITIVE_INFINITY;
  registered = false;
  opened = false;

  constructor(launch: WorkerLaunch, onOpenSettled: () => void) {
    this.launch = launch;
    this.ws = new WebSocket(launch.env.USHER_WORKER_URL!, { perMessageDeflate: false });
    let settled = false;
    const settle = () => {
      if (!settled) {
        settled = true;
        onOpenSettled();
      }
    };
    this.ws.on('open', () => {
      settle();
      this.opened = true;
      stats.open++;
      this.send({ type: 'register', token: launch.env.USHER_WORKER_TOKEN });
    });
    this.ws.on('message', (data) => this.#onFrame(JSON.parse(data.toString())));
    this.ws.on('error', (err) => {
      settle();
      stats.errors++;
      stats.lastError = String(err);
    });
    this.ws.on('close', () => {
      settle();
      if (this.opened) stats.open--;
      workers.delete(launch.workerId);
    });
  }

  send(frame: Record<string, unknown>): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  #onFrame(f: {
    type: string;
    heartbeatIntervalMs?: number;
    assignment?: { sessionId: string };
    sessionId?: string | null;
    code?: string;
    message?: string;
  }): void {
    switch (f.type) {
      case 'registered':
        this.registered = true;
        stats.registered++;
        this.heartbeatMs = f.heartbeatIntervalMs ?? this.heartbeatMs;
        this.nextBeat = Date.now() + Math.random() * this.heartbeatMs;
        this.send({ type: 'ready' });
        return;
      case 'assign':
        stats.assigned++;
        this.send({ type: 'session_started', sessionId: f.assignment!.sessionId });
        return;
      case 'shutdown':
        stats.shutdowns++;
        this.send({ type: 'stopped' });
        if (!f.sessionId) this.ws.close(1000, 'stopped');
        return;
      case 'error':
        stats.errors++;
        stats.lastError = `${f.code}: ${f.message}`;
        return;
    }
  }
}

const workers = new Map<string, LightWorker>();
const pending: WorkerLaunch[] = [];
let connecting = 0;

function pump(): void {
  while (connecting < MAX_CONNECTING && pending.length > 0) {
    const launch = pending.shift()!;
    connecting++;
    workers.set(
      launch.workerId,
      new LightWorker(launch, () => {
        connecting--;
        pump();
      }),
    );
  }
}

// heartbeats, spread over the interval so they do not arrive in bursts
const beat = setInterval(() => {
  const now = Date.now();
  for (const w of workers.values()) {
    if (w.nextBeat <= now) {
      w.send({ type: 'heartbeat' });
      w.nextBeat = now + w.heartbeatMs;
    }
  }
}, 100);

process.on('message', (m: HostRequest) => {
  switch (m.t) {
    case 'launch':
      stats.launched++;
      pending.push(m.launch!);
      pump();
      return;
    case 'stop':
      workers.get(m.workerId!)?.ws.close(1000, 'stopped');
      return;
    case 'stats':
      process.send?.({ t: 'reply', id: m.id, value: { ...stats, cpu: process.cpuUsage() } });
      return;
    case 'close':
      clearInterval(beat);
      for (const w of workers.values()) w.ws.terminate();
      process.send?.({ t: 'reply', id: m.id, value: null });
      setImmediate(() => process.exit(0));
      return;
  }
});
process.on('disconnect', () => process.exit(0));
process.send?.({ t: 'ready' });
