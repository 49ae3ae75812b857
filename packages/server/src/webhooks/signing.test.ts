// Signatures as the Standard Webhooks specification defines them, checked against its published example and
// against its reference library (an implementation of its own).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { signingKey } from './endpoints.ts';
import { sign, signedHeaders } from './signing.ts';

describe('webhook signatures', () => {
  test("the specification's example signs to its expected signature", () => {
    const key = signingKey('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
    assert.equal(
      sign(key, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}'),
      'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    );
  });

  test('the reference library verifies what is signed, with either form of secret, and nothing altered', () => {
    const body = JSON.stringify({ type: 'session.status_changed', data: { text: 'naïve ✓' } });
    const now = Math.floor(Date.now() / 1000);
    for (const [secret, receiver] of [
      [
        'a-plain-secret-of-32-characters!',
        new Webhook('a-plain-secret-of-32-characters!', { format: 'raw' }),
      ],
      [
        `whsec_${Buffer.alloc(24, 9).toString('base64')}`,
        new Webhook(`whsec_${Buffer.alloc(24, 9).toString('base64')}`),
      ],
    ] as const) {
      const headers = signedHeaders(signingKey(secret), 'whd_1', now, body);
      assert.equal(headers['content-type'], 'application/json');
      assert.deepEqual(receiver.verify(body, headers), JSON.parse(body));
      assert.throws(() => receiver.verify(body.replace('naïve', 'naive'), headers), /signature/i);
      assert.throws(() => receiver.verify(body, { ...headers, 'webhook-id': 'whd_2' }), /signature/i);
      assert.throws(
        () => receiver.verify(body, { ...headers, 'webhook-timestamp': String(now - 1) }),
        /signature/i,
      );
    }
  });
});

describe('the verification code in docs/webhooks.md', () => {
  test('accepts what Usher signs, with either form of secret, and refuses anything altered or stale', async () => {
    const doc = readFileSync(new URL('../../../../docs/webhooks.md', import.meta.url), 'utf8');
    const code = /```js\n(import \{ createHmac[\s\S]*?)```/.exec(doc)?.[1];
    assert.ok(code, 'the Node example is in the document');
    const { verifyUsherWebhook } = (await import(`data:text/javascript,${encodeURIComponent(code)}`)) as {
      verifyUsherWebhook: (secret: string, headers: Record<string, string>, body: string) => boolean;
    };
    const body = JSON.stringify({ type: 'session.error', data: { message: 'naïve ✓' } });
    const now = Math.floor(Date.now() / 1000);
    for (const secret of [
      'a-plain-secret-of-32-characters!',
      `whsec_${Buffer.alloc(32, 3).toString('base64')}`,
    ]) {
      const headers = signedHeaders(signingKey(secret), 'whd_doc', now, body);
      assert.equal(verifyUsherWebhook(secret, headers, body), true);
      assert.equal(verifyUsherWebhook(secret, headers, body.replace('naïve', 'naive')), false);
      const wrong = secret.startsWith('whsec_')
        ? `whsec_${Buffer.alloc(32, 4).toString('base64')}`
        : 'b-plain-secret-of-32-characters!';
      assert.equal(verifyUsherWebhook(wrong, headers, body), false, 'another secret');
      const old = signedHeaders(signingKey(secret), 'whd_doc', now - 600, body);
      assert.equal(verifyUsherWebhook(secret, old, body), false, 'a stale timestamp');
    }
  });
});
