// What the log never shows: secrets in text, in URLs, and in fields named like credentials.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { safeLoggerOptions, scrubSecrets } from './redact.ts';

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoidmlld2VyIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
const KEY = 'usk_0123456789abcdefghijklmnopqrstuvwxyzABCDE';

test('scrubSecrets hides tokens, keys, bearer credentials and secret query parameters, and keeps the rest', () => {
  assert.equal(
    scrubSecrets(`ws://h/workers/signalling?token=${JWT}&x=1`),
    'ws://h/workers/signalling?token=[hidden]&x=1',
  );
  assert.equal(scrubSecrets(`/x?a=1&api_key=abc&key=def`), '/x?a=1&api_key=[hidden]&key=[hidden]');
  assert.equal(
    scrubSecrets(`Authorization: Bearer some-opaque-thing, more`),
    'Authorization: Bearer [hidden], more',
  );
  assert.equal(
    scrubSecrets('Sec-WebSocket-Protocol: usher, bearer.some-opaque-thing'),
    'Sec-WebSocket-Protocol: usher, bearer.[hidden]',
  );
  assert.equal(scrubSecrets(`my token is ${JWT}.`), 'my token is [hidden].');
  assert.equal(scrubSecrets(`key ${KEY} here`), 'key [hidden] here');
  assert.equal(
    scrubSecrets('webhook secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw= set'),
    'webhook secret [hidden] set',
  );
  assert.equal(
    scrubSecrets('nothing secret: session s_123 on worker w_456'),
    'nothing secret: session s_123 on worker w_456',
  );
});

test('with safeLoggerOptions, pino hides credential fields and scrubs URLs and messages', () => {
  let out = '';
  const stream = new Writable({
    write(chunk, _e, done) {
      out += chunk.toString();
      done();
    },
  });
  const log = pino({ level: 'info', ...safeLoggerOptions }, stream);
  log.info(
    {
      req: {
        method: 'GET',
        url: `/sessions/s/ws?token=${JWT}`,
        headers: {
          authorization: `Bearer ${KEY}`,
          'x-api-key': KEY,
          cookie: 'a=b',
          'sec-websocket-protocol': 'usher, bearer.a-configured-admin-key',
        },
      },
      token: JWT,
      secret: 'the-secret',
      worker: { key: KEY, url: `ws://h/x?token=${JWT}`, name: 'kept' },
    },
    `hello ${JWT}`,
  );
  type Line = {
    msg: string;
    token: string;
    req: { url: string; method: string; headers: Record<string, string> };
    worker: Record<string, string>;
  };
  const line = JSON.parse(out) as Line;
  assert.ok(!out.includes(JWT) && !out.includes(KEY) && !out.includes('the-secret'), out);
  assert.equal(line.req.url, '/sessions/s/ws?token=[hidden]');
  assert.equal(line.req.headers.authorization, '[hidden]');
  assert.equal(line.req.headers['x-api-key'], '[hidden]');
  assert.equal(line.req.headers['sec-websocket-protocol'], '[hidden]');
  assert.equal(line.req.method, 'GET');
  assert.equal(line.token, '[hidden]');
  assert.equal(line.worker.key, '[hidden]');
  assert.equal(line.worker.url, 'ws://h/x?token=[hidden]');
  assert.equal(line.worker.name, 'kept');
  assert.equal(line.msg, 'hello [hidden]');
});

test('a URL field keeps no password: a database connection string is logged without it', () => {
  let out = '';
  const stream = new Writable({
    write(chunk, _e, done) {
      out += chunk.toString();
      done();
    },
  });
  const log = pino({ level: 'info', ...safeLoggerOptions }, stream);
  log.info({ url: 'postgres://usher:s3cret-pw@db.internal:5432/usher?sslmode=require' });
  log.info({ storage: { url: `postgres://u:an%40other-pw@h/db?token=${JWT}` } });
  log.info({ url: 'postgres://u:unparseable-pw@h:99999/db' });
  log.info({ url: 'postgres://u:bad/pw@h/db' });
  // without credentials, a URL is kept as written: the server's own (`usher is listening`) gets no trailing slash
  log.info({ url: 'http://localhost:8080' });
  const urls = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { url?: string; storage?: { url: string } })
    .map((l) => l.url ?? l.storage?.url);
  assert.deepEqual(urls, [
    'postgres://usher:***@db.internal:5432/usher?sslmode=require',
    'postgres://u:***@h/db?token=[hidden]',
    '<unparseable url>',
    '<unparseable url>',
    'http://localhost:8080',
  ]);
  assert.ok(!out.includes('pw') && !out.includes(JWT), out);
});
