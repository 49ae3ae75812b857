// Close codes and end reasons against SPEC §3-§4: every reason has a code, every app code a reason, and the
// reconnect policy and outcome of each code.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  CLOSE_CODES,
  type CloseCode,
  END_REASONS,
  EndReason,
  isCloseCode,
  outcomeOf,
} from './close-codes.ts';

const ALL_CODES: CloseCode[] = [1000, 1001, 1006, 4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007];

describe('close codes and end reasons', () => {
  test('CLOSE_CODES holds exactly the codes of SPEC §4', () => {
    assert.deepEqual(
      Object.keys(CLOSE_CODES)
        .map(Number)
        .sort((a, b) => a - b),
      ALL_CODES,
    );
    for (const code of ALL_CODES) assert.ok(CLOSE_CODES[code].meaning.length > 0, `${code} has a meaning`);
  });

  test('every end reason maps to a code in CLOSE_CODES', () => {
    const reasons = Object.entries(END_REASONS);
    assert.ok(reasons.length > 0);
    for (const [reason, { code, description }] of reasons) {
      assert.ok(isCloseCode(code), `${reason} → ${code} is not a close code`);
      assert.ok(Object.hasOwn(CLOSE_CODES, code), `${reason} → ${code}`);
      assert.ok(description.length > 0, `${reason} has a description`);
    }
  });

  test('EndReason and END_REASONS name the same reasons', () => {
    assert.deepEqual(Object.values(EndReason).sort(), Object.keys(END_REASONS).sort());
  });

  test('every application code 4000-4007 (and 1000, 1001) has at least one reason', () => {
    const used = new Set(Object.values(END_REASONS).map((r) => r.code));
    for (const code of [1000, 1001, 4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007] as const)
      assert.ok(used.has(code), `no end reason uses ${code}`);
    // 1006 is a dropped link, never how a session ends: the reconnect window turns it into 4007
    assert.equal(used.has(1006), false);
  });

  test('the reasons SPEC §3-§5 name end with their codes', () => {
    const expected: Record<string, CloseCode> = {
      pending_timeout: 4001,
      queue_full: 4001,
      connecting_timeout: 4003,
      launch_failed: 4003,
      afk_timeout: 4004,
      idle_timeout: 4004,
      paused_timeout: 4004,
      max_runtime: 4004,
      reconnect_failed: 4007,
      worker_crashed: 4006,
      worker_lost: 4005,
      project_disabled: 4000,
      app_not_found: 4002,
      viewer_left: 1001,
      completed: 1000,
    };
    for (const [reason, code] of Object.entries(expected))
      assert.equal(END_REASONS[reason as EndReason].code, code, reason);
  });

  test('outcomeOf: clean ends are `disconnected`, unexpected ones `failed`', () => {
    const expected: Record<CloseCode, 'disconnected' | 'failed'> = {
      1000: 'disconnected',
      1001: 'disconnected',
      1006: 'failed', // network drop (the seed's `failed`)
      4000: 'disconnected', // the owner disabled the project
      4001: 'failed', // no worker (the seed's `failed`)
      4002: 'failed',
      4003: 'failed',
      4004: 'disconnected', // a configured limit was reached
      4005: 'failed',
      4006: 'failed', // app crashed (the seed's `failed`)
      4007: 'failed',
    };
    for (const code of ALL_CODES) assert.equal(outcomeOf(code), expected[code], String(code));
  });

  test('reconnect policy (SPEC §4): 1006 resumes, 4007 starts fresh, every other code stops', () => {
    for (const code of ALL_CODES) {
      const want = code === 1006 ? 'resume' : code === 4007 ? 'fresh' : 'none';
      assert.equal(CLOSE_CODES[code].reconnect, want, String(code));
    }
  });

  test('isCloseCode', () => {
    for (const code of ALL_CODES) assert.equal(isCloseCode(code), true, String(code));
    for (const v of [999, 1002, 1005, 3999, 4008, 4100, '1000', null, undefined, Number.NaN, 4000.5])
      assert.equal(isCloseCode(v), false, String(v));
  });
});
