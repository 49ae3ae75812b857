// Example worker command: echoes every room message back as `echo` and counts them with saveState.
import { type Assignment, UsherWorker, type WorkerOptions } from '@usher/worker';

const crashAfterMs = Number(process.env.ECHO_WORKER_CRASH_AFTER_MS ?? '');
const neverReady = process.env.ECHO_WORKER_NEVER_READY === '1';

const log = (message: string): void =>
  console.log(`[echo-worker ${new Date().toISOString()} pid ${process.pid}] ${message}`);

/** The counter saved by an earlier worker of this session, or 0. */
function savedCount(assignment: Assignment): number {
  const state = assignment.savedState as { count?: unknown } | null;
  return typeof state?.count === 'number' ? state.count : 0;
}

let count = 0;
let crashTimer: ReturnType<typeof setTimeout> | undefined;

const options: WorkerOptions = {
  name: 'echo-worker',
  autoReady: !neverReady,
  onConnect(assignment) {
    count = savedCount(assignment);
    log(`session ${assignment.sessionId} assigned (restarts=${assignment.restarts}, count=${count})`);
    if (Number.isFinite(crashAfterMs) && crashAfterMs > 0) {
      log(`will crash in ${crashAfterMs} ms (ECHO_WORKER_CRASH_AFTER_MS)`);
      crashTimer = setTimeout(() => {
        log('crashing on purpose');
        process.exit(1);
      }, crashAfterMs);
    }
  },
  onParticipantJoined: (p) => log(`participant joined: ${p.identity} (${p.kind})`),
  onParticipantLeft: (p) => log(`participant left: ${p.identity} (${p.kind})`),
  onMessage(envelope, w) {
    if (envelope.type === 'echo') return; // never echo an echo
    count += 1;
    w.send('echo', envelope.data);
    w.saveState({ count });
    log(`echoed ${envelope.type} from ${envelope.from.identity} (count=${count})`);
  },
  onSessionState: (s) => log(`session state: ${s.state}`),
  onShutdown: (info) => log(`shutdown: ${info.reason} (grace ${info.graceMs} ms)`),
  onDisconnect: () => {
    clearTimeout(crashTimer);
    log('left the session');
  },
};

let worker: UsherWorker;
try {
  worker = new UsherWorker(options);
} catch (err) {
  log(`cannot start: ${err instanceof Error ? err.message : String(err)}`); // names the env vars to set
  process.exit(2);
}

worker.on('registered', ({ workerId }) =>
  log(
    neverReady
      ? `registered as ${workerId}; never ready (ECHO_WORKER_NEVER_READY=1)`
      : `registered as ${workerId}; ready`,
  ),
);
worker.on('reconnecting', ({ attempt, delayMs }) =>
  log(`connection lost; reconnect #${attempt} in ${delayMs} ms`),
);
worker.on('error', (err) => log(`error: ${err.message}`));

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    log(`${signal}: closing`);
    void worker.close();
  });
}

try {
  await worker.start();
} catch (err) {
  log(`could not start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
await worker.closed;
log('stopped');
process.exit(0);
