// applyProjectInput: the defaults of SPEC §3/§5, partial updates, the agent seed's YAML timeouts in seconds,
// and which region is the default when the regions change.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Type from 'typebox';
import {
  applyProjectInput,
  DEFAULT_TIMEOUTS,
  ENDING_TIMEOUT_MS,
  MAX_TIMEOUT_MS,
  Project,
  ProjectInput,
} from './project.ts';
import { validator } from './validate.ts';

const settingsValidator = validator(Type.Omit(Project, ['createdAt', 'updatedAt']));
const inputValidator = validator(ProjectInput);

/** A project unlike the defaults in every field, to see which fields an update keeps. */
function custom() {
  return applyProjectInput(null, {
    id: 'game',
    name: 'The Game',
    kind: 'agent',
    enabled: false,
    public: true,
    worker: { driver: 'process', command: ['node', 'agent.js'], env: { A: '1' } },
    agentTypes: ['stella'],
    regions: { eu: { min: 0, max: 3 }, us: { min: 1, max: 4 } },
    defaultRegion: 'us',
    timeouts: {
      pendingMs: 1,
      connectingMs: 2,
      seatHoldMs: 3,
      afkWarningMs: 4,
      afkDisconnectMs: 5,
      idleMs: 6,
      pausedMs: 7,
      maxRuntimeMs: 8,
      reconnectWindowMs: 9,
      shutdownGraceMs: 10,
    },
    afkEnabled: false,
    maxQueueLength: 7,
    reuseWorkers: true,
    autoRestart: { enabled: true, maxRestarts: 9 },
  });
}

