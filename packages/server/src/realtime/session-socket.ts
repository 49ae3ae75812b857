// GET /sessions/{id}/ws: a participant's live connection. It first gets the current state, then every
// event; the viewer's connection also drives AFK (input) and reconnection (its close code).
import {
  ClientFrame,
  MAX_CLIENT_FRAME_BYTES,
  type SessionEvent,
  SocketCloseCode,
  UsherError,
  validator,
} from '@usher/protocol';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { callerOf, requireSession } from '../api/auth.ts';
import type { ApiContext } from '../api/context.ts';
import { newId } from '../engine/ids.ts';

const clientFrame = validator(ClientFrame);

export function sessionSocketRoute(app: FastifyInstance, ctx: ApiContext): void {
  const { engine } = ctx;
  app.get<{ Params: { id: string } }>(
    '/sessions/:id/ws',
    { websocket: true },
    async (socket: WebSocket, req) => {
      const sessionId = req.params.id;
      // events that arrive while the snapshot is read are held, then sent after it
      let buffer: SessionEvent[] | null = [];
      let ended = false;
      const send = (e: SessionEvent | Record<string, unknown>) => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(e));
      };
      const deliver = (e: SessionEvent) => {
        send(e);
        if (e.type === 'session.status_changed' && e.status === 'ended' && !ended) {
          ended = true;
          socket.close(e.endCode ?? 1000, e.endReason ?? '');
        }
      };
      const unsubscribe = engine.hub.subscribe(sessionId, (e) => (buffer ? buffer.push(e) : deliver(e)));

      let role: string;
      try {
        const caller = await callerOf(req, ctx.auth);
        requireSession(caller, sessionId, ['viewer', 'user', 'observer', 'agent']);
        role = caller.kind === 'token' ? caller.token.role : 'observer';
        const s = await engine.getSession(sessionId);
        const timeline = await engine.store.read.timeline(sessionId);
        const last = timeline[timeline.length - 1];
        const snapshot: SessionEvent = {
          type: 'session.status_changed',
          sessionId,
          at: new Date(last?.at ?? s.updatedAt).toISOString(),
          status: s.state,
          previous: last?.from ?? null,
          cause: last?.cause ?? 'snapshot',
          ...(s.state === 'ended'
            ? { endCode: s.endCode!, endReason: s.endReason!, outcome: s.outcome! }
            : {}),
        };
        deliver(snapshot);
        const q = await engine.queuePosition(s);
        if (q)
          send({
            type: 'session.queue_position',
            sessionId,
            at: new Date(engine.clock.now()).toISOString(),
            ...q,
          });
        if (role === 'viewer' && !ended) await engine.viewerAttached(sessionId);
      } catch (err) {
        unsubscribe();
        const e =
          err instanceof UsherError ? err : new UsherError('INTERNAL', 'could not open the session socket');
        send({ type: 'error', code: e.code, message: e.message });
        socket.close(SocketCloseCode.PolicyViolation, e.message.slice(0, 120));
        return;
      }
      const held = buffer;
      buffer = null;
      for (const e of held) if (!ended) deliver(e);

      socket.on('message', (raw, isBinary) => {
        const parsed = (() => {
          const buf = raw as Buffer;
          if (buf.byteLength > MAX_CLIENT_FRAME_BYTES) return null;
          try {
            return clientFrame.parse(JSON.parse(isBinary ? '' : buf.toString('utf8')));
          } catch {
            return { ok: false as const, message: 'the frame is not valid JSON' };
          }
        })();
        if (parsed === null) {
          socket.close(SocketCloseCode.TooLarge, `frames are limited to ${MAX_CLIENT_FRAME_BYTES} bytes`);
          return;
        }
        if (!parsed.ok) {
          send({ type: 'error', code: 'BAD_REQUEST', message: parsed.message });
          return;
        }
        const frame = parsed.value;
        switch (frame.type) {
          case 'ping':
            send({ type: 'pong', id: frame.id ?? null, at: new Date(engine.clock.now()).toISOString() });
            return;
          case 'input':
            if (role === 'viewer' || role === 'user')
              void engine.recordInput(sessionId).catch((err) => req.log.error({ err }, 'input failed'));
            return;
          case 'message': {
            if (role === 'observer') {
              send({ type: 'error', code: 'FORBIDDEN', message: 'observers cannot send room messages' });
              return;
            }
            const token = role;
            engine.hub.publish({
              type: 'session.message',
              sessionId,
              at: new Date(engine.clock.now()).toISOString(),
              message: {
                id: newId('m', engine.clock.now()),
                sessionId,
                type: frame.messageType,
                from: {
                  identity: token,
                  kind: role === 'agent' ? 'agent' : role === 'user' ? 'user' : 'viewer',
                },
                at: new Date(engine.clock.now()).toISOString(),
                data: frame.data,
              },
            });
            void engine.recordActivity(sessionId).catch(() => {});
            return;
          }
        }
      });

      socket.on('close', (code) => {
        unsubscribe();
        if (role === 'viewer' && !ended) {
          void engine
            .viewerDetached(sessionId, code)
            .catch((err) => req.log.error({ err }, 'viewer detach failed'));
        }
      });
    },
  );
}
