// Tokens: what TokenIssuer signs is a standard HS256 JWT that jose (and so any JWT library) verifies.
import assert from 'node:assert/strict';
import { createSecretKey } from 'node:crypto';
import { describe, test } from 'node:test';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { TokenIssuer } from './tokens.ts';

const SECRET = 'test-secret-0123456789-0123456789-0123456789';
const T = Date.UTC(2026, 0, 1, 12);

describe('TokenIssuer', () => {
  test('signs a standard HS256 JWT with the claims, issuer, issue and expiry times', async () => {
    const tokens = new TokenIssuer(SECRET, () => T);
    const token = await tokens.sign(
      { role: 'viewer', sid: 's_1', pid: 'p', idn: 'viewer_1 "quoted" ✓' },
      90_500,
    );
    assert.deepEqual(decodeProtectedHeader(token), { alg: 'HS256' });
    const { payload } = await jwtVerify(token, createSecretKey(Buffer.from(SECRET)), {
      issuer: 'usher',
      algorithms: ['HS256'],
      currentDate: new Date(T),
    });
    assert.deepEqual(payload, {
      role: 'viewer',
      pid: 'p',
      sid: 's_1',
      idn: 'viewer_1 "quoted" ✓',
      iss: 'usher',
      iat: T / 1000,
      exp: T / 1000 + 91, // whole seconds, rounded up
    });
    assert.deepEqual(await tokens.verify(token), payload);
  });

  test('claims not given are left out', async () => {
    const tokens = new TokenIssuer(SECRET, () => T);
    const verified = await tokens.verify(await tokens.sign({ role: 'worker', wid: 'w_1', pid: 'p' }, 1));
    assert.deepEqual(Object.keys(verified).sort(), ['exp', 'iat', 'iss', 'pid', 'role', 'wid']);
  });

  test('a token expires, and one changed or signed with another secret is refused', async () => {
    let now = T;
    const tokens = new TokenIssuer(SECRET, () => now);
    const token = await tokens.sign({ role: 'agent', sid: 's_1', pid: 'p' }, 60_000);
    const [header, body, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(body!, 'base64url').toString());
    const changed = Buffer.from(JSON.stringify({ ...claims, sid: 's_2' })).toString('base64url');
    await assert.rejects(tokens.verify(`${header}.${changed}.${signature}`), /not valid/);
    const other = new TokenIssuer(`${SECRET}-other`, () => now);
    await assert.rejects(tokens.verify(await other.sign({ role: 'agent', sid: 's_1', pid: 'p' }, 60_000)));
    now = T + 60_000;
    await assert.rejects(tokens.verify(token), /expired/);
  });
});
