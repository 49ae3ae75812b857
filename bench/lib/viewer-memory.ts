// What a connected viewer costs the server: N sessions of a stream project with one worker (one seated, the
// rest queued), then each viewer's session socket opened the way the Web SDK opens it (snapshot, then
// `listStreamers`, held while it waits), in a few steps; server RSS and JS heap after GC before and after
// each step, divided by the viewers it added. The first `warmup` sockets are opened before the baseline: their
// writes also start the server's SQLite checkpointer thread (after 1,000 commits), a fixed cost of about
// 20 MiB that belongs to the database, not to any viewer.
import { BareStreamer, type BareViewer, openViewer, poolSignallingUrl } from './bare-signalling.ts';
import { type HttpClient, inParallel } from './harness.ts';
import type { StreamServer } from './stream-server.ts';

export interface ViewerMemory {
  viewers: number;
  /** server memory growth per open viewer socket over all of them (bytes) */
  perViewerRss: number;
  perViewerHeap: number;
  /** the same for each step, in order: RSS grows in jumps, the heap steadily */
  steps: { rss: number; heap: number }[];
  /** server memory growth per session before its socket opened (bytes) */
  perSessionRss: number;
  perSessionHeap: number;
  setupMs: number;
}

export async function measureViewerMemory(
  server: StreamServer,
  http: HttpClient,
  o: { projectId: string; viewers: number; warmup: number; steps: number; log: (line: string) => void },
): Promise<ViewerMemory> {
  const started = Date.now();
  const streamer = new BareStreamer(await poolSignallingUrl(http, o.projectId), 'bench-crowd');
  await streamer.workerId;
  await server.readyWorkers(o.projectId, 1, 10_000);
  const empty = await server.stats({ gc: true });

  const total = o.warmup + o.viewers;
  o.log(`streaming: ${total} sessions of ${o.projectId} (1 worker: one seated, the rest queued)`);
  const sessions: { id: string; token: string }[] = new Array(total);
  await inParallel(total, 8, async (i) => {
    const r = await http.call('POST', '/sessions', { projectId: o.projectId });
    if (r.status !== 201) throw new Error(`POST /sessions: ${r.status} ${r.body}`);
    sessions[i] = JSON.parse(r.body) as { id: string; token: string };
  });
  const created = await server.stats({ gc: true });

  o.log(`streaming: opening ${o.warmup} viewer sockets, then ${o.viewers} in ${o.steps} steps`);
  const viewers: BareViewer[] = [];
  const open = async (i: number) => {
    const v = await openViewer(server.url, sessions[i]!);
    viewers.push(v);
    // as the Web SDK does after the snapshot; a ping behind it shows the server has handled it
    v.ws.send(JSON.stringify({ type: 'listStreamers' }));
    v.ws.send(JSON.stringify({ type: 'ping', id: 'settled' }));
    await v.next('pong');
  };
  await inParallel(o.warmup, 32, (i) => open(i));
  const before = await server.stats({ gc: true });
  const steps: { rss: number; heap: number }[] = [];
  let last = before;
  for (let s = 0; s < o.steps; s++) {
    const from = o.warmup + Math.floor((s * o.viewers) / o.steps);
    const to = o.warmup + Math.floor(((s + 1) * o.viewers) / o.steps);
    await inParallel(to - from, 32, (i) => open(from + i));
    const now = await server.stats({ gc: true });
    steps.push({
      rss: (now.memory.rss - last.memory.rss) / (to - from),
      heap: (now.memory.heapUsed - last.memory.heapUsed) / (to - from),
    });
    last = now;
  }
  const setupMs = Date.now() - started;
  for (const v of viewers) v.ws.terminate();
  streamer.ws.terminate();
  const n = o.viewers;
  return {
    viewers: n,
    perViewerRss: (last.memory.rss - before.memory.rss) / n,
    perViewerHeap: (last.memory.heapUsed - before.memory.heapUsed) / n,
    steps,
    perSessionRss: (created.memory.rss - empty.memory.rss) / total,
    perSessionHeap: (created.memory.heapUsed - empty.memory.heapUsed) / total,
    setupMs,
  };
}
