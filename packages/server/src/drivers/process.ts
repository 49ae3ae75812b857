// The embedded default driver: runs a project's worker command as a local child process in its own process group.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  announceExit,
  handleFields,
  type WorkerDriver,
  type WorkerExit,
  type WorkerLaunch,
} from './driver.ts';

export type WorkerStream = 'stdout' | 'stderr';
/** Receives each line a worker writes; it must not throw (what it throws is dropped). */
export type WorkerLogger = (workerId: string, stream: WorkerStream, line: string) => void;

export interface ProcessDriverOptions {
  /** where worker output goes, line by line; default: dropped */
  logger?: WorkerLogger;
  /** how long close() waits after SIGTERM before it sends SIGKILL; default 2000 */
  closeGraceMs?: number;
}

/** What start() returns as the handle (as JSON), so that a later server run can find the process again. */
export interface ProcessHandle {
  /** pid of the group leader, which is also the process group id; null when the spawn failed */
  pid: number | null;
  /** the kernel's start time of that pid (/proc/<pid>/stat field 22), to tell a reused pid apart; null without /proc */
  startTime: number | null;
}

interface Running {
  readonly workerId: string;
  readonly child: ChildProcess;
  readonly pid: number | null;
  /** true once stop/reap/close asked for the exit */
  expected: boolean;
  /** true once the exit is known (it may still be on its way to the listeners) */
  done: boolean;
  readonly exited: PromiseWithResolvers<void>;
  readonly timers: Set<NodeJS.Timeout>;
}

/** A live worker left by an earlier server run, found by isAlive(): not our child, so watched through /proc. */
interface Adopted {
  readonly handle: { pid: number; startTime: number | null };
  /** true once stop/close asked for the exit */
  expected: boolean;
  readonly poll: NodeJS.Timeout;
  readonly timers: Set<NodeJS.Timeout>;
  readonly exited: PromiseWithResolvers<void>;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const REAP_WAIT_STEPS = 200;
const REAP_WAIT_STEP_MS = 10;
/** how often an adopted worker is looked for, to notice its exit */
const ADOPTED_POLL_MS = 100;

export class ProcessDriver implements WorkerDriver {
  readonly name = 'process' as const;
  readonly closeStopsWorkers = true;
  readonly #logger: WorkerLogger;
  readonly #closeGraceMs: number;
  readonly #workers = new Map<string, Running>();
  readonly #adopted = new Map<string, Adopted>();
  readonly #listeners: Array<(exit: WorkerExit) => void> = [];
  #closed = false;

  constructor(options: ProcessDriverOptions = {}) {
    this.#logger = options.logger ?? (() => {});
    this.#closeGraceMs = options.closeGraceMs ?? 2000;
  }