describe('applyProjectInput', () => {
  test('a new project gets the defaults of SPEC §3 and §5', () => {
    const p = applyProjectInput(null, { id: 'demo' });
    assert.deepEqual(p, {
      id: 'demo',
      name: 'demo',
      kind: 'stream',
      enabled: true,
      public: false,
      worker: null,
      agentTypes: [],
      regions: { default: { min: 1, max: 2 } },
      defaultRegion: 'default',
      timeouts: {
        pendingMs: 300_000,
        connectingMs: 120_000,
        seatHoldMs: 60_000,
        afkWarningMs: 120_000,
        afkDisconnectMs: 30_000,
        idleMs: 1_800_000,
        pausedMs: 900_000,
        maxRuntimeMs: 1_800_000,
        reconnectWindowMs: 60_000,
        shutdownGraceMs: 10_000,
      },
      afkEnabled: true,
      maxQueueLength: 1000,
      reuseWorkers: false, // recycled after each session unless the project says otherwise
      rooms: 'builtin', // Usher's own rooms unless the project asks for LiveKit
      autoRestart: { enabled: false, maxRestarts: 3 }, // off by default
    });
    const checked = settingsValidator.parse(p);
    assert.ok(checked.ok, checked.ok ? '' : checked.message);
  });

  test('a new project uses its given name, and given timeouts over the defaults one by one', () => {
    const p = applyProjectInput(null, { id: 'x', name: 'Pretty', timeouts: { afkWarningMs: 5_000 } });
    assert.equal(p.name, 'Pretty');
    assert.deepEqual(p.timeouts, { ...DEFAULT_TIMEOUTS, afkWarningMs: 5_000 });
  });

  test('creating a project does not change the defaults', () => {
    const before = structuredClone(DEFAULT_TIMEOUTS);
    const p = applyProjectInput(null, { id: 'a', timeouts: { pendingMs: 1 } });
    p.timeouts.connectingMs = 2;
    assert.deepEqual(DEFAULT_TIMEOUTS, before);
    assert.equal(applyProjectInput(null, { id: 'b' }).timeouts.pendingMs, 300_000);
  });

  test('an empty update keeps every field', () => {
    const base = custom();
    assert.deepEqual(applyProjectInput(base, {}), base);
  });

  test('a partial update changes only what it names', () => {
    const base = custom();
    const cases: { input: ProjectInput; changed: Partial<typeof base> }[] = [
      { input: { name: 'Renamed' }, changed: { name: 'Renamed' } },
      { input: { enabled: true }, changed: { enabled: true } },
      { input: { public: false }, changed: { public: false } },
      { input: { kind: 'stream' }, changed: { kind: 'stream' } },
      { input: { worker: null }, changed: { worker: null } },
      { input: { worker: { driver: 'external' } }, changed: { worker: { driver: 'external' } } },
      { input: { agentTypes: [] }, changed: { agentTypes: [] } },
      { input: { afkEnabled: true }, changed: { afkEnabled: true } },
      { input: { maxQueueLength: 0 }, changed: { maxQueueLength: 0 } },
      { input: { reuseWorkers: false }, changed: { reuseWorkers: false } },
      { input: { defaultRegion: 'eu' }, changed: { defaultRegion: 'eu' } },
      {
        input: { timeouts: { pausedMs: 70 } },
        changed: { timeouts: { ...base.timeouts, pausedMs: 70 } },
      },
      {
        input: { autoRestart: { enabled: false } },
        changed: { autoRestart: { enabled: false, maxRestarts: 9 } },
      },
      {
        input: { autoRestart: { maxRestarts: 0 } },
        changed: { autoRestart: { enabled: true, maxRestarts: 0 } },
      },
    ];
    for (const { input, changed } of cases) {
      assert.deepEqual(applyProjectInput(base, input), { ...base, ...changed }, JSON.stringify(input));
    }
  });

  test('an update cannot change the id', () => {
    assert.equal(applyProjectInput(custom(), { id: 'other' }).id, 'game');
  });

  test('falsy values in an update are applied, not mistaken for "not given"', () => {
    const base = applyProjectInput(null, { id: 'z', maxQueueLength: 5, timeouts: { maxRuntimeMs: 60_000 } });
    const p = applyProjectInput(base, { maxQueueLength: 0, enabled: false, timeouts: { maxRuntimeMs: 0 } });
    assert.equal(p.maxQueueLength, 0);
    assert.equal(p.enabled, false);
    assert.equal(p.timeouts.maxRuntimeMs, 0);
  });

  test("the agent seed's `session.timeouts` in seconds become milliseconds", () => {
    const input = {
      id: 'agent',
      session: { timeouts: { pending: 300, connecting: 120, idle: 1800, paused: 900 } },
    };
    assert.ok(inputValidator.parse(input).ok, 'the seed block is valid input verbatim');
    const base = custom();
    const p = applyProjectInput(base, input);
    assert.deepEqual(p.timeouts, {
      ...base.timeouts,
      pendingMs: 300_000,
      connectingMs: 120_000,
      idleMs: 1_800_000,
      pausedMs: 900_000,
    });
  });

  test('seed timeouts given in part change only those, and fractions of a second are kept', () => {
    const p = applyProjectInput(null, { id: 'a', session: { timeouts: { connecting: 1.5 } } });
    assert.deepEqual(p.timeouts, { ...DEFAULT_TIMEOUTS, connectingMs: 1_500 });
    assert.equal(applyProjectInput(null, { id: 'c', session: {} }).timeouts.pendingMs, 300_000);
  });

  test('the seed shape rejects unknown keys and non-positive seconds', () => {
    for (const bad of [
      { session: { timeouts: { pendnig: 300 } } },
      { session: { timeouts: { pending: 0 } } },
      { session: { timeouts: { idle: -1 } } },
      { session: { timeout: {} } },
    ]) {
      assert.equal(inputValidator.parse(bad).ok, false, JSON.stringify(bad));
    }
  });

  test('every timeout is at most 30 days, and shutdownGraceMs at most the ending limit, in both shapes', () => {
    assert.equal(MAX_TIMEOUT_MS, 2_592_000_000);
    const keys = Object.keys(DEFAULT_TIMEOUTS) as (keyof typeof DEFAULT_TIMEOUTS)[];
    for (const key of keys) {
      const max: number = key === 'shutdownGraceMs' ? ENDING_TIMEOUT_MS : MAX_TIMEOUT_MS;
      const at = inputValidator.parse({ timeouts: { [key]: max } });
      assert.ok(at.ok, `${key}: ${max} is allowed`);
      assert.ok(settingsValidator.parse(applyProjectInput(null, { id: 'x', timeouts: { [key]: max } })).ok);
      for (const over of [max + 1, Number.MAX_SAFE_INTEGER, 1e300]) {
        const r = inputValidator.parse({ timeouts: { [key]: over } });
        assert.equal(r.ok, false, `${key}: ${over}`);
        assert.match(r.ok ? '' : r.message, new RegExp(`${key}.*${max}`));
      }
      // stored settings are held to the same bounds
      const stored = {
        ...applyProjectInput(null, { id: 'x' }),
        timeouts: { ...DEFAULT_TIMEOUTS, [key]: max + 1 },
      };
      assert.equal(settingsValidator.parse(stored).ok, false, `settings with ${key} ${max + 1}`);
    }
    for (const key of ['pending', 'connecting', 'idle', 'paused']) {
      assert.ok(inputValidator.parse({ session: { timeouts: { [key]: 2_592_000 } } }).ok, `${key}: 30 days`);
      for (const over of [2_592_000.001, 1e303]) {
        const r = inputValidator.parse({ session: { timeouts: { [key]: over } } });
        assert.equal(r.ok, false, `${key}: ${over}`);
        assert.match(r.ok ? '' : r.message, new RegExp(`${key}.*2592000`));
      }
    }
  });

  test('input rejects unknown keys in timeouts and autoRestart, so a typo is never silently ignored', () => {
    for (const bad of [
      { timeouts: { pendingMS: 1_000 } },
      { autoRestart: { enable: true } },
      { colour: 'blue' },
    ]) {
      const r = inputValidator.parse(bad);
      assert.equal(r.ok, false, JSON.stringify(bad));
      assert.match(r.ok ? '' : r.message, /unknown field "(pendingMS|enable|colour)"/);
    }
    assert.ok(inputValidator.parse({ timeouts: { pendingMs: 1_000 } }).ok);
  });

  test('defaultRegion follows regions when the old default is gone', () => {
    const base = applyProjectInput(null, { id: 'r' });
    assert.equal(base.defaultRegion, 'default');
    const moved = applyProjectInput(base, { regions: { eu: { min: 0, max: 1 }, us: { min: 0, max: 1 } } });
    assert.equal(moved.defaultRegion, 'eu');
    const settings = settingsValidator.parse(moved);
    assert.ok(settings.ok);
    assert.ok(moved.regions[moved.defaultRegion], 'the default is one of the regions');
  });

  test('defaultRegion stays when it is still among the new regions', () => {
    const base = custom(); // default us
    const p = applyProjectInput(base, { regions: { ap: { min: 0, max: 1 }, us: { min: 0, max: 1 } } });
    assert.equal(p.defaultRegion, 'us');
  });

  test('an explicit defaultRegion wins over the automatic choice', () => {
    const base = applyProjectInput(null, { id: 'r' });
    const p = applyProjectInput(base, {
      regions: { eu: { min: 0, max: 1 }, us: { min: 0, max: 1 } },
      defaultRegion: 'us',
    });
    assert.equal(p.defaultRegion, 'us');
    const created = applyProjectInput(null, { id: 'n', regions: { ap: { min: 0, max: 1 } } });
    assert.equal(created.defaultRegion, 'ap');
  });
});
