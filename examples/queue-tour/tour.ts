// The queue tour as a function: an embedded server, two real echo workers, five sessions, and what happens.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SessionEvent } from '@usher/protocol';
import { type ManualClock, UsherServer } from '@usher/server';
import WebSocket from 'ws';

const ECHO_WORKER = join(dirname(fileURLToPath(import.meta.url)), '..', 'echo-worker', 'index.ts');
const KEY = 'tour-admin-key-0123456789';

export interface TourResult {
  name: string;
  id: string;
  states: string[];
  positions: number[];
  errors: string[];
  endCode: number | null;
  endReason: string | null;
  outcome: string | null;
}

export interface TourOptions {
  /** where the narration goes (default: console.log) */
  say?: (line: string) => void;
  /**
   * The clock for session deadlines. Without one the tour runs on real time, and a slow machine can
   * change its story (D's pending timeout can pass while B's worker is respawned). With a ManualClock time
   * stands still until the tour moves it past the deadlines it shows.
   */
  clock?: ManualClock;
}

export async function runTour({ say = console.log, clock }: TourOptions = {}): Promise<TourResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'usher-tour-'));
  const server = new UsherServer({
    storage: { type: 'sqlite', path: join(dir, 'tour.db') },
    port: 0,
    adminKeys: [KEY],
    ...(clock ? { clock } : {}),
  });
  const { url } = await server.listen();
  const api = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return (await r.json()) as Record<string, unknown>;
  };
  const sessions = new Map<string, TourResult & { ws: WebSocket; closed: Promise<void> }>();
  const waiters: { pred: (name: string, e: SessionEvent) => boolean; resolve: () => void }[] = [];
  const until = (pred: (name: string, e: SessionEvent) => boolean) =>
    new Promise<void>((resolve) => waiters.push({ pred, resolve }));
  const reached = (name: string, state: string) =>
    sessions.get(name)?.states.includes(state)
      ? Promise.resolve()
      : until((n, e) => n === name && e.type === 'session.status_changed' && e.status === state);

  try {
    say(
      `Usher is running on ${url} with a SQLite file; project "tour" runs examples/echo-worker: 1 warm, 2 at most,`,
    );
    say('a queue of at most 5, a pending timeout of 3 s and a max runtime of 4 s.\n');
    await api('POST', '/projects', {
      id: 'tour',
      name: 'Queue tour',
      kind: 'agent',
      worker: { driver: 'process', command: [process.execPath, ECHO_WORKER] },
      regions: { default: { min: 1, max: 2 } },
      maxQueueLength: 5,
      timeouts: { pendingMs: 3_000, maxRuntimeMs: 4_000, shutdownGraceMs: 1_000 },
    });

    const open = async (name: string) => {
      const created = (await api('POST', '/sessions', { projectId: 'tour' })) as {
        id: string;
        token: string;
        url: string;
        state: string;
      };
      const ws = new WebSocket(`${created.url}?token=${created.token}`);
      const s: TourResult & { ws: WebSocket; closed: Promise<void> } = {
        name,
        id: created.id,
        states: [],
        positions: [],
        errors: [],
        endCode: null,
        endReason: null,
        outcome: null,
        ws,
        closed: new Promise((r) => ws.once('close', () => r())),
      };
      sessions.set(name, s);
      ws.on('message', (data) => {
        const e = JSON.parse(data.toString()) as SessionEvent;
        if (e.type === 'session.status_changed') {
          if (s.states.at(-1) !== e.status) s.states.push(e.status);
          let line = `${name}: ${e.status}`;
          if (e.status === 'ended') {
            s.endCode = e.endCode ?? null;
            s.endReason = e.endReason ?? null;
            s.outcome = e.outcome ?? null;
            line += `  code ${e.endCode}, reason ${e.endReason}, outcome ${e.outcome}`;
          } else line += `  (${e.cause})`;
          say(line);
        } else if (e.type === 'session.queue_position') {
          if (s.positions.at(-1) !== e.position) {
            s.positions.push(e.position);
            say(`${name}: position ${e.position} of ${e.queueLength}`);
          }
        } else if (e.type === 'session.error') {
          s.errors.push(e.code);
          say(`${name}: error ${e.code} (recoverable: ${e.recoverable})`);
        }
        for (const w of [...waiters]) {
          if (w.pred(name, e)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve();
          }
        }
      });
      await new Promise((r) => ws.once('open', r));
      return s;
    };

    say('1. Five sessions ask for two workers:');
    const A = await open('A');
    await reached('A', 'active');
    const B = await open('B');
    await reached('B', 'active');
    await open('C');
    await open('D');
    await reached('D', 'queued');
    await open('E');
    await reached('E', 'queued');

    say('\n2. A ends on request (1000); C moves from the queue onto the freed seat, D and E move up:');
    await api('POST', `/sessions/${A.id}/end`);
    await reached('C', 'active');

    say("\n3. B's worker process is killed: B ends 4006 with AGENT_CRASHED, and D gets the new worker:");
    const bWorker = (await api('GET', `/sessions/${B.id}`)).workerId as string;
    const handle = (await server.engine.store.read.getWorker(bWorker))?.handle;
    process.kill(JSON.parse(handle ?? '{}').pid, 'SIGKILL');
    await reached('B', 'ended');
    await reached('D', 'active');

    say(
      '\n4. Nobody frees a seat for E within the pending timeout (4001); C and D reach their max runtime (4004):',
    );
    // on real time the deadlines pass while the tour waits; a manual clock is moved past them: E's pending
    // deadline (3 s after it was created) falls due first, then C's and D's max runtime (4 s after they started)
    await clock?.advance(4_000);
    await reached('E', 'ended');
    await reached('C', 'ended');
    await reached('D', 'ended');

    say('\n5. F gets a free worker at once, then its viewer closes the tab (1001):');
    const F = await open('F');
    await reached('F', 'active');
    // F's socket is closed by then, so its end is read from the server's event hub
    const fEnded = new Promise<SessionEvent>((resolve) => {
      const off = server.hub.subscribe(F.id, (e) => {
        if (e.type === 'session.status_changed' && e.status === 'ended') {
          off();
          resolve(e);
        }
      });
    });
    F.ws.close(1001);
    const e = await fEnded;
    if (e.type === 'session.status_changed') {
      F.states.push('ending', 'ended');
      [F.endCode, F.endReason, F.outcome] = [e.endCode ?? null, e.endReason ?? null, e.outcome ?? null];
      say(`F: ended  code ${e.endCode}, reason ${e.endReason}, outcome ${e.outcome}`);
    }
    await Promise.all([...sessions.values()].map((s) => s.closed));

    say('\nSession  end code  reason            outcome       states its socket saw');
    for (const s of sessions.values()) {
      say(
        `${s.name.padEnd(8)} ${String(s.endCode).padEnd(9)} ${String(s.endReason).padEnd(17)} ${String(s.outcome).padEnd(13)} ${s.states.join(' → ')}`,
      );
    }
    return [...sessions.values()].map(({ ws: _ws, closed: _c, ...rest }) => rest);
  } finally {
    for (const s of sessions.values()) s.ws.terminate();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
