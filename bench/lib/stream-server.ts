// The streaming benchmark's server (stream-fixture.ts) seen from the benchmark: start it in a child process,
// ask it for figures, switch its frame tap on and read it, and stop it with every worker it started.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerStats } from './harness.ts';
import { IpcClient } from './ipc.ts';
import type { StreamFixtureConfig, TapFrame, TapRequest } from './stream-fixture.ts';

export class StreamServer {
  readonly child: ChildProcess;
  readonly ipc: IpcClient;
  readonly profileDir: string | null;
  url = '';

  private constructor(child: ChildProcess, profileDir: string | null) {
    this.child = child;
    this.ipc = new IpcClient(child);
    this.profileDir = profileDir;
  }

  static async start(config: StreamFixtureConfig, options: { cpuProf: boolean }): Promise<StreamServer> {
    const profileDir = options.cpuProf ? mkdtempSync(join(tmpdir(), 'usher-prof-')) : null;
    const flags = ['--disable-warning=ExperimentalWarning', '--expose-gc'];
    if (profileDir) flags.push('--cpu-prof', '--cpu-prof-dir', profileDir);
    const child = spawn(process.execPath, [...flags, join(import.meta.dirname, 'stream-fixture.ts')], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, BENCH_SERVER: JSON.stringify(config) },
    });
    const server = new StreamServer(child, profileDir);
    server.url = await new Promise<string>((resolve, reject) => {
      child.on('message', (m: { t?: string; url?: string; message?: string }) => {
        if (m.t === 'listening') resolve(m.url!);
        if (m.t === 'fatal') reject(new Error(`the server did not start: ${m.message}`));
      });
      child.once('exit', (code) => reject(new Error(`the server exited with ${code} before listening`)));
    });
    return server;
  }

  stats(options: { resetLag?: boolean; gc?: boolean } = {}): Promise<ServerStats> {
    return this.ipc.request({ t: 'stats', ...options });
  }

  pool(projectId: string, region = 'default'): Promise<Record<string, number>> {
    return this.ipc.request({ t: 'pool', projectId, region });
  }

  /** Polls until the pool has n ready workers (or throws after timeoutMs). */
  async readyWorkers(projectId: string, n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const counts = await this.pool(projectId);
      if ((counts.ready ?? 0) >= n) return;
      if (Date.now() > deadline)
        throw new Error(
          `only ${counts.ready ?? 0} of ${n} workers of "${projectId}" ready after ${timeoutMs} ms (${JSON.stringify(counts)}); BENCH_SERVER_LOG=info shows the server's log`,
        );
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Starts (or stops) stamping frames and requests; either way, what was stamped so far is dropped. */
  tap(on: boolean): Promise<void> {
    return this.ipc.request({ t: 'tap', on });
  }

  /** What the tap stamped since it was switched on or last read. */
  tapRead(): Promise<{ frames: TapFrame[]; requests: TapRequest[] }> {
    return this.ipc.request({ t: 'tapRead' });
  }

  /** Stops the server, which stops its workers; returns its CPU profile when it was profiled. */
  async close(): Promise<string | null> {
    const child = this.child;
    const exited =
      child.exitCode !== null || child.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((r) => child.once('exit', () => r()));
    await this.ipc.request({ t: 'close' }).catch(() => {});
    await exited;
    if (!this.profileDir) return null;
    const file = readdirSync(this.profileDir).find((f) => f.endsWith('.cpuprofile'));
    return file ? join(this.profileDir, file) : null;
  }
}
