// The server side of the browser tests: a TestServer on SQLite with a manual clock whose stream projects run
// the demo streamer (packages/demo-streamer) as real worker processes, and the check that none of them, nor
// the ffmpeg each one runs, outlives the test file.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { ProjectInput } from '@usher/protocol';
import { createTestDatabase, streamProject, type TestDatabase, TestServer } from '@usher/testing';
import type { WebSocket } from 'ws';
import { WatchedProcessDriver } from '../fixtures/processes.ts';

export const DEMO_STREAMER = fileURLToPath(new URL('../../../demo-streamer/src/main.ts', import.meta.url));

/** A public stream project of two demo streamers (it reads USHER_SIGNALLING_URL from its environment). */
export function demoProject(id: string, extra: Partial<ProjectInput> = {}): ProjectInput {
  return streamProject(
    id,
    { min: 2, max: 2 },
    { worker: { driver: 'process', command: [process.execPath, DEMO_STREAMER] }, ...extra },
  );
}

export interface StreamingServer {
  readonly t: TestServer;
  readonly driver: WatchedProcessDriver;
  /**
   * Drops the TCP connection of every open socket of a session (no close frame): for the browser at the other
   * end, the network went away (1006). Returns how many were dropped.
   */
  dropSessionSockets(sessionId: string): number;
}

/**
 * Registers hooks on the current suite: before() starts a TestServer (SQLite, ManualClock) whose process
 * driver runs the projects' demo streamers and waits for their warm workers; after() closes it and checks
 * that every worker process group (the streamer and its ffmpeg) is gone.
 */
export function useStreamingServer(projects: ProjectInput[]): StreamingServer {
  let db: TestDatabase | undefined;
  let server: TestServer | undefined;
  const driver = new WatchedProcessDriver();
  /** the open session sockets, by the path they were opened on */
  const sockets = new Map<WebSocket, string>();
  before(async () => {
    db = await createTestDatabase('sqlite');
    server = await new TestServer({ storage: db.storage, processDriver: driver, projects }).start();
    server.server.app.websocketServer.on('connection', (ws: WebSocket, req: IncomingMessage) => {
      sockets.set(ws, new URL(req.url ?? '/', 'http://x').pathname);
      ws.once('close', () => sockets.delete(ws));
    });
    for (const p of projects) await server.readyWorkers(p.id!, p.regions?.default?.min ?? 0);
  });
  after(async () => {
    await server?.close();
    await db?.drop();
    const left = await leftovers([...driver.pids.values()]);
    assert.deepEqual(left, [], 'no demo streamer or ffmpeg outlives the test file');
  });
  // reads as the server itself inside tests and hooks, like useTestServer's
  const t = new Proxy(Object.create(TestServer.prototype) as TestServer, {
    get: (_, key) => {
      if (!server) throw new Error('useStreamingServer: the server starts in before(); use it inside tests');
      const value: unknown = Reflect.get(server, key, server);
      return typeof value === 'function' ? value.bind(server) : value;
    },
  });
  const dropSessionSockets = (sessionId: string) => {
    const path = `/sessions/${sessionId}/ws`;
    const open = [...sockets].filter(([, p]) => p === path).map(([ws]) => ws);
    for (const ws of open) ws.terminate();
    return open.length;
  };
  return { t, driver, dropSessionSockets };
}

/**
 * The processes still running in the process groups of these group leaders (each worker process leads its
 * own group, and its ffmpeg is in it), waiting up to withinMs for the ones already killed to disappear.
 */
async function leftovers(leaders: number[], withinMs = 10_000): Promise<string[]> {
  const until = Date.now() + withinMs;
  for (;;) {
    const left = livingMembers(new Set(leaders));
    if (left.length === 0 || Date.now() > until) return left;
    await sleep(25);
  }
}

/** Live (not zombie) processes whose process group is one of groups, as "pid command". */
function livingMembers(groups: Set<number>): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid pgrp …: comm may hold spaces and parentheses, so split after its last ')'
    const close = stat.lastIndexOf(')');
    const [state, , pgrp] = stat.slice(close + 2).split(' ');
    if (state === 'Z' || !groups.has(Number(pgrp))) continue;
    found.push(`${entry} ${stat.slice(stat.indexOf('(') + 1, close)}`);
  }
  return found;
}

/** The ffmpeg a demo streamer runs while a player is connected (its pid), if any. */
export function ffmpegOf(streamerPid: number): number | null {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const [, ppid] = stat.slice(close + 2).split(' ');
      if (Number(ppid) === streamerPid && stat.slice(stat.indexOf('(') + 1, close) === 'ffmpeg')
        return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return null;
}
