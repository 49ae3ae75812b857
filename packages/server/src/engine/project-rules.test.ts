// Pure project rules: why a session cannot run (the 4002 message), which timers apply, the queue's ETA.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyProjectInput, type ProjectInput } from '@usher/protocol';
import type { ProjectSettings } from '../storage/records.ts';
import { estimateWaitMs, needsViewerToStart, unrunnableReason, usesAfk, usesIdle } from './project-rules.ts';

function project(input: Omit<ProjectInput, 'id'> = {}): ProjectSettings {
  return applyProjectInput(null, {
    id: 'game',
    worker: { driver: 'process', command: ['node', 'worker.js'] },
    regions: { eu: { min: 0, max: 2 }, us: { min: 1, max: 3 } },
    ...input,
  });
}

describe('unrunnableReason', () => {
  test('a project with a worker, the region and any agent type can run', () => {
    assert.equal(unrunnableReason(project(), 'eu', null), null);
    assert.equal(unrunnableReason(project(), 'us', 'anything'), null, 'no agent types listed: any is fine');
    const agents = project({ agentTypes: ['stella', 'nova'] });
    assert.equal(unrunnableReason(agents, 'eu', 'nova'), null);
    assert.equal(unrunnableReason(agents, 'eu', null), null, 'no agent type asked for');
    assert.equal(unrunnableReason(project({ worker: { driver: 'external' } }), 'eu', null), null);
  });

  test('no worker configured', () => {
    assert.equal(
      unrunnableReason(project({ worker: null }), 'eu', null),
      'project "game" has no worker configured',
    );
  });

  test('an unknown region names it and lists the regions there are', () => {
    assert.equal(
      unrunnableReason(project(), 'ap', null),
      'project "game" has no region "ap" (regions: eu, us)',
    );
    const none = { ...project(), regions: {} };
    assert.equal(unrunnableReason(none, 'eu', null), 'project "game" has no region "eu" (regions: none)');
  });

  test('a region whose pool allows no workers', () => {
    const p = project({ regions: { eu: { min: 0, max: 0 }, us: { min: 0, max: 1 } } });
    assert.equal(
      unrunnableReason(p, 'eu', null),
      'project "game" allows no workers in region "eu" (max is 0)',
    );
    assert.equal(unrunnableReason(p, 'us', null), null);
  });

  test('an agent type the project does not list names it and lists the agent types', () => {
    const p = project({ agentTypes: ['stella', 'nova'] });
    assert.equal(
      unrunnableReason(p, 'eu', 'orion'),
      'project "game" has no agent type "orion" (agent types: stella, nova)',
    );
  });

  test('the worker is checked first, then the region, then the pool, then the agent type', () => {
    const p = project({ worker: null, agentTypes: ['a'], regions: { eu: { min: 0, max: 0 } } });
    assert.match(unrunnableReason(p, 'us', 'b')!, /no worker configured/);
    assert.match(unrunnableReason({ ...p, worker: { driver: 'external' } }, 'us', 'b')!, /no region "us"/);
    assert.match(unrunnableReason({ ...p, worker: { driver: 'external' } }, 'eu', 'b')!, /max is 0/);
  });
});

describe('which timers apply', () => {
  test('AFK applies to streaming projects that have it on, idle to agent projects', () => {
    assert.equal(usesAfk(project({ kind: 'stream', afkEnabled: true })), true);
    assert.equal(usesAfk(project({ kind: 'stream', afkEnabled: false })), false);
    assert.equal(usesAfk(project({ kind: 'agent', afkEnabled: true })), false);
    assert.equal(usesIdle(project({ kind: 'agent' })), true);
    assert.equal(usesIdle(project({ kind: 'stream' })), false);
  });

  test('streaming sessions wait for the viewer to go active; agent sessions do not', () => {
    assert.equal(needsViewerToStart(project({ kind: 'stream' })), true);
    assert.equal(needsViewerToStart(project({ kind: 'agent' })), false);
  });
});

describe('estimateWaitMs', () => {
  test('position × mean session duration ÷ pool size, rounded to the millisecond', () => {
    assert.equal(estimateWaitMs(1, 60_000, 1), 60_000);
    assert.equal(estimateWaitMs(3, 60_000, 2), 90_000);
    assert.equal(estimateWaitMs(4, 60_000, 2), 120_000);
    assert.equal(estimateWaitMs(1, 1_000, 3), 333);
    assert.equal(estimateWaitMs(2, 1_000, 3), 667);
    assert.equal(estimateWaitMs(0, 60_000, 2), 0);
  });

  test('grows with the position and shrinks with the pool', () => {
    const w = (position: number, pool: number) => estimateWaitMs(position, 45_000, pool)!;
    assert.ok(w(2, 2) > w(1, 2));
    assert.ok(w(2, 4) < w(2, 2));
  });

  test('unknown without session history or without any worker allowed', () => {
    assert.equal(estimateWaitMs(1, null, 2), null);
    assert.equal(estimateWaitMs(1, 60_000, 0), null);
    assert.equal(estimateWaitMs(1, 60_000, -1), null);
  });
});
