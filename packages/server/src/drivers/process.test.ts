// Tests of the process driver against real child processes: exits, stop and kill, process groups, restarts.

import assert from 'node:assert/strict';
import { existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isGone } from '../../test/fixtures/processes.ts';
import type { WorkerExit } from './driver.ts';
import { inheritedEnv, ProcessDriver, type WorkerStream } from './process.ts';

/** A driver wired to record exits and output, closed when the test ends. */
function harness(t: { after: (fn: () => Promise<void>) => void }, closeGraceMs = 200) {
  const exits: WorkerExit[] = [];
  const lines: Array<{ workerId: string; stream: WorkerStream; line: string }> = [];
  const lineWaiters: Array<{
    match: (l: (typeof lines)[number]) => boolean;
    resolve: (line: string) => void;
  }> = [];
  const exitWaiters = new Map<string, (exit: WorkerExit) => void>();
  const driver = new ProcessDriver({
    closeGraceMs,
    logger: (workerId, stream, line) => {
      const entry = { workerId, stream, line };
      lines.push(entry);
      for (const w of lineWaiters.filter((w) => w.match(entry))) {
        lineWaiters.splice(lineWaiters.indexOf(w), 1);
        w.resolve(line);
      }
    },
  });
  driver.onExit((exit) => {
    exits.push(exit);
    exitWaiters.get(exit.workerId)?.(exit);
  });
  const grandchildren: number[] = [];
  t.after(async () => {
    await driver.close();
    // when a test fails, a surviving grandchild would hold its stdout pipe open and hang the run
    for (const pid of grandchildren) if (!isGone(pid)) process.kill(pid, 'SIGKILL');
  });
  const exitOf = (workerId: string) => {
    const seen = exits.find((e) => e.workerId === workerId);
    if (seen) return Promise.resolve(seen);
    return new Promise<WorkerExit>((resolve) => exitWaiters.set(workerId, resolve));
  };
  /** Resolves with the first line of a worker that starts with prefix. */
  const lineOf = (workerId: string, prefix: string) => {
    const match = (l: (typeof lines)[number]) => l.workerId === workerId && l.line.startsWith(prefix);
    const seen = lines.find(match);
    if (seen) return Promise.resolve(seen.line);
    return new Promise<string>((resolve) => lineWaiters.push({ match, resolve }));
  };
  const start = (workerId: string, script: string, spec: Record<string, unknown> = {}, env = {}) =>
    driver.start({
      workerId,
      projectId: 'p1',
      region: 'local',
      spec: { driver: 'process', command: [process.execPath, '-e', script], ...spec },
      env,
    });
  /** The pid a worker started with withGrandchild() reports for its grandchild. */
  const grandchildOf = async (workerId: string) => {
    const pid = Number((await lineOf(workerId, 'grandchild ')).split(' ')[1]);
    grandchildren.push(pid);
    return pid;
  };
  return { driver, exits, lines, exitOf, lineOf, start, grandchildOf };
}

/** Waits, boundedly, for a process that was just killed to disappear (signal delivery is not instantaneous). */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 300; i++) {
    if (isGone(pid)) return true;
    await sleep(10);
  }
  return isGone(pid);
}

/** Makes sure the tick in which an exit was delivered is over, so that a second delivery would be seen. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

const LIVE = 'console.log("ready"); setInterval(() => {}, 1000);';
const IGNORE_TERM =
  'process.on("SIGTERM", () => console.log("ignored")); console.log("ready"); setInterval(() => {}, 1000);';
/** The leader starts a grandchild that ignores SIGTERM and shares its stdout, prints its pid, then runs `then`. */
const withGrandchild = (then = 'setInterval(() => {}, 1000);') => `
  const { spawn } = require('node:child_process');
  const gc = spawn(process.execPath, ['-e', ${JSON.stringify(IGNORE_TERM)}], { stdio: ['ignore', 'inherit', 'inherit'] });
  console.log('grandchild ' + gc.pid);
  ${then}
`;

test("a worker does not inherit the server's own settings (USHER_*), only the rest of its environment", () => {
  assert.deepEqual(
    inheritedEnv({ PATH: '/bin', OPENAI_API_KEY: 'sk', USHER_SECRET: 's3cr3t', USHER_ADMIN_KEYS: 'k' }),
    { PATH: '/bin', OPENAI_API_KEY: 'sk' },
  );
});

