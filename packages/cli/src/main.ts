#!/usr/bin/env node
// The `usher` command: serve, demo, migrate. Thin: it resolves configuration and runs the server library.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openStore, redact, safeLoggerOptions, UsherServer } from '@usher/server';
import pino from 'pino';
import { adminKeysCommand } from './admin-keys.ts';
import { ConfigError, type ConfigInputs, type ResolvedConfig, resolveConfig } from './config.ts';
import { DEMO_PAGE, demoAdminKey, demoProjects } from './demo.ts';

const HELP: Record<string, string> = {
  main: `usher: session orchestrator for GPU-streamed apps and realtime agents

Usage: usher <command> [options]

Commands:
  serve     run the server (config file, environment and flags)
  demo      run the server with the demo projects on http://localhost:8080 (what npm start does)
  migrate   bring the database schema up to date and exit
  admin-keys  make, list and revoke admin API keys in the database (works while servers run)

Run "usher <command> --help" for a command's options.`,
  serve: `usher serve: run the server

Options (each overrides the config file and the environment):
  -c, --config <file>     YAML config file (env USHER_CONFIG)
      --host <host>       address to listen on (env USHER_HOST; default 127.0.0.1)
  -p, --port <port>       port (env USHER_PORT; default 8080; 0 picks a free one)
      --public-url <url>  URL clients and workers use to reach this server (env USHER_PUBLIC_URL)
      --database <url>    postgres://… or a SQLite file path (env USHER_DATABASE_URL; default usher.db)
      --admin-key <key>   admin API key, repeatable (env USHER_ADMIN_KEYS, comma-separated); keys made with
                          "usher admin-keys create" or POST /admin-keys work too
      --allowed-origin <origin>
                          a web page origin (https://app.example.com) that may use the API and session
                          sockets from a browser, repeatable (env USHER_ALLOWED_ORIGINS, comma-separated)
      --metrics-public    serve GET /metrics without an admin key (env USHER_METRICS_PUBLIC)
      --log-level <lvl>   fatal|error|warn|info|debug|trace|silent (env USHER_LOG_LEVEL; default info)
      --print-config      print the resolved configuration (secrets hidden) and exit
  -h, --help              this help

Environment only: USHER_SECRET (token signing secret, 32+ characters), USHER_SERVER_ID,
USHER_TRUST_PROXY (true, or proxy addresses/CIDR ranges whose X-Forwarded-For is believed),
USHER_WEBHOOK_SECRET (signs the webhooks that have no secret in the file),
USHER_DRAIN_TIMEOUT_MS (how long SIGTERM waits for this server's sessions; default 30000).
Every key of the config file: docs/configuration.md.

With no admin key configured and none in the database, the first start makes one and prints it once.

Signals: SIGTERM drains (no new sessions; the sessions on workers this server started finish, up to
USHER_DRAIN_TIMEOUT_MS), then stops; SIGINT (Ctrl-C), or a second signal during a drain, stops at once; a
third exits without closing. Either way participants and workers
are told the server is restarting (1012) and reconnect, to another server when several share a database.`,
  demo: `usher demo: run the server with the demo projects

Uses a SQLite file in .usher/demo.db and port 8080 unless told otherwise; takes the same options as serve.
Without --admin-key, its admin key is kept in .usher/demo-admin-key (made on the first run).`,
  migrate: `usher migrate: bring the database schema up to date and exit

Options:
  -c, --config <file>   YAML config file (env USHER_CONFIG)
      --database <url>  postgres://… or a SQLite file path (env USHER_DATABASE_URL)`,
  'admin-keys': `usher admin-keys: make, list and revoke the admin API keys kept in the database

Usage:
  usher admin-keys create <name>   make a key; its value is printed once (only its hash is stored)
  usher admin-keys list            the keys: id, name, prefix, created, last used, revoked
  usher admin-keys revoke <id>     revoke a key (running servers stop taking it within 10 s)

Rotate a key: create a new one, switch your clients to it, revoke the old one. Keys given in the
configuration (--admin-key, USHER_ADMIN_KEYS) are not listed: change them there.

Options:
  -c, --config <file>   YAML config file (env USHER_CONFIG)
      --database <url>  postgres://… or a SQLite file path (env USHER_DATABASE_URL)`,
};

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  host: { type: 'string' },
  port: { type: 'string', short: 'p' },
  'public-url': { type: 'string' },
  database: { type: 'string' },
  'admin-key': { type: 'string', multiple: true },
  'log-level': { type: 'string' },
  'allowed-origin': { type: 'string', multiple: true },
  'metrics-public': { type: 'boolean' },
  'print-config': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP.main);
    return command ? 0 : 2;
  }
  if (!(command in HELP) || command === 'main') {
    console.error(`usher: unknown command "${command}"\n\n${HELP.main}`);
    return 2;
  }
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: rest,
      options: OPTIONS,
      strict: true,
      allowPositionals: command === 'admin-keys',
    }));
  } catch (err) {
    console.error(`usher ${command}: ${(err as Error).message}\n\n${HELP[command]}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP[command]);
    return 0;
  }
  const inputs: ConfigInputs = {
    file: values.config ?? process.env.USHER_CONFIG,
    env: process.env,
    flags: values,
    defaults:
      command === 'demo'
        ? { storage: { type: 'sqlite', path: '.usher/demo.db' }, projects: demoProjects() }
        : undefined,
  };
  let config: ResolvedConfig;
  try {
    config = resolveConfig(inputs);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`usher ${command}: configuration error: ${err.message}`);
      return 2;
    }
    throw err;
  }
  if (values['print-config']) {
    console.log(JSON.stringify(printable(config), null, 2));
    return 0;
  }
  // a SQLite file that is not there yet, by its full path: made now (migrate, serve) or a mistake (admin-keys)
  const missing =
    config.storage.type === 'sqlite' && !existsSync(config.storage.path)
      ? resolve(config.storage.path)
      : null;
  if (command === 'migrate') {
    if (config.storage.type === 'sqlite')
      mkdirSync(dirname(config.storage.path), { recursive: true, mode: 0o700 });
    const store = await openStore(config.storage);
    await store.close();
    console.log(
      missing
        ? `usher migrate: made a new ${describeStorage(config)}, with the schema up to date`
        : `usher migrate: the schema of ${describeStorage(config)} is up to date`,
    );
    return 0;
  }
  if (command === 'admin-keys') return adminKeysCommand(config, positionals, HELP['admin-keys']!, missing);
  if (missing && command === 'serve')
    console.error(
      `usher serve: no database at ${missing}: starting with a new, empty one (--database, USHER_DATABASE_URL or storage.sqlite.path chooses another)`,
    );
  return serve(config, command === 'demo');
}

async function serve(config: ResolvedConfig, demo: boolean): Promise<number> {
  if (config.storage.type === 'sqlite') {
    mkdirSync(dirname(config.storage.path), { recursive: true, mode: 0o700 });
  }
  // tokens, keys and secrets never reach the log, in fields or in text
  const log = pino({ level: config.logLevel, ...safeLoggerOptions });
  const adminKeys = demo && config.adminKeys.length === 0 ? [demoAdminKey(config.storage)] : config.adminKeys;
  const server = new UsherServer({
    storage: config.storage,
    host: config.host,
    port: config.port,
    publicUrl: config.publicUrl,
    serverId: config.serverId,
    adminKeys,
    secret: config.secret,
    trustProxy: config.trustProxy,
    allowedOrigins: config.allowedOrigins,
    bodyLimitBytes: config.bodyLimitBytes,
    sessionRate: config.sessionRate,
    messageRate: config.messageRate,
    roomMessageRate: config.roomMessageRate,
    joinRate: config.joinRate,
    metrics: { public: config.metricsPublic },
    webhooks: config.webhooks,
    projects: config.projects,
    pagesRoot: demo ? DEMO_PAGE : undefined,
    peerConnectionOptions: config.iceServers.length > 0 ? { iceServers: config.iceServers } : undefined,
    livekit: config.livekit,
    kubernetes: config.kubernetes,
    log,
  });
  let url: string;
  try {
    ({ url } = await server.listen());
  } catch (err) {
    await server.close().catch(() => {});
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE')
      throw new Error(
        `port ${config.port} on ${config.host} is in use (another Usher, or another program): choose another with --port, USHER_PORT or server.port`,
      );
    throw err;
  }
  const shownUrl = url.replace('127.0.0.1', 'localhost');
  log.info(
    {
      url: shownUrl,
      dashboard: `${shownUrl}/dashboard/`,
      storage: describeStorage(config),
      projects: config.projects.map((p) => p.id),
    },
    'usher is listening',
  );
  if (server.generatedAdminKey) showBootstrapKey(server.generatedAdminKey, config, log);
  if (demo) printDemoHelp(shownUrl, adminKeys[0] ?? server.generatedAdminKey ?? '<one of your admin keys>');
  let signals = 0;
  const close = async (signal: string) => {
    log.info({ signal }, 'shutting down: stopping workers and closing connections');
    await server.close();
    log.info({}, 'stopped');
    process.exit(0);
  };
  const stop = async (signal: string) => {
    signals++;
    if (signals === 2) {
      // an operator who asks again does not want to wait for the drain
      log.warn({ signal }, 'a second signal: the drain is cut short');
      return close(signal);
    }
    if (signals > 2) {
      log.warn({ signal }, 'a third signal: exiting without closing');
      process.exit(1);
    }
    if (signal === 'SIGTERM') {
      const timeoutMs = Number(process.env.USHER_DRAIN_TIMEOUT_MS ?? 30_000);
      const drainMs = Number.isFinite(timeoutMs) ? timeoutMs : 30_000;
      log.info({ signal, timeoutMs: drainMs }, 'draining: no new sessions; a second signal stops at once');
      const { remaining } = await server.drain({ timeoutMs: drainMs });
      if (signals > 1) return; // the second signal is closing the server
      if (remaining > 0) log.warn({ remaining }, 'drain timed out; stopping the workers still serving');
    }
    await close(signal);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  return new Promise<number>(() => {});
}

/**
 * The key a first start made. Where stdout is a terminal it is printed there, once. Elsewhere stdout is the log
 * stream (a container's), so the key goes to a file only its owner can read, and the log says where.
 */
function showBootstrapKey(key: string, config: ResolvedConfig, log: pino.Logger): void {
  const advice =
    'Make your own keys with "usher admin-keys create <name>" (or POST /admin-keys), then revoke this one (docs/security.md).';
  if (process.stdout.isTTY) {
    console.log(`
  No admin key was configured or stored, so this first start made one, named "bootstrap":

    ${key}

  It is shown this once and stored only as a hash. ${advice}
`);
    return;
  }
  const file = join(
    config.storage.type === 'sqlite' ? dirname(config.storage.path) : '.usher',
    'bootstrap-admin-key',
  );
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `${key}\n`, { mode: 0o600, flag: 'w' });
    log.warn(
      { file: resolve(file) },
      `no admin key was configured or stored: made one named "bootstrap" and wrote it to this file (readable by its owner only); the log never shows it. ${advice}`,
    );
  } catch (err) {
    log.error(
      { err },
      `no admin key was configured or stored: made one named "bootstrap" but could not write it to ${file}; make a key with "usher admin-keys create <name>" against this database`,
    );
  }
}

function printDemoHelp(url: string, adminKey: string): void {
  console.log(`
  Usher demo is running on ${url}

  Open ${url} in a browser: a live video from one of the 2 demo streamers. Open a third tab and it
  queues until a seat frees; leave a tab alone for a minute and it gets the AFK warning, then ends (4004).

  The operator dashboard: ${url}/dashboard/ (sign in with the admin key below).

  Open ${url}/chat.html to talk with the demo agent (project "chat"); open its invite link in a second tab
  to join the same room, kill the agent's process (its pid is in the log) to watch the session recover, end
  it and page back through its transcript:

    curl -s '${url}/sessions/<id>/messages?limit=20' -H 'authorization: Bearer ${adminKey}'

  Project "echo": workers are examples/echo-worker (1 kept warm, 2 at most).
  Try it (more sessions than workers, and watch them queue):

    curl -s -X POST ${url}/sessions -H 'content-type: application/json' -d '{"projectId":"echo"}'
    curl -s ${url}/sessions/<id> -H 'authorization: Bearer ${adminKey}'
    curl -s ${url}/workers -H 'authorization: Bearer ${adminKey}'
    curl -s -X POST ${url}/sessions/<id>/end -H 'authorization: Bearer ${adminKey}'

  Live events of a session: connect a WebSocket to the "url" in the POST answer, with ?token=<its token>.
  API reference: ${url}/openapi.json      Admin key for this run: ${adminKey}
`);
}

function describeStorage(config: ResolvedConfig): string {
  return config.storage.type === 'sqlite'
    ? `SQLite ${config.storage.path}`
    : `PostgreSQL ${redact(config.storage.url)}`;
}

function printable(config: ResolvedConfig): object {
  return {
    ...config,
    storage:
      config.storage.type === 'postgres'
        ? { ...config.storage, url: redact(config.storage.url) }
        : config.storage,
    adminKeys: config.adminKeys.map(() => '[hidden]'),
    secret: config.secret ? '[hidden]' : undefined,
    webhooks: config.webhooks.map((w) => ({ ...w, secret: '[hidden]' })),
    iceServers: config.iceServers.map((s) => (s.credential ? { ...s, credential: '[hidden]' } : s)),
    livekit: config.livekit ? { ...config.livekit, apiSecret: '[hidden]' } : undefined,
  };
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0 || !['serve', 'demo'].includes(process.argv[2] ?? '')) process.exit(code);
  },
  (err) => {
    console.error(`usher: ${(err as Error).message}`);
    process.exit(1);
  },
);
