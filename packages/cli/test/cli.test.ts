// The `usher` command as an operator runs it: --help on every command, `usher migrate`, and `usher serve` with a
// YAML file that declares two projects (the seed's session.timeouts block included), stopped with SIGTERM.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openStore } from '@usher/server';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'usher-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Environment without the operator's own USHER_* settings, so the test sees only what it passes. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('USHER_')));
  return { ...env, ...extra };
}

/** Runs `usher …` to its end. */
function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: cleanEnv(), cwd: dir });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const KEY = 'operator-key-0123456789';

/**
 * `usher serve --config <name>.yaml` on its own SQLite file and a free port, with the admin key KEY and the
 * YAML given after that; its exit code, and what it wrote on stderr so far.
 */
function serve(name: string, yaml: string, env: Record<string, string> = {}) {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `server:\n  port: 0\nstorage:\n  sqlite:\n    path: ${join(dir, `${name}.db`)}\nadminKeys: [${KEY}]\n${yaml}`,
  );
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', file], { env: cleanEnv(env), cwd: dir });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return { child, exited, stderr: () => stderr };
}

/** Lines of a child's stdout, parsed as pino's JSON where they are JSON. */
async function* jsonLines(child: ChildProcess): AsyncGenerator<Record<string, unknown>> {
  for await (const line of createInterface({ input: child.stdout! })) {
    if (line.startsWith('{')) yield JSON.parse(line) as Record<string, unknown>;
  }
}

describe('usher --help', () => {
  for (const [args, fragment] of [
    [['--help'], 'Commands:'],
    [['serve', '--help'], '--config <file>'],
    [['demo', '--help'], 'demo projects'],
    [['migrate', '--help'], '--database <url>'],
    [['admin-keys', '--help'], 'usher admin-keys create <name>'],
  ] as const) {
    test(`usher ${args.join(' ')} explains itself and exits 0`, async () => {
      const r = await run([...args]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.includes(fragment), r.stdout);
    });
  }

  test('an unknown command or option exits 2 and shows the help', async () => {
    const unknown = await run(['srve']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "srve"/);
    const option = await run(['serve', '--prot', '80']);
    assert.equal(option.code, 2);
    assert.match(option.stderr, /--prot/);
    assert.match(option.stderr, /usher serve: run the server/);
  });
});

describe('usher serve --print-config', () => {
  test('prints what the server would run with, every secret hidden', async () => {
    const secrets = {
      adminKey: 'printed-admin-key-0123456789',
      secret: 'printed-token-secret-0123456789-0123456789',
      password: 'printed-db-password',
      webhook: 'whsec_cHJpbnRlZC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5',
      turn: 'printed-turn-credential',
      livekit: 'printed-livekit-api-secret-0123456789',
    };
    writeFileSync(
      join(dir, 'print.yaml'),
      [
        `adminKeys: [${secrets.adminKey}]`,
        `secret: ${secrets.secret}`,
        'storage:',
        `  postgres: { url: "postgres://usher:${secrets.password}@127.0.0.1:5432/usher" }`,
        `webhooks: [{ url: "https://hooks.example.com/usher", secret: "${secrets.webhook}" }]`,
        `webrtc: { iceServers: [{ urls: "turn:turn.example.com", username: u, credential: ${secrets.turn} }] }`,
        `livekit: { url: "wss://lk.example.com", apiKey: key, apiSecret: ${secrets.livekit} }`,
      ].join('\n'),
    );
    const r = await run(['serve', '--config', 'print.yaml', '--print-config']);
    assert.equal(r.code, 0, r.stderr);
    const printed = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal((printed.livekit as { apiKey: string }).apiKey, 'key', 'what is no secret is shown');
    for (const [what, value] of Object.entries(secrets))
      assert.equal(r.stdout.includes(value), false, `the ${what} is hidden`);
  });
});

