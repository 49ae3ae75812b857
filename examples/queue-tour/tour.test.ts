// The queue tour as a test: real echo-worker processes, a manual clock for the deadlines, every documented
// end code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '@usher/server';
import { runTour } from './tour.ts';

test('the queue tour ends every session with its documented code and reason', async () => {
  const lines: string[] = [];
  const results = await runTour({ say: (l) => lines.push(l), clock: new ManualClock(Date.now()) });
  const byName = Object.fromEntries(results.map((r) => [r.name, r]));
  const ends = Object.fromEntries(results.map((r) => [r.name, [r.endCode, r.endReason, r.outcome]]));
  assert.deepEqual(ends, {
    A: [1000, 'completed', 'disconnected'],
    B: [4006, 'worker_crashed', 'failed'],
    C: [4004, 'max_runtime', 'disconnected'],
    D: [4004, 'max_runtime', 'disconnected'],
    E: [4001, 'pending_timeout', 'failed'],
    F: [1001, 'viewer_left', 'disconnected'],
  });
  assert.deepEqual(byName.B!.errors, ['AGENT_CRASHED']);
  assert.deepEqual(byName.C!.positions, [1]);
  assert.deepEqual(byName.D!.positions, [2, 1]);
  assert.deepEqual(byName.E!.positions, [3, 2, 1]);
  assert.deepEqual(byName.E!.states, ['queued', 'ended']);
  assert.ok(lines.some((l) => l.includes('Session  end code')));
});
