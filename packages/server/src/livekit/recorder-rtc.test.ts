// The recorder with the real @livekit/rtc-node: its prebuilt binary loads here, and it dials the configured
// URL with the recorder's token and no automatic subscription. No LiveKit server runs here, so the fake refuses
// the signalling connection and the join fails with a clear error. Closing the recorder must release the native
// client: if it did not, this file's process would never exit and the run would time out.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { UsherError } from '@usher/protocol';
import { jwtVerify } from 'jose';
import { FakeLiveKitServer } from './fake-server.ts';
import { LiveKitRecorder } from './recorder.ts';
import { RECORDER_IDENTITY } from './roles.ts';

// @livekit/rtc-node logs every step at debug level unless NODE_ENV is production (read when it loads, which is
// at the first join)
process.env.NODE_ENV = 'production';

const keys = { apiKey: 'APIrtc', apiSecret: 'rtc-secret-of-at-least-32-characters!!' };
let fake: FakeLiveKitServer;
before(async () => {
  fake = await FakeLiveKitServer.start(keys);
});
after(() => fake.close());

test('the real client dials livekit.url with the recorder token and auto_subscribe=0', async () => {
  const recorder = new LiveKitRecorder({ settings: { url: fake.url, ...keys }, onMessage: () => {} });
  await assert.rejects(recorder.join('s_real'), (err: unknown) => {
    assert.ok(err instanceof UsherError);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /could not join LiveKit room "s_real" at ws:\/\/127\.0\.0\.1:\d+: .*404/);
    return true;
  });
  assert.deepEqual(recorder.sessions(), []);

  // the current signalling endpoint first, then the older one, whose options are plain query parameters
  const paths = fake.signalRequests.map((r) => r.path);
  assert.ok(paths.includes('/rtc'), `signalling requests: ${paths.join(', ')}`);
  const v0 = fake.signalRequests.find((r) => r.path === '/rtc')!;
  assert.equal(v0.query.get('auto_subscribe'), '0');
  const token = v0.authorization?.replace(/^Bearer /, '') ?? '';
  const { payload } = await jwtVerify(token, new TextEncoder().encode(keys.apiSecret), {
    issuer: keys.apiKey,
  });
  assert.equal(payload.sub, RECORDER_IDENTITY);
  assert.deepEqual(payload.video, {
    roomJoin: true,
    room: 's_real',
    canUpdateOwnMetadata: false,
    canPublish: false,
    canSubscribe: false,
    canPublishData: false,
    hidden: true,
    recorder: true,
  });
  await recorder.close();
});

test('after the native client was released, the next recorder starts a new one', async () => {
  const before = fake.signalRequests.length;
  const recorder = new LiveKitRecorder({ settings: { url: fake.url, ...keys }, onMessage: () => {} });
  await assert.rejects(recorder.join('s_again'), /could not join LiveKit room "s_again"/);
  assert.ok(fake.signalRequests.length > before, 'the new client did not dial');
  await recorder.close();
});