describe('usher serve on a port in use', () => {
  test('exits 1 and says how to choose another port', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as AddressInfo).port;
      const r = await run([
        'serve',
        '--port',
        String(port),
        '--host',
        '127.0.0.1',
        '--database',
        join(dir, 'taken.db'),
      ]);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use.*--port, USHER_PORT or server\\.port`),
      );
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});

describe('usher migrate', () => {
  test('creates the schema of a new SQLite file, then finds it up to date', async () => {
    const db = join(dir, 'migrate.db');
    for (const said of [/made a new SQLite .*migrate\.db, with the schema up to date/, /is up to date/]) {
      const r = await run(['migrate', '--database', db]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, said);
    }
    const store = await openStore({ type: 'sqlite', path: db });
    try {
      assert.deepEqual(await store.read.listProjects(), []);
    } finally {
      await store.close();
    }
  });

  test('a bad config file exits 2 and names the key to fix', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'server:\n  prot: 80\n');
    const r = await run(['migrate', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /server/);
    assert.match(r.stderr, /"prot"/);
  });
});

describe('usher admin-keys', () => {
  test('create prints a key once, list shows it without its value, revoke marks it; the last key stays', async () => {
    const db = join(dir, 'keys.db');
    // a path with no database behind it is taken for a mistake, not made into an empty database
    const mistyped = await run(['admin-keys', 'create', 'ops', '--database', db]);
    assert.equal(mistyped.code, 2);
    assert.match(mistyped.stderr, /there is no database at .*keys\.db: check --database.*usher migrate/);
    assert.ok(!existsSync(db), 'no database was made');
    const made = await run(['migrate', '--database', db]);
    assert.match(made.stdout, /made a new SQLite .*keys\.db/);
    const created = await run(['admin-keys', 'create', 'ops', '--database', db]);
    assert.equal(created.code, 0, created.stderr);
    const key = /\b(usk_[\w-]{43})\b/.exec(created.stdout)?.[1];
    assert.ok(key, created.stdout);
    const second = await run(['admin-keys', 'create', 'ci', '--database', db]);
    const id = /\((ak_[^)]+)\)/.exec(created.stdout)?.[1];
    assert.ok(id, created.stdout);

    const listed = await run(['admin-keys', 'list', '--database', db]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /ops/);
    assert.match(listed.stdout, /ci/);
    assert.ok(!listed.stdout.includes(key), 'list never shows a key');
    assert.ok(listed.stdout.includes(key.slice(0, 8)), 'list shows the prefix');

    const revoked = await run(['admin-keys', 'revoke', id, '--database', db]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match((await run(['admin-keys', 'list', '--database', db])).stdout, /ops .*revoked/);
    const ciId = /\((ak_[^)]+)\)/.exec(second.stdout)?.[1];
    const last = await run(['admin-keys', 'revoke', ciId!, '--database', db]);
    assert.equal(last.code, 1);
    assert.match(last.stderr, /last one/);
  });

  test('mistakes in its arguments exit 2 with its help', async () => {
    for (const args of [['admin-keys'], ['admin-keys', 'make', 'x'], ['admin-keys', 'create']]) {
      const r = await run([...args, '--database', join(dir, 'keys-bad.db')]);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, /usher admin-keys create <name>/);
    }
  });
});

describe('usher serve', () => {
  test('with no admin key anywhere, the first start writes one to an owner-only file and logs where, never the key', async () => {
    const db = join(dir, 'bootstrap', 'usher.db');
    const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--database', db], {
      env: cleanEnv(),
      cwd: dir,
    });
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      let url = '';
      let file = '';
      for await (const line of jsonLines(child)) {
        if (line.msg === 'usher is listening') url = String(line.url);
        if (typeof line.file === 'string' && String(line.msg).includes('bootstrap')) file = line.file;
        if (url && file) break;
      }
      assert.equal(file, join(dir, 'bootstrap', 'bootstrap-admin-key'));
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const key = readFileSync(file, 'utf8').trim();
      assert.match(key, /^usk_[\w-]{43}$/);
      const res = await fetch(`${url}/projects`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(res.status, 200);
      child.kill('SIGINT');
      assert.equal(await exited, 0);
      // stdout is the log stream here: the key is nowhere in it
      assert.ok(stdout.length > 0 && !stdout.includes(key), stdout);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('serves the projects the YAML file declares, with the seed timeouts, and drains on SIGTERM', async () => {
    const { child, exited, stderr } = serve(
      'two-projects',
      `session:
  timeouts:
    pending: 300
    connecting: 120
    idle: 1800
    paused: 900
projects:
  - id: game
    kind: stream
    worker: { driver: external }
  - id: assistant
    kind: agent
    worker: { driver: external }
    timeouts: { idleMs: 60000 }
`,
    );
    try {
      const lines = jsonLines(child);
      let url = '';
      for await (const line of lines) {
        if (line.msg === 'usher is listening') {
          url = String(line.url);
          break;
        }
      }
      assert.ok(url, `the server said where it listens; stderr: ${stderr()}`);
      const res = await fetch(`${url}/projects`, { headers: { authorization: `Bearer ${KEY}` } });
      assert.equal(res.status, 200);
      const { projects } = (await res.json()) as {
        projects: { id: string; timeouts: { idleMs: number; pausedMs: number } }[];
      };
      const byId = Object.fromEntries(projects.map((p) => [p.id, p]));
      assert.deepEqual(Object.keys(byId).sort(), ['assistant', 'game']);
      assert.equal(byId.game!.timeouts.idleMs, 1_800_000);
      assert.equal(byId.assistant!.timeouts.idleMs, 60_000);
      assert.equal(byId.assistant!.timeouts.pausedMs, 900_000);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr());
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a second signal during a drain cuts it short: the server closes at once', async () => {
    const echo = fileURLToPath(new URL('../../../examples/echo-worker/index.ts', import.meta.url));
    // a drain that would wait ten minutes for the session
    const { child, exited, stderr } = serve(
      'draining',
      `projects:
  - id: busy
    kind: agent
    worker: { driver: process, command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(echo)}] }
    regions: { default: { min: 1, max: 1 } }