test('runs the command with argv, cwd and env, logs its lines and reports its exit code', async (t) => {
  const h = harness(t);
  const cwd = realpathSync(tmpdir());
  const script =
    'console.log(process.argv[1] + " " + process.cwd()); console.log(process.env.A + " " + process.env.B);' +
    'console.error("on stderr"); process.stdout.write("partial"); process.exitCode = 7;';
  const { handle } = await h.driver.start({
    workerId: 'w1',
    projectId: 'p1',
    region: 'local',
    spec: {
      driver: 'process',
      command: [process.execPath, '-e', script, 'arg1'],
      cwd,
      env: { A: 'a', B: 'spec' },
    },
    env: { B: 'launch' },
  });
  assert.equal(typeof JSON.parse(handle).pid, 'number');
  const exit = await h.exitOf('w1');
  assert.deepEqual(exit, { workerId: 'w1', code: 7, signal: null, expected: false });
  await h.lineOf('w1', 'partial');
  assert.deepEqual(
    h.lines.filter((l) => l.stream === 'stdout').map((l) => l.line),
    [`arg1 ${cwd}`, 'a launch', 'partial'],
  );
  assert.deepEqual(
    h.lines.filter((l) => l.stream === 'stderr').map((l) => l.line),
    ['on stderr'],
  );
  await settle();
  assert.equal(h.exits.length, 1);
  assert.equal(await h.driver.isAlive('w1', handle), false);
});

test('a worker that dies on its own is an unexpected exit', async (t) => {
  const h = harness(t);
  await h.start('w1', 'process.kill(process.pid, "SIGKILL")');
  assert.deepEqual(await h.exitOf('w1'), { workerId: 'w1', code: null, signal: 'SIGKILL', expected: false });
  await h.start('w2', 'throw new Error("boom")');
  const exit = await h.exitOf('w2');
  assert.equal(exit.code, 1);
  assert.equal(exit.expected, false);
});

test('stop sends SIGTERM and resolves once a worker that honours it has exited', async (t) => {
  const h = harness(t);
  const script = 'process.on("SIGTERM", () => { console.log("bye"); process.exit(0); }); ' + LIVE;
  const { handle } = await h.start('w1', script);
  await h.lineOf('w1', 'ready');
  assert.equal(await h.driver.isAlive('w1', handle), true);
  await h.driver.stop('w1', 60_000);
  // the exit was delivered before stop resolved
  assert.deepEqual(h.exits, [{ workerId: 'w1', code: 0, signal: null, expected: true }]);
  assert.equal(await h.lineOf('w1', 'bye'), 'bye');
  assert.equal(await h.driver.isAlive('w1', handle), false);
  await h.driver.stop('w1', 0); // stopping a worker that is gone is fine
  await settle();
  assert.equal(h.exits.length, 1);
});

test('stop sends SIGKILL after the grace period to a worker that ignores SIGTERM', async (t) => {
  const h = harness(t);
  await h.start('w1', IGNORE_TERM);
  await h.lineOf('w1', 'ready');
  await h.driver.stop('w1', 200);
  assert.deepEqual(h.exits, [{ workerId: 'w1', code: null, signal: 'SIGKILL', expected: true }]);
  assert.equal(await h.lineOf('w1', 'ignored'), 'ignored'); // SIGTERM did arrive first
});

test('stop takes down the whole process group, grandchildren included', async (t) => {
  const h = harness(t);
  const { handle } = await h.start('w1', withGrandchild());
  const grandchild = await h.grandchildOf('w1');
  await h.lineOf('w1', 'ready'); // the grandchild now ignores SIGTERM
  assert.equal(isGone(grandchild), false);
  await h.driver.stop('w1', 60_000);
  assert.deepEqual(h.exits, [{ workerId: 'w1', code: null, signal: 'SIGTERM', expected: true }]);
  assert.equal(await gone(grandchild), true);
  assert.equal(await gone(JSON.parse(handle).pid), true);
});

test('a worker that exits on its own leaves no descendants behind', async (t) => {
  const h = harness(t);
  await h.start('w1', withGrandchild('setTimeout(() => process.exit(3), 50);'));
  const grandchild = await h.grandchildOf('w1');
  const exit = await h.exitOf('w1');
  assert.equal(exit.code, 3);
  assert.equal(await gone(grandchild), true);
});

