// `npm test`: checks that PostgreSQL answers, typechecks, lints, then runs every test file with node:test.
//
//   npm test                              everything
//   npm test -- queue                     only test files whose path contains "queue"
//   npm test -- packages/server/test/queue.test.ts --test-name-pattern=drain
//   npm test -- --skip-checks queue       skip tsc and biome (quick local runs)
//
// Arguments starting with "-" go to `node --test` (except --skip-checks); the others select test files:
// an existing file or folder, or a substring of the path. Environment: USHER_TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/test), USHER_TEST_DATABASES (e.g. "sqlite" to run without PostgreSQL),
// USHER_TEST_CONCURRENCY (test files run at once; default twice the cores, 4 on a 2-core machine).
// A test that runs longer than 120 s fails (override with --test-timeout=<ms>); a file's process exits 10 s
// after its tests are done if a failed test left something running (scripts/test-exit.ts).
import { spawn } from 'node:child_process';
import { existsSync, globSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TEST_FILES = ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'examples/**/*.test.ts'];
const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

interface Args {
  skipChecks: boolean;
  nodeArgs: string[];
  filters: string[];
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { skipChecks: false, nodeArgs: [], filters: [] };
  for (const arg of argv) {
    if (arg === '--skip-checks') args.skipChecks = true;
    else if (arg.startsWith('-')) args.nodeArgs.push(arg);
    else args.filters.push(arg);
  }
  return args;
}

function testFiles(filters: readonly string[]): string[] {
  const all = globSync(TEST_FILES, { cwd: ROOT })
    .filter((f) => !f.split('/').includes('node_modules'))
    .sort();
  if (filters.length === 0) return all;
  const picked = new Set<string>();
  for (const filter of filters) {
    const abs = resolve(process.env.INIT_CWD ?? process.cwd(), filter);
    if (existsSync(abs) && statSync(abs).isFile()) picked.add(relative(ROOT, abs));
    else if (existsSync(abs) && statSync(abs).isDirectory()) {
      const dir = relative(ROOT, abs);
      for (const f of all) if (dir === '' || f.startsWith(`${dir}/`)) picked.add(f);
    } else for (const f of all) if (f.includes(filter)) picked.add(f);
  }
  return [...picked].sort();
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

function databaseName(url: string): string {
  try {
    return decodeURIComponent(new URL(url).pathname.slice(1)) || 'postgres';
  } catch {
    return 'test';
  }
}

/** Fails with a message saying how to fix it when the test database does not answer. */
async function checkPostgres(): Promise<void> {
  const kinds = (process.env.USHER_TEST_DATABASES ?? 'sqlite,postgres').split(',').map((s) => s.trim());
  if (!kinds.includes('postgres')) return;
  const url = process.env.USHER_TEST_DATABASE_URL ?? DEFAULT_DATABASE_URL;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const fix =
      e.code === '3D000'
        ? `create the database:\n    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE ${databaseName(url)}'`
        : e.code?.startsWith('28')
          ? 'allow the test user in (the suite expects trust auth on 127.0.0.1), or set USHER_TEST_DATABASE_URL to a URL with credentials'
          : `start PostgreSQL (Debian):\n    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n  or run the whole CI setup, which also installs it and creates the database:\n    bash .ci/run`;
    console.error(
      `✖ PostgreSQL does not answer at ${redactUrl(url)} (${e.message ?? String(err)}).\n` +
        `  To fix it, ${fix}\n` +
        '  Or point the suite elsewhere with USHER_TEST_DATABASE_URL, or run on SQLite only:\n' +
        '    USHER_TEST_DATABASES=sqlite npm test',
    );
    process.exit(1);
  } finally {
    await client.end().catch(() => {});
  }
}

interface Captured {
  code: number;
  output: string;
  ms: number;
}

function capture(args: readonly string[]): Promise<Captured> {
  const started = performance.now();
  return new Promise((done) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (err) => done({ code: 1, output: String(err), ms: performance.now() - started }));
    child.on('close', (code, signal) =>
      done({ code: code ?? (signal ? 1 : 0), output, ms: performance.now() - started }),
    );
  });
}

/** tsc and biome, side by side; prints the output of any that fails and exits. */
async function runChecks(): Promise<void> {
  const checks = [
    {
      name: 'typecheck (tsc -p tsconfig.json)',
      args: ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'],
      hint: 'fix the type errors above',
    },
    {
      name: 'lint and format (biome check .)',
      args: ['node_modules/@biomejs/biome/bin/biome', 'check', '.'],
      hint: 'fix the problems above; `npx biome check --write <files>` fixes formatting and safe lint issues',
    },
  ];
  const results = await Promise.all(checks.map((c) => capture(c.args)));
  let failed = false;
  checks.forEach((check, i) => {
    const r = results[i]!;
    const secs = (r.ms / 1000).toFixed(1);
    if (r.code === 0) {
      console.log(`✔ ${check.name} (${secs} s)`);
      return;
    }
    failed = true;
    process.stdout.write(r.output.endsWith('\n') || r.output === '' ? r.output : `${r.output}\n`);
    console.error(`✖ ${check.name} failed (${secs} s): ${check.hint}`);
  });
  if (failed) process.exit(1);
}

/**
 * Test files run at once. They spend most of their time waiting on sockets, the database and child
 * processes, so twice the cores: 4 on the 2-core CI machine (measured there: 4 at once was faster than 2,
 * 6 was not).
 */
function concurrency(): number {
  const fallback = Math.min(8, 2 * availableParallelism());
  const n = Number(process.env.USHER_TEST_CONCURRENCY ?? fallback);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const files = testFiles(args.filters);
  if (files.length === 0) {
    console.error(`✖ no test file matches ${args.filters.map((f) => `"${f}"`).join(', ')}`);
    process.exit(1);
  }
  await checkPostgres();
  if (!args.skipChecks) await runChecks();

  const own = (flag: string) => args.nodeArgs.some((a) => a === flag || a.startsWith(`${flag}=`));
  const nodeArgs = ['--test'];
  if (!own('--test-concurrency')) nodeArgs.push(`--test-concurrency=${concurrency()}`);
  if (!own('--test-reporter')) nodeArgs.push('--test-reporter=./scripts/test-reporter.ts');
  if (!own('--test-reporter-destination') && !own('--test-reporter'))
    nodeArgs.push('--test-reporter-destination=stdout');
  if (!own('--test-timeout')) nodeArgs.push('--test-timeout=120000');
  // a test that times out leaves its servers and child processes behind, and they would keep its file's
  // process alive (and the whole run waiting) forever: scripts/test-exit.ts ends such a process
  nodeArgs.push('--import=./scripts/test-exit.ts');
  const atATime = own('--test-concurrency') ? '' : `, ${concurrency()} at a time`;
  console.log(`▶ ${files.length} test file${files.length === 1 ? '' : 's'}${atATime}`);

  const child = spawn(process.execPath, [...nodeArgs, ...args.nodeArgs, ...files], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
  child.on('close', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

await main();
