// The observed driver is the driver the engine talks to: every call reaches the driver with all its arguments.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { WorkerDriver } from '../drivers/driver.ts';
import { observedDriver } from './drivers.ts';

test('stop, isAlive and reap reach the driver with every argument (a stop by another server needs the handle)', async () => {
  const calls: unknown[][] = [];
  const driver = {
    name: 'kubernetes',
    closeStopsWorkers: false,
    start: async () => ({ handle: 'h' }),
    stop: async (...args: unknown[]) => void calls.push(['stop', ...args]),
    isAlive: async (...args: unknown[]) => {
      calls.push(['isAlive', ...args]);
      return true;
    },
    reap: async (...args: unknown[]) => void calls.push(['reap', ...args]),
    onExit: () => {},
    close: async () => {},
  } as unknown as WorkerDriver;
  const observed = observedDriver(driver, { starting() {}, failed() {} });
  await observed.stop('w_1', 2_000, '{"namespace":"gpu","pod":"usher-w-1"}');
  await observed.isAlive('w_1', 'h1');
  await observed.reap('w_1', 'h2');
  assert.deepEqual(calls, [
    ['stop', 'w_1', 2_000, '{"namespace":"gpu","pod":"usher-w-1"}'],
    ['isAlive', 'w_1', 'h1'],
    ['reap', 'w_1', 'h2'],
  ]);
});
