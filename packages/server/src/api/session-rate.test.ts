// The session rate limiter's parts that the outside cannot see: client keys, exempt ranges, option checks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FastifyReply } from 'fastify';
import { silentLogger } from '../util/logger.ts';
import { clientKey, SessionRateLimiter } from './session-rate.ts';

const reply = () => {
  const headers: Record<string, string> = {};
  return {
    headers,
    reply: { header: (k: string, v: string) => (headers[k] = v) } as unknown as FastifyReply,
  };
};

test('an IPv4 client is its address; an IPv6 client is its /64', () => {
  assert.equal(clientKey('203.0.113.7'), '203.0.113.7');
  assert.equal(clientKey('2001:db8:5:6::1'), '2001:db8:5:6::/64');
  assert.equal(clientKey('2001:0db8:0005:0006:ffff:1:2:3'), '2001:db8:5:6::/64');
  assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(clientKey('::1'), '0:0:0:0::/64');
});

test('exempt ranges, IPv4 on IPv6 sockets, and bad options', () => {
  const now = 0;
  const limiter = new SessionRateLimiter(
    { perClient: { perSecond: 1, burst: 1 }, exemptClients: ['10.0.0.0/8', 'fd00::/8'] },
    true,
    () => now,
    silentLogger,
  );
  for (let i = 0; i < 5; i++) {
    limiter.client('10.1.2.3', reply().reply, false);
    limiter.client('::ffff:10.1.2.3', reply().reply, false);
    limiter.client('fd12::1', reply().reply, false);
  }
  limiter.client('::ffff:203.0.113.1', reply().reply, false);
  const r = reply();
  assert.throws(() => limiter.client('203.0.113.1', r.reply, false), /RATE_LIMITED|too many sessions/);
  assert.equal(r.headers['retry-after'], '1');
  assert.throws(
    () => new SessionRateLimiter({ exemptClients: ['not-an-ip'] }, false, () => 0, silentLogger),
    /exemptClients: "not-an-ip"/,
  );
  assert.throws(
    () => new SessionRateLimiter({ exemptClients: ['10.0.0.0/33'] }, false, () => 0, silentLogger),
    /10\.0\.0\.0\/33/,
  );
  assert.throws(
    () => new SessionRateLimiter({ perClient: { perSecond: 0, burst: 5 } }, false, () => 0, silentLogger),
    /sessionRate\.perClient/,
  );
  // no limit at all
  const open = new SessionRateLimiter({ perClient: false, perProject: false }, false, () => 0, silentLogger);
  for (let i = 0; i < 100; i++) {
    open.client('203.0.113.9', reply().reply, false);
    open.project('p', reply().reply);
  }
});

test('a proxy that is not trusted is reported once', () => {
  const warned: string[] = [];
  const log = { ...silentLogger, warn: (_: object, msg?: string) => warned.push(msg ?? '') };
  const limiter = new SessionRateLimiter(undefined, false, () => 0, log);
  limiter.client('127.0.0.1', reply().reply, true);
  limiter.client('127.0.0.1', reply().reply, true);
  assert.equal(warned.length, 1);
  assert.match(warned[0]!, /trustProxy/);
});
