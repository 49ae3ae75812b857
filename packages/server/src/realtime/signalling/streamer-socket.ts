// GET /workers/signalling: a worker that speaks Epic's Pixel Streaming streamer protocol (a UE app started
// with -PixelStreamingSignallingURL, or the demo streamer). Usher identifies it, registers it as a worker with
// the token in its URL, and translates the engine's worker frames into signalling: an assignment seats the
// streamer (its viewer may subscribe), a shutdown disconnects the viewer. See docs/signalling.md.
import {
  MAX_STREAMER_FRAME_BYTES,
  type ServerToWorkerFrame,
  SocketCloseCode,
  StreamerSignal,
  UsherError,
  validator,
} from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { credentialOf } from '../../api/auth.ts';
import type { ApiContext } from '../../api/context.ts';
import type { WorkerLink } from '../../engine/engine.ts';
import { closeToRetry, failedOnServer, parseFrame, truncate } from '../frames.ts';
import { releaseUpgrade } from '../upgrade.ts';

const streamerSignal = validator(StreamerSignal);
const IDENTIFY_WITHIN_MS = 10_000;

export function streamerSocketRoute(app: FastifyInstance, ctx: ApiContext): void {
  const { engine, relay } = ctx;
  app.get('/workers/signalling', { websocket: true }, (socket: WebSocket, req) => {
    // what the handlers need of the upgrade request, taken before it is let go
    const credential = credentialOf(req);
    const log = releaseUpgrade(socket, req);
    let workerId: string | null = null;
    /** the worker's project, for log lines (known once it registered) */
    let projectId: string | undefined;
    let external = false;
    /** the close code, once the socket has closed (it may close while the server registers it) */
    let closedWith: number | null = null;
    let chain: Promise<void> = Promise.resolve();
    const send = (m: Record<string, unknown>) => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(m));
    };
    const peer = { send };
    const fail = (err: unknown, what: string) => {
      const e = err instanceof UsherError ? err : new UsherError('INTERNAL', `${what} failed`);
      if (e.code === 'INTERNAL') log.error({ err, workerId, projectId }, what);
      else log.warn({ workerId, projectId, problem: e.message }, what);
    };

    // the engine talks to every worker in its own protocol; a streamer hears only what it understands
    const link: WorkerLink = {
      send: (frame: ServerToWorkerFrame) => {
        const id = workerId;
        if (!id) return;
        if (frame.type === 'assign') {
          const { sessionId } = frame.assignment;
          relay.seated(id, sessionId);
          // the streamer is ready to take its viewer: the seat is held until the viewer is there
          chain = chain
            .then(() => engine.workerFrame(id, { type: 'session_started', sessionId }))
            .catch((err) => fail(err, 'session start'));
        } else if (frame.type === 'shutdown') {
          relay.released(id, frame.sessionId);
          if (frame.sessionId === null) {
            socket.close(1000, truncate(`shutdown: ${frame.reason}`, 100));
            return;
          }
          chain = chain
            .then(() => engine.workerFrame(id, { type: 'stopped' }))
            .catch((err) => fail(err, 'stop'));
        }
      },
      close: (code, reason) => socket.close(code, reason),
    };

    const deadline = setTimeout(
      () => socket.close(SocketCloseCode.PolicyViolation, 'identify was not answered with endpointId'),
      IDENTIFY_WITHIN_MS,
    );
    // Usher pings; a streamer's WebSocket library answers with pong, which keeps the worker alive
    const pinger = setInterval(() => {
      if (socket.readyState === socket.OPEN) socket.ping();
    }, engine.o.heartbeatIntervalMs);
    socket.on('pong', () => {
      if (workerId) engine.workerAlive(workerId);
    });

    const refuse = (message: string) => {
      send({ type: 'error', code: 'FORBIDDEN', message });
      socket.close(SocketCloseCode.PolicyViolation, truncate(message, 120));
    };

    const register = async (endpointId: string) => {
      try {
        if (!credential) return refuse('the signalling URL needs ?token=<worker or pool token>');
        // a UE app reconnects with the URL it was started with: its launch token, honoured while the worker runs
        const claims = await ctx.auth.tokens.verify(credential, { expiredLaunch: true });
        const w = await engine.workerRegistered(claims, link);
        projectId = w.projectId;
        external = w.driver === 'external';
        clearTimeout(deadline);
        // the socket closed while the server registered it: the link it just kept is gone already
        if (closedWith !== null) return streamerGone(w.id, closedWith, false);
        workerId = w.id;
        relay.streamerConnected(w.id, peer);
        log.info(
          { workerId: w.id, projectId, region: w.region, sessionId: w.sessionId ?? undefined, endpointId },
          'streamer registered',
        );
        // a streamer that comes back (server restart, network) keeps the session it was seated for
        if (w.sessionId && (w.state === 'reserved' || w.state === 'busy')) relay.seated(w.id, w.sessionId);
        await engine.workerFrame(w.id, { type: 'ready' });
        send({ type: 'endpointIdConfirm', committedId: w.id });
      } catch (err) {
        if (!failedOnServer(err)) return refuse((err as UsherError).message);
        log.error({ err }, 'streamer registration failed');
        closeToRetry(socket, send, 'registration failed on the server; try again');
      }
    };

    const handle = async (raw: Parameters<typeof parseFrame>[0], isBinary: boolean) => {
      const parsed = parseFrame(raw, isBinary, streamerSignal, MAX_STREAMER_FRAME_BYTES);
      if (!parsed.ok) {
        log.warn({ workerId, projectId, problem: parsed.message }, 'bad streamer message');
        send({ type: 'error', code: parsed.code, message: parsed.message });
        return;
      }
      const m = parsed.value;
      if (m.type === 'ping') return send({ type: 'pong', time: m.time ?? Date.now() / 1000 });
      if (m.type === 'pong' || m.type === 'stats' || m.type === 'layerPreference') return;
      if (!workerId) {
        if (m.type === 'endpointId') return register(m.id);
        return refuse(`answer identify with endpointId before sending ${truncate(m.type, 40)}`);
      }
      if (m.type === 'endpointId' || m.type === 'streamerDataChannels') return;
      relay.fromStreamer(workerId, m);
    };

    socket.on('message', (raw, isBinary) => {
      if (workerId) engine.workerAlive(workerId);
      chain = chain.then(() => handle(raw, isBinary)).catch((err) => fail(err, 'streamer message'));
    });
    /** The streamer's socket is gone (closed with `code`): its link too, and an app started by hand that said goodbye. */
    const streamerGone = (id: string, code: number, connected: boolean) => {
      if (connected) relay.streamerClosed(id, peer);
      const current = engine.workerSocketClosed(id, link);
      // an app started by hand that says goodbye is gone now (unless it already came back on a new socket);
      // others may come back until liveness decides
      if (current && external && (code === 1000 || code === 1001)) {
        void engine
          .onWorkerExit({ workerId: id, code: null, signal: null, expected: true })
          .catch((err) => fail(err, 'streamer exit'));
      }
    };
    socket.on('close', (code) => {
      closedWith = code;
      clearTimeout(deadline);
      clearInterval(pinger);
      if (workerId) streamerGone(workerId, code, true);
    });

    send(relay.config());
    send({ type: 'identify' });
  });
}
