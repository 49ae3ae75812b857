// Resolving the streamer's settings from its command line and environment.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveOptions } from './options.ts';

const SIGNALLING_URL = 'ws://127.0.0.1:8080/workers/signalling?token=abc';

test('the URL comes from --signalling-url, UE-style -PixelStreamingSignallingURL, or USHER_SIGNALLING_URL', () => {
  assert.equal(resolveOptions([`--signalling-url=${SIGNALLING_URL}`], {}).signallingUrl, SIGNALLING_URL);
  assert.equal(
    resolveOptions([`-PixelStreamingSignallingURL=${SIGNALLING_URL}`], {}).signallingUrl,
    SIGNALLING_URL,
  );
  assert.equal(resolveOptions([], { USHER_SIGNALLING_URL: SIGNALLING_URL }).signallingUrl, SIGNALLING_URL);
  const flagWins = resolveOptions([`--signalling-url=${SIGNALLING_URL}`], {
    USHER_SIGNALLING_URL: 'ws://elsewhere',
  });
  assert.equal(flagWins.signallingUrl, SIGNALLING_URL);
});

test('the endpoint id and session id come from the environment', () => {
  const o = resolveOptions([], {
    USHER_SIGNALLING_URL: SIGNALLING_URL,
    USHER_WORKER_ID: 'w-1',
    USHER_SESSION_ID: 's-1',
  });
  assert.deepEqual(o, { signallingUrl: SIGNALLING_URL, endpointId: 'w-1', sessionId: 's-1' });
  assert.ok(Object.isFrozen(o));
  const bare = resolveOptions([], { USHER_SIGNALLING_URL: SIGNALLING_URL });
  assert.match(bare.endpointId, /^demo-streamer-[0-9a-f]{8}$/);
  assert.equal(bare.sessionId, null);
});

test('errors name the flag and the variable to set', () => {
  assert.throws(() => resolveOptions([], {}), /--signalling-url=.*USHER_SIGNALLING_URL/);
  assert.throws(() => resolveOptions(['--signalling-url=http://x'], {}), /must be a ws:\/\/ or wss:\/\/ URL/);
  assert.throws(() => resolveOptions(['--signalling-url=ws://a b'], {}), /must be a ws:\/\/ or wss:\/\/ URL/);
  assert.throws(
    () => resolveOptions(['--fps=60'], { USHER_SIGNALLING_URL: SIGNALLING_URL }),
    /unknown argument --fps=60/,
  );
});
