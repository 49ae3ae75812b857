// GET /workers/ws: the worker protocol. The first frame must be `register` with a valid token; frames are
// handled one at a time, in order.
import {
  MAX_CLIENT_FRAME_BYTES,
  MAX_WORKER_FRAME_BYTES,
  SocketCloseCode,
  UsherError,
  validator,
  WorkerFrame,
} from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import type { ApiContext } from '../api/context.ts';
import type { WorkerLink } from '../engine/engine.ts';
import { closeToRetry, failedOnServer, parseFrame, truncate } from './frames.ts';
import { sendFrame } from './outbound.ts';
import { releaseUpgrade } from './upgrade.ts';

const workerFrame = validator(WorkerFrame);
const REGISTER_WITHIN_MS = 10_000;

export function workerSocketRoute(app: FastifyInstance, ctx: ApiContext): void {
  const { engine } = ctx;
  app.get('/workers/ws', { websocket: true }, (socket: WebSocket, req) => {
    const log = releaseUpgrade(socket, req);
    let workerId: string | null = null;
    /** the worker's project, for log lines (known once it registered) */
    let projectId: string | undefined;
    let chain: Promise<void> = Promise.resolve();
    let closed = false;
    /** the last frame was `stopped`: a close with 1000 after it is the worker leaving (the SDK's close()) */
    let saidStopped = false;
    const link: WorkerLink = {
      send: (frame) => sendFrame(socket, frame),
      close: (code, reason) => socket.close(code, reason),
    };
    const deadline = setTimeout(
      () => socket.close(SocketCloseCode.PolicyViolation, 'the first frame must be register'),
      REGISTER_WITHIN_MS,
    );
    const refuse = (message: string) => {
      link.send({ type: 'error', code: 'FORBIDDEN', message });
      socket.close(SocketCloseCode.PolicyViolation, message.slice(0, 120));
    };

    const handle = async (raw: Parameters<typeof parseFrame>[0], isBinary: boolean) => {
      const parsed = parseFrame(raw, isBinary, workerFrame, MAX_WORKER_FRAME_BYTES);
      if (!parsed.ok) {
        log.warn({ workerId, projectId, problem: parsed.message }, 'bad worker frame');
        if (!workerId) return refuse(parsed.message);
        link.send({ type: 'error', code: parsed.code, message: parsed.message });
        return;
      }
      const frame = parsed.value;
      saidStopped = frame.type === 'stopped';
      if (!workerId) {
        if (frame.type !== 'register')
          return refuse(`the first frame must be register, not ${truncate(frame.type, 40)}`);
        // the limit is on saying register; how long the server takes to answer is its own business
        clearTimeout(deadline);
        try {
          const claims = await ctx.auth.tokens.verify(frame.token);
          const w = await engine.workerRegistered(claims, link, frame.after);
          workerId = w.id;
          projectId = w.projectId;
          log.info(
            { workerId, projectId, region: w.region, driver: w.driver, sessionId: w.sessionId ?? undefined },
            'worker registered',
          );
          // the socket closed while the server registered it: the link it just kept is gone already
          if (closed) engine.workerSocketClosed(w.id, link);
        } catch (err) {
          if (!failedOnServer(err)) return refuse((err as UsherError).message);
          log.error({ err }, 'worker registration failed');
          closeToRetry(socket, link.send, 'registration failed on the server; try again');
        }
        return;
      }
      if (frame.type === 'register') {
        link.send({ type: 'error', code: 'BAD_REQUEST', message: 'already registered' });
        return;
      }
      // a room message is held to the size participants' are held to (their frames); saved state may be larger
      if (frame.type === 'message' && byteLength(raw) > MAX_CLIENT_FRAME_BYTES) {
        link.send({
          type: 'error',
          code: 'PAYLOAD_TOO_LARGE',
          message: `room messages are limited to ${MAX_CLIENT_FRAME_BYTES} bytes (the frame that carries one); this one was dropped`,
        });
        return;
      }
      try {
        await engine.workerFrame(workerId, frame);
      } catch (err) {
        const e =
          err instanceof UsherError ? err : new UsherError('INTERNAL', 'the frame could not be handled');
        if (e.code === 'INTERNAL') {
          const sessionId = 'sessionId' in frame ? frame.sessionId : undefined;
          log.error({ err, workerId, projectId, sessionId, frame: frame.type }, 'worker frame failed');
        }
        link.send({ type: 'error', code: e.code, message: e.message });
      }
    };

    socket.on('message', (raw, isBinary) => {
      if (workerId) engine.workerAlive(workerId);
      chain = chain.then(() => handle(raw, isBinary));
    });
    socket.on('close', (code) => {
      closed = true;
      clearTimeout(deadline);
      if (!workerId || !engine.workerSocketClosed(workerId, link)) return;
      const id = workerId;
      // after the frames before the close: a worker that said stopped and closed cleanly has left for good
      chain = chain.then(async () => {
        if (!saidStopped || code !== 1000) return;
        log.info({ workerId: id, projectId }, 'worker left');
        await engine.workerLeft(id).catch((err) => log.error({ err, workerId: id }, 'worker leaving failed'));
      });
    });
  });
}

function byteLength(raw: Parameters<typeof parseFrame>[0]): number {
  return Array.isArray(raw) ? raw.reduce((n, b) => n + b.byteLength, 0) : raw.byteLength;
}