`,
      { USHER_DRAIN_TIMEOUT_MS: '600000' },
    );
    try {
      // every log line, and the waits for one that says `msg`
      const said: Record<string, unknown>[] = [];
      const waits: { msg: string; resolve: (line: Record<string, unknown>) => void }[] = [];
      createInterface({ input: child.stdout }).on('line', (text) => {
        if (!text.startsWith('{')) return;
        const line = JSON.parse(text) as Record<string, unknown>;
        said.push(line);
        for (const w of waits.filter((x) => x.msg === line.msg)) {
          waits.splice(waits.indexOf(w), 1);
          w.resolve(line);
        }
      });
      const next = (msg: string) =>
        new Promise<Record<string, unknown>>((resolve) => {
          const seen = said.find((l) => l.msg === msg);
          if (seen) resolve(seen);
          else waits.push({ msg, resolve });
        });
      const url = String((await next('usher is listening')).url);
      const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
      // a session on a worker this server started, which the drain would wait for (queued until the worker is up)
      const created = await fetch(`${url}/sessions`, {
        method: 'POST',
        headers: auth,
        body: '{"projectId":"busy"}',
      });
      const { id } = (await created.json()) as { id: string };
      let state = '';
      for (let i = 0; i < 500 && state !== 'active'; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 20));
        const read = await fetch(`${url}/sessions/${id}`, { headers: auth });
        state = ((await read.json()) as { state: string }).state;
      }
      assert.equal(state, 'active', 'a session is served');
      child.kill('SIGTERM');
      await next('draining: no new sessions; a second signal stops at once');
      child.kill('SIGINT');
      await next('a second signal: the drain is cut short');
      assert.equal(await exited, 0, stderr());
    } finally {
      child.kill('SIGKILL');
    }
  });
});
