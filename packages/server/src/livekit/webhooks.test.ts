// LiveKit webhooks over real HTTP: the fake LiveKit signs and posts them to POST /livekit/webhook on a
// Fastify app; valid ones become Usher events, tampered or foreign ones get 401.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { installErrorHandling } from '../api/errors.ts';
import { FakeLiveKitServer } from './fake-server.ts';
import { LiveKitTokens } from './tokens.ts';
import { type LiveKitRoomEvent, LiveKitWebhooks, liveKitWebhookRoute, WEBHOOK_PATH } from './webhooks.ts';

const keys = { apiKey: 'APIhooks', apiSecret: 'hooks-secret-of-at-least-32-characters!' };
const tokens = new LiveKitTokens(keys);
let app: FastifyInstance;
let fake: FakeLiveKitServer;
const events: LiveKitRoomEvent[] = [];
let failNext = false;

before(async () => {
  app = Fastify();
  installErrorHandling(app);
  app.post('/echo', async (req) => ({ body: req.body }));
  await liveKitWebhookRoute(app, {
    receiver: new LiveKitWebhooks(keys),
    onEvent: (event) => {
      if (failNext) {
        failNext = false;
        throw new Error('the engine is not ready');
      }
      events.push(event);
    },
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  fake = await FakeLiveKitServer.start({ ...keys, webhookUrl: `http://127.0.0.1:${port}${WEBHOOK_PATH}` });
});
after(async () => {
  await fake.close();
  await app.close();
});
beforeEach(() => {
  events.length = 0;
});

const token = (sessionId: string, identity: string, kind: 'user' | 'agent' | 'recorder', name?: string) =>
  tokens.participantToken({ sessionId, identity, kind, ttlMs: 60_000, ...(name ? { name } : {}) });

describe('signed webhooks become Usher events', () => {
  test("joins and leaves carry the session, the identity, the name and Usher's kind", async () => {
    const sent = await fake.join(await token('s_hooks', 'u1', 'user', 'Ada'));
    // LiveKit creates the room on the first join: room_started is answered but not passed on
    assert.deepEqual(
      sent.map((d) => [d.event, d.status]),
      [
        ['room_started', 200],
        ['participant_joined', 200],
      ],
    );
    await fake.join(await token('s_hooks', 'w1', 'agent'));
    await fake.join(await token('s_hooks', 'usher-recorder', 'recorder'));
    await fake.leave('s_hooks', 'u1');
    assert.deepEqual(
      events.map((e) =>
        e.type === 'room_finished' ? [e.type, e.sessionId] : [e.type, e.sessionId, e.participant],
      ),
      [
        ['participant_joined', 's_hooks', { identity: 'u1', kind: 'user', name: 'Ada' }],
        ['participant_joined', 's_hooks', { identity: 'w1', kind: 'agent' }],
        ['participant_joined', 's_hooks', { identity: 'usher-recorder', kind: 'observer' }],
        ['participant_left', 's_hooks', { identity: 'u1', kind: 'user', name: 'Ada' }],
      ],
    );
    for (const e of events) {
      assert.match(e.id, /^EV_/);
      assert.ok(!Number.isNaN(Date.parse(e.at)));
    }
  });

  test('a closed room: everyone leaves, then room_finished', async () => {
    await fake.join(await token('s_closed', 'u1', 'user'));
    events.length = 0;
    await fake.closeRoom('s_closed');
    assert.deepEqual(
      events.map((e) => [e.type, e.sessionId]),
      [
        ['participant_left', 's_closed'],
        ['room_finished', 's_closed'],
      ],
    );
  });

  test('a Bearer prefix (added by a proxy) is accepted', async () => {
    await fake.join(await token('s_bearer', 'u1', 'user'));
    events.length = 0;
    const { body, authorization } = await fake.signedWebhook('participant_left', 's_bearer', 'u1');
    const d = await fake.deliver('participant_left', body, `Bearer ${authorization}`);
    assert.equal(d.status, 200);
    assert.equal(events.length, 1);
  });

  test('when handling fails, LiveKit gets an error (and sends the webhook again)', async () => {
    await fake.join(await token('s_retry', 'u1', 'user'));
    failNext = true;
    const [left] = await fake.leave('s_retry', 'u1');
    assert.equal(left?.status, 500);
  });
});

describe('webhooks that are not from LiveKit get 401', () => {
  const refused = (d: { status: number; body: string }, message: RegExp) => {
    assert.equal(d.status, 401);
    const body = JSON.parse(d.body) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'UNAUTHORIZED');
    assert.match(body.error.message, message);
    assert.deepEqual(events, []);
  };

  before(async () => {
    await fake.join(await token('s_forged', 'u1', 'user'));
  });

  test('a tampered body', async () => {
    const { body, authorization } = await fake.signedWebhook('participant_joined', 's_forged', 'u1');
    const tampered = body.replace('"identity":"u1"', '"identity":"u2"');
    assert.notEqual(tampered, body);
    refused(
      await fake.deliver('participant_joined', tampered, authorization),
      /body is not the one its signature/,
    );
  });

  test('signed with another secret', async () => {
    const forged = await fake.signedWebhook('participant_joined', 's_forged', 'u1', {
      apiKey: keys.apiKey,
      apiSecret: 'another-secret-of-at-least-32-characters',
    });
    refused(
      await fake.deliver('participant_joined', forged.body, forged.authorization),
      /signature does not verify with livekit\.apiSecret/,
    );
  });

  test('signed by another API key', async () => {
    const forged = await fake.signedWebhook('participant_joined', 's_forged', 'u1', {
      apiKey: 'APIother',
      apiSecret: keys.apiSecret,
    });
    refused(
      await fake.deliver('participant_joined', forged.body, forged.authorization),
      /signed by another API key than livekit\.apiKey/,
    );
  });

  test('no signature, or one that is not a token', async () => {
    const { body } = await fake.signedWebhook('participant_joined', 's_forged', 'u1');
    refused(await fake.deliver('participant_joined', body, ''), /no Authorization header/);
    refused(await fake.deliver('participant_joined', body, 'not-a-token'), /not a LiveKit token/);
  });
});

test('the route keeps its raw-body parsers to itself', async () => {
  const res = await app.inject({ method: 'POST', url: '/echo', payload: { a: 1 } });
  assert.deepEqual(res.json(), { body: { a: 1 } });
});
