// A long-lived socket lets go of the HTTP request that opened it: once released, the request and its response
// can be collected; an error on the socket is still logged and ends it, as @fastify/websocket's default does.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import websocket from '@fastify/websocket';
import Fastify from 'fastify';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { releaseUpgrade } from './upgrade.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A server whose one socket route keeps weak references to its upgrade's request and response. */
async function server(release: boolean) {
  const lines: { msg?: string; err?: { message?: string } }[] = [];
  const app = Fastify({
    loggerInstance: pino({ level: 'error' }, { write: (s: string) => void lines.push(JSON.parse(s)) }),
  });
  await app.register(websocket);
  const held: { request?: WeakRef<object>; response?: WeakRef<object>; socket?: WebSocket } = {};
  app.get('/ws', { websocket: true }, (socket, req) => {
    const response = (req.raw.socket as unknown as { _httpMessage?: object })._httpMessage;
    held.request = new WeakRef(req.raw);
    if (response) held.response = new WeakRef(response);
    held.socket = socket;
    if (release) releaseUpgrade(socket, req);
    socket.send('ready');
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const client = new WebSocket(`${url.replace('http', 'ws')}/ws`);
  await once(client, 'message');
  return { app, client, held, lines };
}

async function collected(ref: WeakRef<object> | undefined): Promise<boolean> {
  assert.ok(ref, 'the handler saw it');
  for (let i = 0; i < 3; i++) {
    await turn();
    gc();
  }
  return ref.deref() === undefined;
}

test('released, the request and its response are collected while the socket stays open', async (t) => {
  const { app, client, held } = await server(true);
  t.after(() => app.close());
  assert.equal(await collected(held.request), true, 'the IncomingMessage');
  assert.equal(await collected(held.response), true, 'the ServerResponse');
  client.send('still open');
  assert.equal(client.readyState, WebSocket.OPEN);
  client.close();
});

test('not released, @fastify/websocket keeps them as long as the socket lives', async (t) => {
  const { app, client, held } = await server(false);
  t.after(() => app.close());
  assert.equal(await collected(held.request), false);
  assert.equal(await collected(held.response), false);
  client.close();
});

test('an error on a released socket is logged and ends it', async (t) => {
  const { app, client, held, lines } = await server(true);
  t.after(() => app.close());
  const closed = once(client, 'close') as Promise<[number]>;
  held.socket!.emit('error', new Error('boom'));
  assert.equal((await closed)[0], 1006);
  assert.deepEqual(
    lines.map((l) => [l.msg, l.err?.message]),
    [['WebSocket error', 'boom']],
  );
});
