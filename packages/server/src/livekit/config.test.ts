// The `livekit:` settings: accepted shapes, and messages that name the key to fix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LiveKitConfigError, parseLiveKitSettings } from './config.ts';

const good = { url: 'wss://livekit.example.com/', apiKey: 'APIkey', apiSecret: 'secret' };

test('valid settings come back frozen, the URL without its trailing slash', () => {
  const s = parseLiveKitSettings({ ...good, roomEmptyTimeoutS: 600 });
  assert.deepEqual(s, {
    url: 'wss://livekit.example.com',
    apiKey: 'APIkey',
    apiSecret: 'secret',
    roomEmptyTimeoutS: 600,
  });
  assert.ok(Object.isFrozen(s));
  assert.equal(parseLiveKitSettings({ ...good, url: 'ws://127.0.0.1:7880' }).url, 'ws://127.0.0.1:7880');
});

test('each mistake names its key', () => {
  const cases: Array<[unknown, RegExp]> = [
    ['wss://x', /^livekit must be an object/],
    [{ ...good, url: 'https://livekit.example.com' }, /^livekit\.url must be ws:\/\/ or wss:\/\//],
    [{ ...good, url: 'not a url' }, /^livekit\.url is not a URL/],
    [{ apiKey: 'k', apiSecret: 's' }, /^livekit\.url is required/],
    [{ ...good, apiKey: '' }, /^livekit\.apiKey is empty/],
    [{ ...good, apiKey: null }, /^livekit\.apiKey is required/],
    [{ ...good, apiSecret: '  ' }, /^livekit\.apiSecret is empty/],
    [{ ...good, apiSecret: 42 }, /^livekit\.apiSecret must be a string/],
    [{ ...good, roomEmptyTimeoutS: 1.5 }, /^livekit\.roomEmptyTimeoutS must be a whole number/],
    [{ ...good, roomEmptyTimeout: 60 }, /^livekit\.roomEmptyTimeout is not a LiveKit setting/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => parseLiveKitSettings(input),
      (err: unknown) => {
        assert.ok(err instanceof LiveKitConfigError);
        assert.match(err.message, message);
        return true;
      },
    );
  }
});

test('the key can be a longer path', () => {
  assert.throws(() => parseLiveKitSettings({ ...good, url: 'http://x' }, 'server.livekit'), {
    message: /^server\.livekit\.url must be/,
  });
});
