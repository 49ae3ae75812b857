// The forwarder's stand-ins for the sessions' workers, in a process of their own as Usher's worker host is:
// one bare `ws` client per room that reads (parses) every message it is given. Run by room-relays.ts.
import WebSocket from 'ws';

const url = process.env.ROOM_FORWARDER_URL;
const rooms = Number(process.env.ROOM_WORKERS ?? 0);
if (!url || !rooms) throw new Error('ROOM_FORWARDER_URL and ROOM_WORKERS must be set');

let received = 0;
let opened = 0;
for (let i = 0; i < rooms; i++) {
  const ws = new WebSocket(`${url}/?room=r${i}&worker`, { perMessageDeflate: false });
  ws.on('open', () => {
    if (++opened === rooms) process.send?.({ t: 'ready' });
  });
  ws.on('message', (raw: Buffer) => {
    const f = JSON.parse(raw.toString()) as { type: string };
    if (f.type === 'message') received++;
  });
}
process.on('message', (m: { t: string; id: number }) => {
  if (m.t === 'cpu') process.send?.({ t: 'reply', id: m.id, value: { ...process.cpuUsage(), received } });
});
process.on('disconnect', () => process.exit(0));
