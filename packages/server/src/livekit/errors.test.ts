// What an operator reads when a LiveKit call fails, for the failures the fake cannot produce.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ServerError } from 'livekit-server-sdk';
import { fromLiveKitError } from './errors.ts';

const api = 'https://livekit.example.com';
const convert = (err: unknown) => {
  const ue = fromLiveKitError(err, 'create room "s_1"', api);
  return [ue.code, ue.message];
};

test('LiveKit errors by status', () => {
  assert.deepEqual(convert(new ServerError('Service Unavailable', 'draining', 503)), [
    'UNAVAILABLE',
    'LiveKit failed to create room "s_1" (HTTP 503) (LiveKit said: draining)',
  ]);
  assert.deepEqual(convert(new ServerError('Not Found', '404 page not found', 404)), [
    'INTERNAL',
    `LiveKit at ${api} has no RoomService API (HTTP 404): check that livekit.url points at a LiveKit server`,
  ]);
  assert.deepEqual(
    convert(new ServerError('Bad Request', 'room name length exceeds limits', 400, 'invalid_argument')),
    [
      'INTERNAL',
      'LiveKit refused to create room "s_1" (HTTP 400) (LiveKit said: room name length exceeds limits)',
    ],
  );
});

test('a token that LiveKit echoes back is not passed on', () => {
  const token = 'eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJrIn0.c2lnbmF0dXJl';
  const [, message] = convert(
    new ServerError('Unauthorized', `invalid token: ${token}, error: bad signature`, 401),
  );
  assert.match(message!, /^LiveKit refused the API key: check livekit\.apiKey\/apiSecret/);
  assert.ok(!message!.includes(token));
  assert.match(message!, /invalid token: <token>, error: bad signature/);
});

test('transport failures: unreachable, or too slow', () => {
  const refused = new TypeError('fetch failed', {
    cause: Object.assign(new Error('connect'), { code: 'ENOTFOUND' }),
  });
  assert.deepEqual(convert(refused), [
    'UNAVAILABLE',
    `LiveKit at ${api} is unreachable (ENOTFOUND) while trying to create room "s_1": check livekit.url and that the LiveKit server is running`,
  ]);
  const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
  assert.equal(convert(timeout)[0], 'UNAVAILABLE');
  assert.match(convert(timeout)[1]!, /did not answer in time/);
});
