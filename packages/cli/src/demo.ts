// The demo of `npm start`: projects whose workers are the example commands shipped in this repository.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProjectInput } from '@usher/protocol';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export const ECHO_WORKER = join(root, 'examples', 'echo-worker', 'index.ts');

export function demoProjects(): ProjectInput[] {
  return [
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
