// The alternative the relay benchmark names: a bare `ws` forwarder, the least a Pixel Streaming signalling
// relay does per message. A viewer and a streamer meet by a pair number (?pair=…&side=viewer|streamer); each
// JSON message goes to the other side, with the player id added on the way to the streamer and read to route
// on the way back. No sessions, no validation, no authentication. Run by bench/lib/relay-load.ts.
import { type WebSocket, WebSocketServer } from 'ws';

const viewers = new Map<string, WebSocket>();
const streamers = new Map<string, WebSocket>();
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('connection', (ws, req) => {
  const query = new URL(req.url ?? '/', 'http://relay').searchParams;
  const pair = query.get('pair') ?? '';
  const fromViewer = query.get('side') === 'viewer';
  (fromViewer ? viewers : streamers).set(pair, ws);
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { playerId?: string };
    if (fromViewer) streamers.get(pair)?.send(JSON.stringify({ ...m, playerId: pair }));
    else viewers.get(m.playerId ?? '')?.send(JSON.stringify(m));
  });
});
wss.on('listening', () => {
  const { port } = wss.address() as { port: number };
  process.send?.({ t: 'listening', url: `ws://127.0.0.1:${port}` });
});
process.on('message', (m: { t: string; id: number }) => {
  if (m.t === 'cpu') process.send?.({ t: 'reply', id: m.id, value: process.cpuUsage() });
});
process.on('disconnect', () => process.exit(0));
