// The SDKs as a project outside this repository gets them: the tarballs of `npm run pack`, installed with npm
// into a folder of their own, run by Node as JavaScript and checked by tsc through their declarations.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { lastingExternalProject, useTestServer } from '@usher/testing';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../../..');

describe('the SDK tarballs (npm run pack), installed outside the repository', () => {
  const { t } = useTestServer('sqlite');
  let dir = '';

  before(
    async () => {
      dir = await mkdtemp(join(tmpdir(), 'usher-packed-'));
      await run(process.execPath, [join(ROOT, 'scripts/pack.ts'), '--out', join(dir, 'packs')], {
        cwd: ROOT,
      });
      const tarballs = await readdir(join(dir, 'packs'));
      const dependencies: Record<string, string> = {};
      for (const name of ['protocol', 'worker', 'web']) {
        const file = tarballs.find((f) => f.startsWith(`usher-${name}-`));
        assert.ok(file, `npm run pack made no tarball of @usher/${name}: ${tarballs.join(', ')}`);
        dependencies[`@usher/${name}`] = `file:./packs/${file}`;
      }
      const manifest = { name: 'an-agent', private: true, type: 'module', dependencies };
      await writeFile(join(dir, 'package.json'), JSON.stringify(manifest));
      // ws and typebox come from npm's cache, filled by the repository's own install
      await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], {
        cwd: dir,
      });
    },
    { timeout: 120_000 },
  );
  after(() => rm(dir, { recursive: true, force: true }));

  test('an agent in plain JavaScript on the installed @usher/worker registers, serves a session and answers', async () => {
    await t.createProject(lastingExternalProject('packed', { min: 1, max: 1 }));
    const pool = await t.api<{ token: string; workerUrl: string }>(
      'POST',
      '/projects/packed/pool-tokens',
      {},
    );
    await writeFile(
      join(dir, 'agent.js'),
      `import { UsherWorker } from '@usher/worker';
class Echo extends UsherWorker {
  onMessage(envelope) {
    if (envelope.type === 'user_text') this.send('agent_text', { text: 'echo: ' + envelope.data.text });
  }
}
const agent = new Echo({ url: process.env.URL, token: process.env.TOKEN, name: 'packed-echo' });
process.once('SIGTERM', () => void agent.close());
await agent.start();
await agent.closed;
`,
    );
    const child = spawn(process.execPath, ['agent.js'], {
      cwd: dir,
      env: { ...process.env, URL: pool.body.workerUrl, TOKEN: pool.body.token },
      stdio: ['ignore', 'inherit', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr += String(d);
    });
    try {
      await Promise.race([t.readyWorkers('packed', 1), exited(child, () => stderr)]);
      const s = await t.createSession('packed');
      await t.waitForState(s.id, 'active');
      const viewer = await t.connect(s);
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'hello' }, ref: 'm1' });
      const answer = await viewer.waitFor(
        (e) => e.type === 'session.message' && e.message.type === 'agent_text',
      );
      assert.deepEqual(answer.type === 'session.message' && answer.message.data, { text: 'echo: hello' });
      await t.api('POST', `/sessions/${s.id}/end`);
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    }
  });

  test("@usher/web ships the browser bundle, built from today's source", async () => {
    const shipped = await readFile(join(dir, 'node_modules/@usher/web/dist/usher.js'), 'utf8');
    // something the source says now: the bundle was made from it, not left from an earlier build
    assert.match(shipped, /the server takes frames of up to/);
    assert.match(await readFile(join(dir, 'node_modules/@usher/web/dist/usher.js.map'), 'utf8'), /"sources"/);
  });

  test('a TypeScript project type-checks against the declarations the tarballs ship', async () => {
    await writeFile(
      join(dir, 'check.ts'),
      `import { type Assignment, UsherWorker } from '@usher/worker';
import { CLOSE_CODES } from '@usher/protocol';
import { UsherSession } from '@usher/web';
class Agent extends UsherWorker {
  override onConnect(assignment: Assignment): void {
    this.send('agent_text', { text: assignment.sessionId });
  }
}
export const agent: UsherWorker = new Agent({ name: 'typed' });
export const start: typeof UsherSession.start = UsherSession.start;
export const meaning: string = CLOSE_CODES[4001].meaning;
// @ts-expect-error: the declarations are typed, so a wrong type is an error
export const wrong: string = new Agent({ name: 'typed' });
`,
    );
    const config = {
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2022', 'DOM'],
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules/@types')],
      },
      files: ['check.ts'],
    };
    await writeFile(join(dir, 'tsconfig.json'), JSON.stringify(config));
    await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', dir], {
      cwd: dir,
    }).catch((err: { stdout?: string }) => assert.fail(`tsc found errors:\n${err.stdout}`));
  });
});

/** Rejects when the child exits: it was meant to keep running. */
async function exited(child: ChildProcess, stderr: () => string): Promise<never> {
  const [code] = await once(child, 'exit');
  throw new Error(`the agent exited (${code}) before it was ready:\n${stderr()}`);
}
