// The demo of `npm start`: projects whose workers are the example commands shipped in this repository.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProjectInput } from '@usher/protocol';
import { generateAdminKey, type StorageOptions } from '@usher/server';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export const ECHO_WORKER = join(root, 'examples', 'echo-worker', 'index.ts');
export const DEMO_STREAMER = join(root, 'packages', 'demo-streamer', 'src', 'main.ts');
export const DEMO_AGENT = join(root, 'packages', 'demo-agent', 'src', 'main.ts');
/** The pages at http://localhost:8080 (video, one viewer per tab) and /chat.html (the demo agent's room). */
export const DEMO_PAGE = join(root, 'packages', 'cli', 'demo-page');

export function demoProjects(): ProjectInput[] {
  return [
    {
      id: 'demo',
      name: 'Demo stream (a generated test pattern over WebRTC)',
      kind: 'stream',
      public: true,
      // the demo streamer speaks Pixel Streaming signalling, like a UE app would: it dials USHER_SIGNALLING_URL
      worker: { driver: 'process', command: [process.execPath, DEMO_STREAMER] },
      regions: { default: { min: 2, max: 2 } },
      reuseWorkers: true,
      maxQueueLength: 20,
      afkEnabled: true,
      timeouts: {
        afkWarningMs: 60_000,
        afkDisconnectMs: 20_000,
        maxRuntimeMs: 600_000,
        reconnectWindowMs: 30_000,
        shutdownGraceMs: 1_000,
      },
    },
    {
      id: 'chat',
      name: 'Chat with the demo agent (a to-do list kept for the room)',
      kind: 'agent',
      public: true,
      // the demo agent dials USHER_WORKER_URL with USHER_WORKER_TOKEN through @usher/worker
      worker: { driver: 'process', command: [process.execPath, DEMO_AGENT] },
      regions: { default: { min: 1, max: 3 } },
      maxQueueLength: 20,
      // a crashed agent comes back on a fresh worker with the list it saved, up to three times a session
      autoRestart: { enabled: true, maxRestarts: 3 },
      timeouts: {
        pendingMs: 120_000,
        connectingMs: 30_000,
        idleMs: 600_000,
        maxRuntimeMs: 1_800_000,
        reconnectWindowMs: 30_000,
        shutdownGraceMs: 2_000,
      },
    },
    {
      id: 'echo',
      name: 'Echo agent (example worker command)',
      kind: 'agent',
      public: true,
      worker: { driver: 'process', command: [process.execPath, ECHO_WORKER] },
      regions: { default: { min: 1, max: 2 } },
      maxQueueLength: 50,
      timeouts: { pendingMs: 120_000, idleMs: 300_000, maxRuntimeMs: 600_000, shutdownGraceMs: 2_000 },
    },
  ];
}

/**
 * The demo's admin key, so that every `npm start` prints the same one: kept beside the demo's SQLite file
 * (readable by its owner only), made on the first run. A real deployment configures its keys instead.
 */
export function demoAdminKey(storage: StorageOptions): string {
  const file = join(storage.type === 'sqlite' ? dirname(storage.path) : '.usher', 'demo-admin-key');
  try {
    const key = readFileSync(file, 'utf8').trim();
    if (key.length >= 16) return key;
  } catch {}
  const { key } = generateAdminKey();
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}
