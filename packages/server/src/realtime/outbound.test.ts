// Outgoing frames: a socket's frames of one event-loop turn leave in one write, in order, and a close sent after
// them still follows them; an event sent to several sockets reaches each whole.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { sendEvent, sendFrame } from './outbound.ts';

/** A server socket and a client connected to it; the server socket's TCP writes are counted. */
async function pair(wss: WebSocketServer) {
  const { port } = wss.address() as AddressInfo;
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
  const client = new WebSocket(`ws://127.0.0.1:${port}`);
  const received: string[] = [];
  client.on('message', (data) => received.push(String(data)));
  await once(client, 'open');
  const [server] = await accepted;
  const raw = (server as unknown as { _socket: Socket })._socket;
  const writes = { n: 0 };
  const counted = raw as unknown as Record<'_write' | '_writev', (...args: unknown[]) => void>;
  for (const method of ['_write', '_writev'] as const) {
    const original = counted[method].bind(raw);
    counted[method] = (...args) => {
      writes.n++;
      original(...args);
    };
  }
  /** resolves once the client has n frames */
  const frames = async (n: number) => {
    while (received.length < n) await once(client, 'message');
    return received.slice(0, n).map((s) => JSON.parse(s));
  };
  return { client, server, received, writes, frames };
}

test("one turn's frames to a socket leave in one write, in order; the next turn's in the next", async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  t.after(() => wss.close());
  const { client, server, writes, frames } = await pair(wss);
  t.after(() => client.terminate());

  sendFrame(server, { n: 1 });
  sendEvent(server, { n: 2 });
  sendFrame(server, { n: 3 });
  assert.equal(writes.n, 0, 'nothing is written before the turn ends');
  assert.deepEqual(await frames(3), [{ n: 1 }, { n: 2 }, { n: 3 }]);
  assert.equal(writes.n, 1, 'three frames, one write');

  sendFrame(server, { n: 4 });
  assert.deepEqual((await frames(4))[3], { n: 4 });
  assert.equal(writes.n, 2);
});

test('a close sent after frames of the same turn follows them', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  t.after(() => wss.close());
  const { client, server, received } = await pair(wss);
  const closed = once(client, 'close') as Promise<[number, Buffer]>;
  sendFrame(server, { last: true });
  server.close(4001, 'bye');
  const [code, reason] = await closed;
  assert.deepEqual([code, String(reason)], [4001, 'bye']);
  assert.deepEqual(received, ['{"last":true}']);
  sendFrame(server, { after: true }); // a closed socket: nothing is sent, nothing throws
});

test('one event to several sockets reaches each whole, and frames to a closed socket are dropped', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  t.after(() => wss.close());
  const a = await pair(wss);
  const b = await pair(wss);
  const gone = await pair(wss);
  t.after(() => {
    a.client.terminate();
    b.client.terminate();
  });
  gone.client.terminate();
  await once(gone.server, 'close');
  const event = { type: 'session.message', text: 'é 🙂 "quoted"' };
  for (const s of [a.server, gone.server, b.server]) sendEvent(s, event);
  sendEvent(a.server, { type: 'other' });
  sendEvent(b.server, event);
  assert.deepEqual(await a.frames(2), [event, { type: 'other' }]);
  assert.deepEqual(await b.frames(2), [event, event]);
  assert.deepEqual(gone.received, []);
});
