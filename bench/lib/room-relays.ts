// The rooms of the messages benchmark, through each relay it compares: Usher (sessions on warm agent workers,
// two users joined to each with their own tokens) and the bare room forwarder (room-forwarder.ts, with its
// worker stand-ins in room-workers.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { HttpClient } from './harness.ts';
import { IpcClient } from './ipc.ts';
import type { Sample } from './relay-load.ts';
import type { Room, RoomUser } from './room-load.ts';
import { schedstat } from './schedstat.ts';

type Frame = { type: string; status?: string; code?: string; message?: unknown };

/** Opens a user's session socket and resolves once the session shows as active on it. */
function openUsher(serverUrl: string, sessionId: string, token: string, identity: string): Promise<RoomUser> {
  const url = `${serverUrl.replace(/^http/, 'ws')}/sessions/${sessionId}/ws?token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(url, { perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`session ${sessionId} did not become active on ${identity}'s socket in 30 s`)),
      30_000,
    );
    ws.on('message', (raw: Buffer) => {
      const f = JSON.parse(raw.toString()) as Frame;
      if (f.type === 'session.status_changed' && f.status === 'active') {
        clearTimeout(timer);
        resolve({ ws, identity });
      } else if (f.type === 'error' || (f.type === 'session.status_changed' && f.status === 'ended')) {
        clearTimeout(timer);
        reject(new Error(`${identity}'s socket of ${sessionId}: ${JSON.stringify(f).slice(0, 300)}`));
      }
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * n sessions of `projectId` (an agent project with at least n ready workers), each with two users who joined
 * through `POST /sessions/{id}/join` with the session's token and opened their sockets.
 */
export async function usherRooms(
  serverUrl: string,
  http: HttpClient,
  projectId: string,
  n: number,
): Promise<Room[]> {
  const rooms: Room[] = [];
  for (let i = 0; i < n; i++) {
    const r = await http.call('POST', '/sessions', { projectId });
    if (r.status !== 201) throw new Error(`POST /sessions: ${r.status} ${r.body}`);
    const s = JSON.parse(r.body) as { id: string; token: string; state: string };
    if (s.state !== 'connecting')
      throw new Error(`session ${i} of ${projectId} is ${s.state}, not seated on a ready worker`);
    const users: RoomUser[] = [];
    for (const side of ['a', 'b']) {
      const identity = `user-${i}-${side}`;
      const j = await http.call('POST', `/sessions/${s.id}/join`, { identity }, s.token);
      if (j.status !== 200) throw new Error(`POST /sessions/${s.id}/join: ${j.status} ${j.body}`);
      const { token } = JSON.parse(j.body) as { token: string };
      users.push(await openUsher(serverUrl, s.id, token, identity));
    }
    rooms.push({ sessionId: s.id, users: users as [RoomUser, RoomUser] });
  }
  return rooms;
}

const QUIET = '--disable-warning=ExperimentalWarning';

function child(script: string, env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [QUIET, join(import.meta.dirname, script)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
}

function once<T>(c: ChildProcess, t: string, pick: (m: Record<string, unknown>) => T): Promise<T> {
  return new Promise((resolve, reject) => {
    c.on('message', (m: Record<string, unknown>) => {
      if (m.t === t) resolve(pick(m));
    });
    c.once('exit', (code) => reject(new Error(`a child (${t}) exited with ${code}`)));
  });
}

/** The bare room forwarder in a process of its own, with one worker stand-in per room in another. */
export class RoomForwarder {
  readonly forwarder: ChildProcess;
  readonly workers: ChildProcess;
  readonly ipc: IpcClient;
  readonly workersIpc: IpcClient;
  readonly url: string;

  private constructor(forwarder: ChildProcess, workers: ChildProcess, url: string) {
    this.forwarder = forwarder;
    this.workers = workers;
    this.url = url;
    this.ipc = new IpcClient(forwarder);
    this.workersIpc = new IpcClient(workers);
  }

  static async start(rooms: number): Promise<RoomForwarder> {
    const forwarder = child('room-forwarder.ts');
    const url = await once(forwarder, 'listening', (m) => String(m.url));
    const workers = child('room-workers.ts', { ROOM_FORWARDER_URL: url, ROOM_WORKERS: String(rooms) });
    await once(workers, 'ready', () => null);
    return new RoomForwarder(forwarder, workers, url);
  }

  /** n rooms with two users each (their worker stand-ins are already connected). */
  async rooms(n: number): Promise<Room[]> {
    const open = (i: number, identity: string) =>
      new Promise<RoomUser>((resolve, reject) => {
        const ws = new WebSocket(`${this.url}/?room=r${i}&identity=${identity}`, {
          perMessageDeflate: false,
        });
        ws.once('open', () => resolve({ ws, identity }));
        ws.once('error', reject);
      });
    const rooms: Room[] = [];
    for (let i = 0; i < n; i++)
      rooms.push({
        sessionId: `r${i}`,
        users: [await open(i, `user-${i}-a`), await open(i, `user-${i}-b`)],
      });
    return rooms;
  }

  /** the forwarder's CPU time so far (µs), and its main thread's where Linux tells (ns) */
  async sample(): Promise<Sample> {
    const cpu = await this.ipc.request<{ user: number; system: number }>({ t: 'cpu' });
    return { cpu, sched: schedstat(`/proc/${this.forwarder.pid}/schedstat`) };
  }

  /** the worker stand-ins' CPU time so far (µs) and how many messages they were given */
  workerStats(): Promise<{ user: number; system: number; received: number }> {
    return this.workersIpc.request({ t: 'cpu' });
  }

  async close(): Promise<void> {
    await Promise.all(
      [this.workers, this.forwarder].map((c) => {
        if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        c.disconnect();
        return exited;
      }),
    );
  }
}
