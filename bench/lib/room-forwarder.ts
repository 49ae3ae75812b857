// The alternative the messages benchmark names: a bare `ws` room forwarder, the least a room relay does per
// message. Sockets meet by room (?room=…&identity=…, or &worker for the room's worker); each `message` frame
// is wrapped in the envelope Usher sends (`session.message` to every user of the room, `{type:'message'}`
// to its worker) and answered with `message_ack`. No sessions, no validation, no recording, no
// authentication. Run by bench/lib/room-relays.ts.
import type { Socket } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';

interface Members {
  users: WebSocket[];
  worker: WebSocket | null;
}

const rooms = new Map<string, Members>();
let next = 0;
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const query = new URL(req.url ?? '/', 'http://relay').searchParams;
  const room = query.get('room') ?? '';
  const identity = query.get('identity') ?? 'worker';
  let members = rooms.get(room);
  if (!members) {
    members = { users: [], worker: null };
    rooms.set(room, members);
  }
  if (query.has('worker')) members.worker = ws;
  else members.users.push(ws);
  const from = { identity, kind: query.has('worker') ? 'agent' : 'user' };
  ws.on('message', (raw) => {
    const f = JSON.parse(raw.toString()) as { messageType: string; data: unknown; ref?: string };
    const at = new Date().toISOString();
    const message = {
      id: `m_${(next++).toString(36).padStart(21, '0')}`,
      sessionId: room,
      type: f.messageType,
      from,
      at,
      data: f.data,
    };
    const event = JSON.stringify({ type: 'session.message', sessionId: room, at, message });
    for (const u of members.users) send(u, event);
    if (members.worker) send(members.worker, JSON.stringify({ type: 'message', message }));
    if (f.ref !== undefined)
      send(ws, JSON.stringify({ type: 'message_ack', ref: f.ref, id: message.id, at, recorded: false }));
  });
});

// A socket's frames of one event-loop turn leave in one write, as Usher's do (packages/server/src/realtime/
// outbound.ts): without it each frame is a system call of its own, and the forwarder is slower than Usher.
const corked: Socket[] = [];
function send(ws: WebSocket, json: string): void {
  const raw = (ws as unknown as { _socket: Socket })._socket;
  if (raw.writableCorked === 0) {
    raw.cork();
    if (corked.push(raw) === 1)
      setImmediate(() => {
        for (const s of corked.splice(0)) s.uncork();
      });
  }
  ws.send(json);
}
wss.on('listening', () => {
  const { port } = wss.address() as { port: number };
  process.send?.({ t: 'listening', url: `ws://127.0.0.1:${port}` });
});
process.on('message', (m: { t: string; id: number }) => {
  if (m.t === 'cpu') process.send?.({ t: 'reply', id: m.id, value: process.cpuUsage() });
});
process.on('disconnect', () => process.exit(0));
