// The session state machine against SPEC §2: the exact set of legal transitions, and canTransition on all pairs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  canTransition,
  isSessionState,
  LIVE_STATES,
  PENDING_STATES,
  SEATED_STATES,
  SESSION_STATES,
  type SessionState,
  TRANSITIONS,
} from './states.ts';

/**
 * SPEC §2, written out independently of the code: the agent seed's entry/exit conditions, extended with the
 * queue and AFK of the pixel-streaming seed, plus auto-restart (§5) moving a live session back to connecting.
 */
const LEGAL: ReadonlySet<string> = new Set([
  // PENDING: pod scheduled → CONNECTING; timeout or cancel → ENDED (no worker held, so directly)
  'requesting>queued',
  'requesting>connecting',
  'requesting>ended',
  'queued>connecting',
  'queued>ended',
  // CONNECTING: agent connects → ACTIVE; fails or times out → ends, through cleanup of the worker
  'connecting>active',
  // a session paused when its worker crashed is paused again once the fresh worker has it (auto-restart)
  'connecting>paused',
  'connecting>ending',
  // ACTIVE: AFK warning → idle; pause; crash with auto-restart → connecting; leave/crash/timeout/end → ENDING
  'active>idle',
  'active>paused',
  'active>connecting',
  'active>ending',
  // idle: back to active on input; may be paused; restart; times out → ending
  'idle>active',
  'idle>paused',
  'idle>connecting',
  'idle>ending',
  // PAUSED: resume → ACTIVE; restart; timeout or end → ENDING
  'paused>active',
  'paused>connecting',
  'paused>ending',
  // ENDING: cleanup done → ENDED
  'ending>ended',
]);

const ALL: SessionState[] = [
  'requesting',
  'queued',
  'connecting',
  'active',
  'idle',
  'paused',
  'ending',
  'ended',
];

describe('session states', () => {
  test('the eight canonical states, lower-case, in lifecycle order', () => {
    assert.deepEqual([...SESSION_STATES], ALL);
  });

  test('TRANSITIONS lists exactly the legal transitions of SPEC §2', () => {
    const listed = new Set<string>();
    for (const [from, tos] of Object.entries(TRANSITIONS)) {
      assert.equal(new Set(tos).size, tos.length, `${from} lists a target twice`);
      for (const to of tos) listed.add(`${from}>${to}`);
    }
    assert.deepEqual([...listed].sort(), [...LEGAL].sort());
    assert.deepEqual(Object.keys(TRANSITIONS).sort(), [...ALL].sort(), 'one row per state');
  });

  test('ended is terminal', () => {
    assert.deepEqual(TRANSITIONS.ended, []);
    for (const to of ALL) assert.equal(canTransition('ended', to), false, `ended → ${to}`);
  });

  test('pending states hold no worker and may end directly', () => {
    assert.deepEqual([...PENDING_STATES].sort(), ['queued', 'requesting']);
    for (const s of PENDING_STATES) {
      assert.ok(canTransition(s, 'ended'), `${s} → ended`);
      assert.equal(canTransition(s, 'ending'), false, `${s} → ending (nothing to clean up)`);
    }
  });

  test('seated states never skip `ending` on the way to `ended`', () => {
    assert.deepEqual([...SEATED_STATES].sort(), ['active', 'connecting', 'ending', 'idle', 'paused']);
    for (const s of SEATED_STATES) {
      if (s === 'ending') {
        assert.deepEqual(TRANSITIONS.ending, ['ended']);
        continue;
      }
      assert.equal(canTransition(s, 'ended'), false, `${s} → ended must go through ending`);
      assert.ok(canTransition(s, 'ending'), `${s} → ending`);
    }
    // the only way into `ended` from a seated state is `ending`
    const intoEnded = ALL.filter((s) => canTransition(s, 'ended'));
    assert.deepEqual(intoEnded.sort(), ['ending', 'queued', 'requesting']);
  });

  test('live states are active, idle, paused; idle and paused both return to active', () => {
    assert.deepEqual([...LIVE_STATES].sort(), ['active', 'idle', 'paused']);
    assert.ok(canTransition('idle', 'active'));
    assert.ok(canTransition('paused', 'active'));
  });

  test('no state moves to itself, and nothing goes back to a pending state', () => {
    for (const s of ALL) assert.equal(canTransition(s, s), false, `${s} → ${s}`);
    for (const from of ALL) {
      assert.equal(canTransition(from, 'requesting'), false, `${from} → requesting`);
      if (from !== 'requesting') assert.equal(canTransition(from, 'queued'), false, `${from} → queued`);
    }
  });

  test('every state is reachable from requesting, and every state can reach ended', () => {
    const reach = (start: SessionState) => {
      const seen = new Set<SessionState>([start]);
      const todo = [start];
      for (let s = todo.pop(); s !== undefined; s = todo.pop()) {
        for (const to of TRANSITIONS[s]) {
          if (seen.has(to)) continue;
          seen.add(to);
          todo.push(to);
        }
      }
      return seen;
    };
    assert.deepEqual([...reach('requesting')].sort(), [...ALL].sort());
    for (const s of ALL) assert.ok(reach(s).has('ended'), `${s} cannot reach ended`);
  });

  test('canTransition agrees with SPEC §2 on all 64 pairs', () => {
    let pairs = 0;
    for (const from of ALL) {
      for (const to of ALL) {
        pairs++;
        assert.equal(canTransition(from, to), LEGAL.has(`${from}>${to}`), `${from} → ${to}`);
        assert.equal(canTransition(from, to), TRANSITIONS[from].includes(to), `${from} → ${to} vs table`);
      }
    }
    assert.equal(pairs, 64);
  });

  test('isSessionState accepts exactly the canonical names', () => {
    for (const s of ALL) assert.equal(isSessionState(s), true, s);
    const not: unknown[] = [
      'ENDED',
      'Active',
      'PENDING',
      'streaming',
      'disconnected',
      'failed',
      ' active',
      '',
      'toString',
      'constructor',
      null,
      undefined,
      0,
      1,
      true,
      {},
      ['active'],
    ];
    for (const v of not) assert.equal(isSessionState(v), false, JSON.stringify(v));
  });
});
