// OriginPolicy: which origins are allowed, how they are written in configuration, and what same-origin means.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { OriginPolicy } from './origins.ts';

const req = (origin: string | undefined, host = 'usher.example.com') =>
  ({ headers: origin === undefined ? {} : { origin }, host }) as unknown as FastifyRequest;

test('allowed origins are exact origins or "*"; anything else is refused at start-up, naming it', () => {
  for (const bad of [
    'app.example.com',
    'https://app.example.com/path',
    'ftp://x.example',
    'https://u:p@x.example',
    '*.example.com',
    '',
  ])
    assert.throws(
      () => new OriginPolicy([bad]),
      (e: Error) => e.message.includes('allowedOrigins') && e.message.includes(`"${bad}"`),
      bad,
    );
  const p = new OriginPolicy(['https://App.Example.com:443/', 'http://localhost:5173']);
  assert.equal(
    p.corsOrigin('https://app.example.com'),
    'https://app.example.com',
    'written any way, compared as browsers send it',
  );
  assert.equal(p.corsOrigin('http://localhost:5173'), 'http://localhost:5173');
  assert.equal(p.corsOrigin('http://localhost:5174'), false);
  assert.equal(p.corsOrigin(undefined), false);
  assert.equal(p.crossOrigin, true);
  assert.equal(new OriginPolicy([]).crossOrigin, false);
  assert.equal(new OriginPolicy(['*']).corsOrigin('https://anyone.example'), '*');
});

test('sockets: no Origin, the same host, the public URL and allowed origins pass; others do not', () => {
  const p = new OriginPolicy(['https://app.example.com'], 'https://public.example.com');
  assert.equal(p.allowsSocket(req(undefined)), true, 'a worker or backend sends no Origin');
  assert.equal(p.allowsSocket(req('https://usher.example.com')), true, 'same host');
  assert.equal(
    p.allowsSocket(req('http://usher.example.com')),
    true,
    'same host behind a proxy that ends TLS',
  );
  assert.equal(
    p.allowsSocket(req('https://usher.example.com:8443')),
    false,
    'another port is another origin',
  );
  assert.equal(
    p.allowsSocket(req('https://public.example.com', '10.0.0.5:8080')),
    true,
    'the public URL, whatever Host the proxy sends',
  );
  assert.equal(p.allowsSocket(req('https://app.example.com')), true);
  assert.equal(p.allowsSocket(req('https://evil.example')), false);
  assert.equal(p.allowsSocket(req('null')), false);
  assert.equal(new OriginPolicy(['*']).allowsSocket(req('null')), true);
});