  async start(launch: WorkerLaunch): Promise<{ handle: string }> {
    const { workerId } = launch;
    if (this.#closed) throw new Error(`ProcessDriver is closed; cannot start worker ${workerId}`);
    if (this.#workers.has(workerId)) throw new Error(`worker ${workerId} is already running`);
    const spec = readSpec(launch.spec);
    const [file, ...args] = spec.command.map((arg) => expandLaunchVars(arg, launch.env)) as [
      string,
      ...string[],
    ];
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        cwd: spec.cwd,
        env: { ...inheritedEnv(process.env), ...spec.env, ...launch.env },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
    } catch (err) {
      // spawn() throws only for errors it does not consider run-time ones; report them the same way
      const exit: WorkerExit = { workerId, code: null, signal: null, expected: false };
      exit.error = describeSpawnError(file, spec.cwd, err);
      setImmediate(() => this.#emit(exit));
      return { handle: encodeHandle({ pid: null, startTime: null }) };
    }
    const pid = child.pid !== undefined && child.pid > 1 ? child.pid : null;
    const worker: Running = {
      workerId,
      child,
      pid,
      expected: false,
      done: false,
      exited: Promise.withResolvers<void>(),
      timers: new Set(),
    };
    this.#workers.set(workerId, worker);
    child.on('exit', (code, signal) => this.#finish(worker, code, signal, undefined));
    child.on('error', (err) => {
      // after a successful spawn 'error' only concerns kill()/IPC, which this driver does not use
      if (worker.pid === null) this.#finish(worker, null, null, describeSpawnError(file, spec.cwd, err));
    });
    if (child.stdout) this.#pipeLines(workerId, 'stdout', child.stdout);
    if (child.stderr) this.#pipeLines(workerId, 'stderr', child.stderr);
    const startTime = pid === null ? null : (readProcStat(pid)?.startTime ?? null);
    return { handle: encodeHandle({ pid, startTime }) };
  }

  async stop(workerId: string, graceMs: number): Promise<void> {
    const worker = this.#workers.get(workerId);
    if (!worker) return this.#stopAdopted(workerId, graceMs);
    if (!worker.done && worker.pid !== null) {
      const pid = worker.pid;
      worker.expected = true;
      signalGroup(pid, 'SIGTERM');
      if (Number.isFinite(graceMs)) {
        const delay = Math.min(Math.max(0, graceMs), MAX_TIMER_MS);
        worker.timers.add(setTimeout(() => trySignalGroup(pid, 'SIGKILL'), delay));
      }
    }
    await worker.exited.promise;
  }

  /**
   * Whether the worker still runs. A live worker left by an earlier server run is adopted: from then on
   * stop() and close() stop it, and its exit is reported like that of a worker this driver started.
   */
  async isAlive(workerId: string, handle: string): Promise<boolean> {
    const parsed = decodeHandle(handle);
    if (parsed === null) return false;
    const own = this.#workers.get(workerId);
    if (own && own.pid === parsed.pid) return !own.done;
    const alive = leftBehind(parsed);
    if (alive) this.#adopt(workerId, parsed);
    return alive;
  }

  async reap(workerId: string, handle: string): Promise<void> {
    const parsed = decodeHandle(handle);
    if (parsed === null) return;
    const own = this.#workers.get(workerId);
    if (own && own.pid === parsed.pid) {
      if (!own.done) {
        own.expected = true;
        signalGroup(parsed.pid, 'SIGKILL');
      }
      await own.exited.promise;
      return;
    }
    // reaping reports no exit: the caller handles the worker as gone
    this.#forgetAdopted(workerId);
    if (!leftBehind(parsed)) return;
    signalGroup(parsed.pid, 'SIGKILL');
    // not our child, so there is no exit event to wait for: look until the group is gone (SIGKILL is quick)
    for (let i = 0; i < REAP_WAIT_STEPS && leftBehind(parsed); i++) await sleep(REAP_WAIT_STEP_MS);
  }

  onExit(listener: (exit: WorkerExit) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const ids = [...this.#workers.keys(), ...this.#adopted.keys()];
    await Promise.all(ids.map((id) => this.stop(id, this.#closeGraceMs)));
  }

  #adopt(workerId: string, handle: { pid: number; startTime: number | null }): void {
    if (this.#closed || this.#workers.has(workerId)) return;
    const known = this.#adopted.get(workerId);
    if (known && known.handle.pid === handle.pid) return;
    this.#forgetAdopted(workerId);
    const poll = setInterval(() => {
      if (leftBehind(handle)) return;
      this.#forgetAdopted(workerId, { workerId, code: null, signal: null, expected: adopted.expected });
    }, ADOPTED_POLL_MS); // kept referenced, as a child process would be, until the worker is gone
    const adopted: Adopted = {
      handle,
      expected: false,
      poll,
      timers: new Set(),
      exited: Promise.withResolvers<void>(),
    };
    this.#adopted.set(workerId, adopted);
  }

  /** SIGTERM to an adopted worker's group, SIGKILL after graceMs; resolves once the group is gone. */
  async #stopAdopted(workerId: string, graceMs: number): Promise<void> {
    const adopted = this.#adopted.get(workerId);
    if (!adopted) return;
    const pid = adopted.handle.pid;
    adopted.expected = true;
    trySignalGroup(pid, 'SIGTERM');
    if (Number.isFinite(graceMs)) {
      const delay = Math.min(Math.max(0, graceMs), MAX_TIMER_MS);
      adopted.timers.add(setTimeout(() => trySignalGroup(pid, 'SIGKILL'), delay));
    }
    await adopted.exited.promise;
  }

  /** Stops watching an adopted worker; reports its exit, if given, before stop() resolves. */
  #forgetAdopted(workerId: string, exit?: WorkerExit): void {
    const adopted = this.#adopted.get(workerId);
    if (!adopted) return;
    this.#adopted.delete(workerId);
    clearInterval(adopted.poll);
    for (const timer of adopted.timers) clearTimeout(timer);
    if (exit) this.#emit(exit);
    adopted.exited.resolve();
  }

  #finish(
    worker: Running,
    code: number | null,
    signal: NodeJS.Signals | null,
    error: string | undefined,
  ): void {
    if (worker.done) return;
    worker.done = true;
    for (const timer of worker.timers) clearTimeout(timer);
    worker.timers.clear();
    // the worker is its process group: whatever it left running (e.g. a grandchild ignoring SIGTERM) goes too
    if (worker.pid !== null) trySignalGroup(worker.pid, 'SIGKILL');
    const exit: WorkerExit = { workerId: worker.workerId, code, signal, expected: worker.expected };
    if (error !== undefined) exit.error = error;
    const deliver = () => {
      if (this.#workers.get(worker.workerId) === worker) this.#workers.delete(worker.workerId);
      this.#emit(exit);
      worker.exited.resolve();
    };
    // a failed spawn is known before start() has resolved; report it after, as callers expect
    if (error !== undefined) setImmediate(deliver);
    else deliver();
  }

  #emit(exit: WorkerExit): void {
    announceExit(this.#listeners, exit);
  }

  #pipeLines(workerId: string, stream: WorkerStream, input: NodeJS.ReadableStream): void {
    const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
    lines.on('line', (line) => {
      try {
        this.#logger(workerId, stream, line);
      } catch {
        // a logger must not take the driver down
      }
    });
  }
}

interface ProcessSpec {
  command: [string, ...string[]];
  cwd: string | undefined;
  env: Record<string, string>;
}

function readSpec(spec: Record<string, unknown>): ProcessSpec {
  const { command, cwd, env } = spec;
  if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string')) {
    throw new TypeError(
      'worker.command must be a non-empty array of strings (the argv of the worker command)',
    );
  }
  if (cwd !== undefined && typeof cwd !== 'string') throw new TypeError('worker.cwd must be a string');
  if (env !== undefined && (typeof env !== 'object' || env === null || Array.isArray(env))) {
    throw new TypeError('worker.env must be an object of strings');
  }
  const entries = Object.entries(env ?? {});
  const bad = entries.find(([, value]) => typeof value !== 'string');
  if (bad) throw new TypeError(`worker.env.${bad[0]} must be a string`);
  return {
    command: command as [string, ...string[]],
    cwd,
    env: Object.fromEntries(entries) as Record<string, string>,
  };
}

/**
 * `${USHER_…}` in a command argument becomes that variable of the launch, so that a program that takes its
 * settings as flags gets them: `-PixelStreamingSignallingURL=${USHER_SIGNALLING_URL}` for a UE app.
 */
export function expandLaunchVars(arg: string, env: Record<string, string>): string {
  return arg.replace(/\$\{(USHER_[A-Z0-9_]+)\}/g, (whole, name: string) => env[name] ?? whole);
}

function describeSpawnError(file: string, cwd: string | undefined, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' && cwd !== undefined && !existsSync(cwd)) {
    return `worker cwd not found: ${cwd} (worker.cwd)`;
  }
  if (code === 'ENOENT') return `worker command not found: ${file} (worker.command)`;
  if (code === 'EACCES') return `worker command is not executable: ${file} (worker.command)`;
  return `cannot start worker command ${file}: ${err instanceof Error ? err.message : String(err)}`;
}

function encodeHandle(handle: ProcessHandle): string {
  return JSON.stringify(handle);
}

/** Parses a stored handle; null when it names no process (a failed spawn, or not a handle of this driver). */
function decodeHandle(handle: string): { pid: number; startTime: number | null } | null {
  const fields = handleFields(handle);
  if (!fields) return null;
  const { pid, startTime } = fields;
  // pid 0 or 1 would turn a group kill into "my own group" or "everything": never accept them
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 1) return null;
  if (startTime !== null && (typeof startTime !== 'number' || !Number.isSafeInteger(startTime))) return null;
  return { pid, startTime };
}

/** Whether anything of a worker started by an earlier server run (its leader or the rest of its group) still runs. */
function leftBehind(handle: { pid: number; startTime: number | null }): boolean {
  const leader = readProcStat(handle.pid);
  if (leader === undefined) return exists(handle.pid) || exists(-handle.pid); // no /proc: pids only
  if (leader !== null) {
    // another process now has this pid: the number was free, so our whole group is gone
    if (handle.startTime !== null && leader.startTime !== handle.startTime) return false;
    if (leader.state !== 'Z') return true;
  }
  return groupHasLiveMembers(handle.pid);
}

interface ProcStat {
  state: string;
  pgrp: number;
  startTime: number;
}

let procAvailable: boolean | undefined;

/** /proc/<pid>/stat of a process; null when there is no such process, undefined when there is no /proc. */
function readProcStat(pid: number): ProcStat | null | undefined {
  procAvailable ??= existsSync('/proc/self/stat');
  if (!procAvailable) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so split after the last ')'
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const pgrp = Number(fields[2]);
  const startTime = Number(fields[19]);
  if (state === undefined || !Number.isSafeInteger(pgrp) || !Number.isSafeInteger(startTime)) return null;
  return { state, pgrp, startTime };
}

function groupHasLiveMembers(pgid: number): boolean {
  if (!procAvailable) return exists(-pgid);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat && stat.pgrp === pgid && stat.state !== 'Z') return true;
  }
  return false;
}

/** process.kill(target, 0): whether a process (target > 0) or a process group (target < 0) exists. */
function exists(target: number): boolean {
  try {
    process.kill(target, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Signals a whole process group; a group that is already gone is fine. */
function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** signalGroup for timers and exit handlers, where there is nobody to throw to. */
function trySignalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    signalGroup(pgid, signal);
  } catch {
    // EPERM: the group is no longer ours to signal
  }
}

/**
 * The server's environment as a worker gets it: without Usher's own settings (`USHER_*`: the token secret, the
 * admin keys, the database URL, the LiveKit and webhook secrets), which would let a worker sign tokens for any
 * session. Everything else (PATH, an agent's API keys…) is passed on.
 */
export function inheritedEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) if (!key.startsWith('USHER_')) out[key] = value;
  return out;
}
