// LiveKit participant tokens: real JWTs, verified with the secret, with exactly the grants of each role.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsherError } from '@usher/protocol';
import { errors as joseErrors, jwtVerify } from 'jose';
import { type LiveKitRole, RECORDER_IDENTITY, ROLE_ATTRIBUTE } from './roles.ts';
import { LiveKitTokens } from './tokens.ts';

const settings = { apiKey: 'APIkey1', apiSecret: 'a-livekit-secret-of-at-least-32-characters' };
const tokens = new LiveKitTokens(settings);
const secret = new TextEncoder().encode(settings.apiSecret);

async function verified(kind: LiveKitRole, extra: { name?: string; ttlMs?: number } = {}) {
  const jwt = await tokens.participantToken({
    sessionId: 's_room1',
    identity: kind === 'recorder' ? RECORDER_IDENTITY : `${kind}-1`,
    kind,
    ttlMs: extra.ttlMs ?? 60_000,
    ...(extra.name ? { name: extra.name } : {}),
  });
  const { payload, protectedHeader } = await jwtVerify(jwt, secret, { issuer: settings.apiKey });
  assert.equal(protectedHeader.alg, 'HS256');
  return payload as typeof payload & {
    video: Record<string, unknown>;
    attributes: Record<string, string>;
    kind?: string;
    name?: string;
  };
}

const base = { roomJoin: true, room: 's_room1', canUpdateOwnMetadata: false };

describe('participant tokens', () => {
  for (const kind of ['user', 'viewer'] as const) {
    test(`a ${kind} joins its session's room and may publish, subscribe and send data`, async () => {
      const p = await verified(kind, { name: 'Ada' });
      assert.equal(p.sub, `${kind}-1`);
      assert.equal(p.name, 'Ada');
      assert.deepEqual(p.attributes, { [ROLE_ATTRIBUTE]: kind });
      assert.equal(p.kind, undefined);
      assert.deepEqual(p.video, { ...base, canPublish: true, canSubscribe: true, canPublishData: true });
    });
  }

  test('an observer is hidden and only subscribes', async () => {
    const p = await verified('observer');
    assert.deepEqual(p.attributes, { [ROLE_ATTRIBUTE]: 'observer' });
    assert.deepEqual(p.video, {
      ...base,
      canPublish: false,
      canSubscribe: true,
      canPublishData: false,
      hidden: true,
    });
  });

  test('the agent is a LiveKit agent participant, without the project-wide agent-worker grant', async () => {
    const p = await verified('agent');
    assert.equal(p.kind, 'agent');
    assert.deepEqual(p.attributes, { [ROLE_ATTRIBUTE]: 'agent' });
    assert.equal(p.video.agent, undefined);
    assert.deepEqual(p.video, { ...base, canPublish: true, canSubscribe: true, canPublishData: true });
  });

  test('the recorder is hidden, receives no media, sends nothing and marks the room as recorded', async () => {
    const p = await verified('recorder');
    assert.equal(p.sub, RECORDER_IDENTITY);
    assert.deepEqual(p.attributes, { [ROLE_ATTRIBUTE]: 'recorder' });
    assert.deepEqual(p.video, {
      ...base,
      canPublish: false,
      canSubscribe: false,
      canPublishData: false,
      hidden: true,
      recorder: true,
    });
  });

  test('the lifetime is ttlMs rounded up to whole seconds', async () => {
    const p = await verified('user', { ttlMs: 1500 });
    // exp is computed just before nbf, so a second boundary between the two can make it one less
    assert.ok(p.exp! - p.nbf! === 2 || p.exp! - p.nbf! === 1, `exp - nbf = ${p.exp! - p.nbf!}`);
  });

  test('a token does not verify with another secret', async () => {
    const jwt = await tokens.participantToken({
      sessionId: 's_1',
      identity: 'u',
      kind: 'user',
      ttlMs: 60_000,
    });
    await assert.rejects(
      jwtVerify(jwt, new TextEncoder().encode('another-secret-of-at-least-32-characters')),
      joseErrors.JWSSignatureVerificationFailed,
    );
  });

  test("nobody but the recorder may take the recorder's identity", async () => {
    await assert.rejects(
      tokens.participantToken({
        sessionId: 's_1',
        identity: RECORDER_IDENTITY,
        kind: 'observer',
        ttlMs: 1000,
      }),
      (err: unknown) =>
        err instanceof UsherError && err.code === 'BAD_REQUEST' && /reserved/.test(err.message),
    );
  });
});