test('a command that cannot be found is reported as an exit with an error', async (t) => {
  const h = harness(t);
  const { handle } = await h.driver.start({
    workerId: 'w1',
    projectId: 'p1',
    region: 'local',
    spec: { driver: 'process', command: ['/nonexistent/usher-no-such-command', '--flag'] },
    env: {},
  });
  const exit = await h.exitOf('w1');
  assert.equal(exit.code, null);
  assert.equal(exit.signal, null);
  assert.equal(exit.expected, false);
  assert.match(exit.error ?? '', /not found: \/nonexistent\/usher-no-such-command/);
  assert.equal(await h.driver.isAlive('w1', handle), false);
  await h.driver.reap('w1', handle);
  await settle();
  assert.equal(h.exits.length, 1);

  await h.start('w2', LIVE, { cwd: '/nonexistent/usher-no-such-dir' });
  assert.match((await h.exitOf('w2')).error ?? '', /cwd not found/);
});

test('a malformed spec is rejected by start', async (t) => {
  const h = harness(t);
  const launch = { workerId: 'w1', projectId: 'p1', region: 'local', env: {} };
  await assert.rejects(h.driver.start({ ...launch, spec: { command: [] } }), /worker\.command/);
  await assert.rejects(
    h.driver.start({ ...launch, spec: { command: ['x'], env: { A: 1 } } }),
    /worker\.env\.A/,
  );
});

test('a new driver instance sees a worker left by another one and reaps it', async (t) => {
  const first = harness(t);
  const { handle } = await first.start('w1', withGrandchild());
  const grandchild = await first.grandchildOf('w1');
  await first.lineOf('w1', 'ready');

  const second = new ProcessDriver();
  t.after(() => second.close());
  assert.equal(await second.isAlive('w1', handle), true);
  await second.reap('w1', handle);
  assert.equal(await second.isAlive('w1', handle), false);
  // the first instance (the "earlier server") did not ask for it: an unexpected exit
  assert.deepEqual(await first.exitOf('w1'), {
    workerId: 'w1',
    code: null,
    signal: 'SIGKILL',
    expected: false,
  });
  assert.equal(await gone(grandchild), true);
  await second.reap('w1', handle); // reaping what is gone is fine
});

test('a handle whose pid now belongs to another process is not alive and is not reaped', {
  skip: !existsSync('/proc/self/stat') && 'needs /proc',
}, async (t) => {
  const h = harness(t);
  const { handle } = await h.start('w1', LIVE);
  await h.lineOf('w1', 'ready');
  const { pid, startTime } = JSON.parse(handle) as { pid: number; startTime: number };
  const reused = JSON.stringify({ pid, startTime: startTime + 1 });
  const other = new ProcessDriver();
  t.after(() => other.close());
  assert.equal(await other.isAlive('w1', reused), false);
  await other.reap('w1', reused);
  assert.equal(await other.isAlive('w1', handle), true);
  for (const bad of ['garbage', '{"pid":"12","startTime":null}', '{"startTime":1}']) {
    assert.equal(await other.isAlive('w1', bad), false);
    await other.reap('w1', bad);
  }
  assert.equal(isGone(pid), false);
  assert.deepEqual(h.exits, []);
});

test('close stops every worker, the stubborn ones and their children too, and leaves nothing behind', async (t) => {
  const h = harness(t, 200);
  const handles = [
    (await h.start('plain', LIVE)).handle,
    (await h.start('stubborn', IGNORE_TERM)).handle,
    (await h.start('family', withGrandchild())).handle,
  ];
  await Promise.all([h.lineOf('plain', 'ready'), h.lineOf('stubborn', 'ready'), h.lineOf('family', 'ready')]);
  const grandchild = await h.grandchildOf('family');
  await h.driver.close();
  assert.deepEqual(h.exits.map((e) => [e.workerId, e.signal, e.expected]).sort(), [
    ['family', 'SIGTERM', true],
    ['plain', 'SIGTERM', true],
    ['stubborn', 'SIGKILL', true],
  ]);
  for (const pid of [...handles.map((handle) => JSON.parse(handle).pid as number), grandchild]) {
    assert.equal(await gone(pid), true, `pid ${pid} is still running`);
  }
  await assert.rejects(h.start('late', LIVE), /closed/);
});
