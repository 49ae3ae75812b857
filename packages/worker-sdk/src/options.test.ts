// Unit tests for option resolution: defaults, env fallbacks and error messages that name what to fix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerError } from './errors.ts';
import { resolveWorkerOptions } from './options.ts';
import { UsherWorker } from './worker.ts';

test('url and token fall back to USHER_WORKER_URL and USHER_WORKER_TOKEN', () => {
  const options = resolveWorkerOptions({
    env: { USHER_WORKER_URL: 'ws://127.0.0.1:1/workers/ws', USHER_WORKER_TOKEN: 'tok' },
  });
  assert.equal(options.url, 'ws://127.0.0.1:1/workers/ws');
  assert.equal(options.token, 'tok');
  assert.equal(options.autoReady, true);
  assert.ok(Object.isFrozen(options));
});

test('options win over env', () => {
  const options = resolveWorkerOptions({
    url: 'wss://a/workers/ws',
    token: 'mine',
    env: { USHER_WORKER_URL: 'ws://b/workers/ws', USHER_WORKER_TOKEN: 'env' },
  });
  assert.equal(options.url, 'wss://a/workers/ws');
  assert.equal(options.token, 'mine');
});

test('missing url and token: one error naming both options and both env vars', () => {
  assert.throws(
    () => new UsherWorker({ env: {} }),
    (err: unknown) => {
      assert.ok(err instanceof WorkerError);
      assert.equal(err.code, 'WORKER_CONFIG');
      for (const part of ['`url`', 'USHER_WORKER_URL', '`token`', 'USHER_WORKER_TOKEN']) {
        assert.ok(err.message.includes(part), `message names ${part}: ${err.message}`);
      }
      return true;
    },
  );
});

test('missing token alone names only the token', () => {
  assert.throws(
    () => resolveWorkerOptions({ url: 'ws://x/workers/ws', env: {} }),
    /no worker token: pass the `token` option or set USHER_WORKER_TOKEN/,
  );
});

test('a non-ws URL and bad durations are refused with the option name', () => {
  assert.throws(
    () => resolveWorkerOptions({ url: 'http://x', token: 't', env: {} }),
    /must start with ws:\/\//,
  );
  assert.throws(
    () => resolveWorkerOptions({ url: 'ws://x', token: 't', heartbeatIntervalMs: 0, env: {} }),
    /`heartbeatIntervalMs` must be a positive number/,
  );
  assert.throws(
    () => resolveWorkerOptions({ url: 'ws://x', token: 't', reconnect: { jitter: 2 }, env: {} }),
    /`reconnect.jitter`/,
  );
});

test('reconnect: false disables reconnecting', () => {
  assert.equal(
    resolveWorkerOptions({ url: 'ws://x', token: 't', reconnect: false, env: {} }).reconnect,
    null,
  );
});
