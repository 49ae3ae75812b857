// Webhook endpoints as configured: defaults, the two secret forms, and mistakes refused with the field to fix.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DEFAULT_WEBHOOK_EVENTS,
  resolveEndpoints,
  SESSION_EVENT_TYPES,
  signingKey,
  WebhookConfigError,
  wants,
} from './endpoints.ts';

const SECRET = 'a-plain-secret-of-32-characters!';

describe('webhook endpoints', () => {
  test('every session event of the protocol is known; the default leaves out messages and queue moves', () => {
    assert.deepEqual(SESSION_EVENT_TYPES, [
      'session.status_changed',
      'session.queue_position',
      'session.participant_joined',
      'session.participant_left',
      'session.message',
      'session.error',
      'session.afk_warning',
    ]);
    assert.deepEqual(DEFAULT_WEBHOOK_EVENTS, [
      'session.status_changed',
      'session.participant_joined',
      'session.participant_left',
      'session.error',
      'session.afk_warning',
    ]);
  });

  test('defaults apply; events and projects narrow what an endpoint gets', () => {
    const [all, narrow] = resolveEndpoints([
      { url: 'https://a.example/hook', secret: SECRET },
      {
        url: 'http://b.example/hook?k=1',
        secret: SECRET,
        events: ['session.message', 'session.status_changed'],
        projects: ['p1'],
      },
    ]);
    assert.ok(all && narrow);
    assert.ok(Object.isFrozen(all));
    assert.equal(all.projects, null);
    assert.ok(wants(all, 'session.status_changed', 'any'));
    assert.ok(!wants(all, 'session.message', 'any'));
    assert.ok(!wants(all, 'session.queue_position', 'any'));
    assert.ok(wants(narrow, 'session.message', 'p1'));
    assert.ok(!wants(narrow, 'session.message', 'p2'));
    assert.ok(!wants(narrow, 'session.error', 'p1'));
  });

  test('a plain secret signs with its own bytes; a whsec_ secret with its decoded bytes', () => {
    assert.deepEqual(signingKey(SECRET), Buffer.from(SECRET));
    const raw = Buffer.alloc(32, 7);
    assert.deepEqual(signingKey(`whsec_${raw.toString('base64')}`), raw);
  });

  test('mistakes are refused, naming the field and how to fix it', () => {
    const bad: [unknown, RegExp][] = [
      [{ secret: SECRET }, /webhooks\[0\]\.url is required/],
      [{ url: 'not a url', secret: SECRET }, /webhooks\[0\]\.url "not a url" is not a URL/],
      [{ url: 'ftp://x.example/', secret: SECRET }, /http:\/\/ or https:\/\//],
      [{ url: 'https://u:p@x.example/', secret: SECRET }, /must not carry credentials/],
      [{ url: 'https://x.example/' }, /webhooks\[0\]\.secret is required/],
      [{ url: 'https://x.example/', secret: 'short' }, /webhooks\[0\]\.secret must be at least 24/],
      [{ url: 'https://x.example/', secret: 'twenty four chars but spaces' }, /without spaces/],
      [{ url: 'https://x.example/', secret: 'whsec_c2hvcnQ=' }, /24 to 64 random bytes/],
      [{ url: 'https://x.example/', secret: 'whsec_not base64!!!!!!!!!!!!!!!!!!!!' }, /whsec_/],
      [{ url: 'https://x.example/', secret: SECRET, events: [] }, /events must be a non-empty list/],
      [
        { url: 'https://x.example/', secret: SECRET, events: ['session.started'] },
        /"session.started" is not a session event; choose from session.status_changed/,
      ],
      [{ url: 'https://x.example/', secret: SECRET, projects: [] }, /projects must be a non-empty list/],
    ];
    for (const [input, message] of bad)
      assert.throws(
        () => resolveEndpoints([input as never]),
        (err: Error) => err instanceof WebhookConfigError && message.test(err.message),
        JSON.stringify(input),
      );
    assert.throws(
      () =>
        resolveEndpoints([
          { url: 'https://x.example/', secret: SECRET },
          { url: 'https://x.example/', secret: SECRET },
        ]),
      /webhooks\[1\]\.url "https:\/\/x.example\/" is configured twice/,
    );
  });
});
