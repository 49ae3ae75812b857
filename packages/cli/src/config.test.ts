// resolveConfig: defaults < YAML file < environment < flags, `sources` for each, and error messages that name
// the key to fix.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { applyProjectInput } from '@usher/protocol';
import { ConfigError, type ConfigInputs, resolveConfig, storageFromUrl } from './config.ts';

const dir = mkdtempSync(join(tmpdir(), 'usher-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** Writes a YAML file in the temp folder and returns its path. */
function yaml(text: string): string {
  const path = join(dir, `usher-${++files}.yaml`);
  writeFileSync(path, text);
  return path;
}

const KEY_A = 'admin-key-from-file-000';
const KEY_B = 'admin-key-from-env-0000';
const KEY_C = 'admin-key-from-flag-000';

function resolve(inputs: Partial<ConfigInputs> = {}) {
  return resolveConfig({ env: {}, flags: {}, ...inputs });
}

/** Asserts resolveConfig throws a ConfigError whose message contains every fragment. */
function fails(inputs: Partial<ConfigInputs>, ...fragments: string[]): string {
  let message = '';
  assert.throws(
    () => resolve(inputs),
    (err) => {
      assert.ok(err instanceof ConfigError, `not a ConfigError: ${err}`);
      message = err.message;
      return true;
    },
  );
  for (const f of fragments) assert.ok(message.includes(f), `"${message}" does not mention ${f}`);
  return message;
}

const FULL_FILE = `
server:
  host: 0.0.0.0
  port: 9000
  publicUrl: https://usher.example.com
  serverId: from-file
storage:
  postgres:
    url: postgres://usher@db:5432/usher
    schema: usher
    poolSize: 5
adminKeys: [${KEY_A}]
secret: file-secret-0123456789-0123456789-0123
log:
  level: warn
webrtc:
  iceServers:
    - urls: stun:stun.example.com:3478
    - { urls: [turn:turn.example.com:3478], username: u, credential: p }
projects:
  - id: game
    kind: stream
`;

describe('resolveConfig precedence', () => {
  test('defaults when nothing is given, all marked `default`, frozen', () => {
    const c = resolve();
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.port, 8080);
    assert.deepEqual(c.storage, { type: 'sqlite', path: 'usher.db' });
    assert.deepEqual(c.adminKeys, []);
    assert.equal(c.secret, undefined);
    assert.equal(c.publicUrl, undefined);
    assert.equal(c.serverId, undefined);
    assert.equal(c.logLevel, 'info');
    assert.deepEqual(c.projects, []);
    assert.deepEqual(
      { ...c.sources },
      {
        host: 'default',
        port: 'default',
        storage: 'default',
        adminKeys: 'default',
        logLevel: 'default',
        projects: 'default',
      },
    );
    assert.ok(Object.isFrozen(c));
    assert.ok(Object.isFrozen(c.sources));
  });

  test("a command's own defaults (demo) replace the built-in ones", () => {
    const c = resolve({
      defaults: {
        host: '0.0.0.0',
        port: 3000,
        logLevel: 'warn',
        storage: { type: 'sqlite', path: ':memory:' },
      },
    });
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.port, 3000);
    assert.equal(c.logLevel, 'warn');
    assert.deepEqual(c.storage, { type: 'sqlite', path: ':memory:' });
    assert.equal(c.sources.port, 'default');
  });

  test('the YAML file overrides the defaults, and sources name the file', () => {
    const file = yaml(FULL_FILE);
    const c = resolve({ file, defaults: { port: 3000 } });
    const src = `file ${file}`;
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.port, 9000);
    assert.equal(c.publicUrl, 'https://usher.example.com');
    assert.equal(c.serverId, 'from-file');
    assert.deepEqual(c.storage, {
      type: 'postgres',
      url: 'postgres://usher@db:5432/usher',
      schema: 'usher',
      poolSize: 5,
    });
    assert.deepEqual(c.adminKeys, [KEY_A]);
    assert.equal(c.secret, 'file-secret-0123456789-0123456789-0123');
    assert.equal(c.logLevel, 'warn');
    assert.deepEqual(c.iceServers, [
      { urls: 'stun:stun.example.com:3478' },
      { urls: ['turn:turn.example.com:3478'], username: 'u', credential: 'p' },
    ]);
    assert.deepEqual(c.projects, [{ id: 'game', kind: 'stream' }]);
    for (const k of [
      'host',
      'port',
      'publicUrl',
      'serverId',
      'storage',
      'adminKeys',
      'secret',
      'logLevel',
      'iceServers',
      'projects',
    ])
      assert.equal(c.sources[k], src, k);
  });

  test('a file that sets some keys leaves the others at their defaults', () => {
    const c = resolve({ file: yaml('server:\n  port: 9001\n') });
    assert.equal(c.port, 9001);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.sources.host, 'default');
    assert.deepEqual(c.storage, { type: 'sqlite', path: 'usher.db' });
  });

  test('LiveKit settings come from the file, the secret may come from the environment; mistakes name the key', () => {
    const file = yaml('livekit:\n  url: wss://lk.example.com\n  apiKey: APIkey\n');
    const c = resolve({ file, env: { USHER_LIVEKIT_API_SECRET: 'a-secret-of-at-least-32-characters!!' } });
    assert.deepEqual(
      { ...c.livekit },
      { url: 'wss://lk.example.com', apiKey: 'APIkey', apiSecret: 'a-secret-of-at-least-32-characters!!' },
    );
    assert.equal(c.sources.livekit, 'env USHER_LIVEKIT_API_SECRET');
    assert.equal(resolve().livekit, undefined, 'no LiveKit unless configured');
    fails({ file }, 'livekit.apiSecret');
    fails(
      { file: yaml('livekit:\n  url: https://lk.example.com\n  apiKey: k\n  apiSecret: s\n') },
      'livekit.url',
      'ws://',
    );
    fails({ file: yaml('livekit: wss://lk.example.com\n') }, 'livekit must be an object');
  });

  test('Kubernetes settings come from the file and the environment; mistakes name the key', () => {
    const file = yaml(
      [
        'kubernetes:',
        '  namespace: usher-workers',
        '  kubeconfig: /etc/usher/kubeconfig',
        '  context: gpu-cluster',
        '  installation: prod',
        '  imagePullSecrets: [registry]',
        '',
      ].join('\n'),
    );
    const c = resolve({
      file,
      env: { USHER_KUBERNETES_USHER_URL: 'http://usher.usher.svc.cluster.local:8080/' },
    });
    assert.deepEqual(
      { ...c.kubernetes },
      {
        namespace: 'usher-workers',
        kubeconfig: '/etc/usher/kubeconfig',
        context: 'gpu-cluster',
        installation: 'prod',
        imagePullSecrets: ['registry'],
        usherUrl: 'http://usher.usher.svc.cluster.local:8080',
      },
    );
    assert.equal(c.sources.kubernetes, 'env USHER_KUBERNETES_USHER_URL');
    assert.ok(Object.isFrozen(c.kubernetes));
    assert.equal(resolve().kubernetes, undefined, 'no Kubernetes driver unless configured');

    // in a pod: the namespace from the environment (the downward API), in-cluster auth from the file
    const inPod = resolve({
      file: yaml('kubernetes:\n  inCluster: true\n'),
      env: { USHER_KUBERNETES_NAMESPACE: 'usher' },
    });
    assert.deepEqual({ ...inPod.kubernetes }, { namespace: 'usher', installation: 'usher', inCluster: true });

    fails({ file: yaml('kubernetes:\n  inCluster: true\n') }, 'kubernetes.namespace is required');
    fails(
      { file: yaml('kubernetes:\n  namespace: Usher_Workers\n') },
      'kubernetes.namespace',
      'namespace name',
    );
    fails({ file: yaml('kubernetes:\n  namespace: w\n  namespaces: [a]\n') }, 'kubernetes.namespaces is not');
    fails(
      { file: yaml('kubernetes:\n  namespace: w\n  inCluster: true\n  kubeconfig: /k\n') },
      'either inCluster: true or kubeconfig',
    );
    fails({ file: yaml('kubernetes:\n  namespace: w\n  usherUrl: usher:8080\n') }, 'kubernetes.usherUrl');
    fails({ file: yaml('kubernetes: usher-workers\n') }, 'kubernetes must be an object');
  });

  test('a misspelt WebRTC key names where it is', () => {
    fails({ file: yaml('webrtc:\n  iceServers:\n    - url: stun:x\n') }, 'webrtc.iceServers', 'url');
  });

  test('an empty file is fine', () => {
    assert.equal(resolve({ file: yaml('') }).port, 8080);
  });

  test('environment variables override the file, and sources name the variable', () => {
    const c = resolve({
      file: yaml(FULL_FILE),
      env: {
        USHER_HOST: '10.0.0.1',
        USHER_PORT: '9100',
        USHER_PUBLIC_URL: 'https://env.example.com',
        USHER_SERVER_ID: 'from-env',
        USHER_DATABASE_URL: 'file:/var/lib/usher/usher.db',
        USHER_ADMIN_KEYS: ` ${KEY_B} ,${KEY_C},`,
        USHER_SECRET: 'env-secret-0123456789-0123456789-01234',
        USHER_LOG_LEVEL: 'debug',
      },
    });
    assert.equal(c.host, '10.0.0.1');
    assert.equal(c.port, 9100);
    assert.equal(c.publicUrl, 'https://env.example.com');
    assert.equal(c.serverId, 'from-env');
    assert.deepEqual(c.storage, { type: 'sqlite', path: '/var/lib/usher/usher.db' });
    assert.deepEqual(c.adminKeys, [KEY_B, KEY_C]);
    assert.equal(c.secret, 'env-secret-0123456789-0123456789-01234');
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.sources.host, 'env USHER_HOST');
    assert.equal(c.sources.port, 'env USHER_PORT');
    assert.equal(c.sources.publicUrl, 'env USHER_PUBLIC_URL');
    assert.equal(c.sources.serverId, 'env USHER_SERVER_ID');
    assert.equal(c.sources.storage, 'env USHER_DATABASE_URL');
    assert.equal(c.sources.adminKeys, 'env USHER_ADMIN_KEYS');
    assert.equal(c.sources.secret, 'env USHER_SECRET');
    assert.equal(c.sources.logLevel, 'env USHER_LOG_LEVEL');
  });

  test('empty environment variables are ignored', () => {
    const c = resolve({ file: yaml('server:\n  port: 9001\n'), env: { USHER_PORT: '', USHER_HOST: '' } });
    assert.equal(c.port, 9001);
    assert.equal(c.host, '127.0.0.1');
  });

  test('flags override the environment, and sources name the flag', () => {
    const file = yaml(FULL_FILE);
    const c = resolve({
      file,
      env: {
        USHER_HOST: '10.0.0.1',
        USHER_PORT: '9100',
        USHER_DATABASE_URL: 'postgres://env@db/usher',
        USHER_ADMIN_KEYS: KEY_B,
        USHER_LOG_LEVEL: 'debug',
        USHER_PUBLIC_URL: 'https://env.example.com',
      },
      flags: {
        host: '::1',
        port: '0',
        database: 'postgresql://flag@db/usher',
        'admin-key': [KEY_C],
        'log-level': 'error',
        'public-url': 'https://flag.example.com',
      },
    });
    assert.equal(c.host, '::1');
    assert.equal(c.port, 0);
    assert.deepEqual(c.storage, { type: 'postgres', url: 'postgresql://flag@db/usher' });
    assert.deepEqual(c.adminKeys, [KEY_C]);
    assert.equal(c.logLevel, 'error');
    assert.equal(c.publicUrl, 'https://flag.example.com');
    assert.equal(c.sources.host, 'flag --host');
    assert.equal(c.sources.port, 'flag --port');
    assert.equal(c.sources.storage, 'flag --database');
    assert.equal(c.sources.adminKeys, 'flag --admin-key');
    assert.equal(c.sources.logLevel, 'flag --log-level');
    assert.equal(c.sources.publicUrl, 'flag --public-url');
    // what no flag set still comes from below
    assert.equal(c.serverId, 'from-file');
    assert.equal(c.sources.serverId, `file ${file}`);
  });

  test('each layer wins only for the keys it sets', () => {
    const c = resolve({
      file: yaml('server:\n  port: 9001\n  host: file-host\nlog:\n  level: warn\n'),
      env: { USHER_HOST: 'env-host' },
      flags: { 'log-level': 'trace' },
    });
    assert.equal(c.port, 9001);
    assert.match(c.sources.port ?? '', /^file /);
    assert.equal(c.host, 'env-host');
    assert.equal(c.logLevel, 'trace');
    assert.equal(c.sources.storage, 'default');
  });
});

describe('resolveConfig errors name the key to fix', () => {
  test('a bad port in the environment names USHER_PORT', () => {
    for (const bad of ['abc', '70000', '-1', '80.5'])
      fails({ env: { USHER_PORT: bad } }, 'USHER_PORT', `"${bad}"`);
  });

  test('a bad port flag names --port', () => {
    fails({ flags: { port: 'eighty' } }, '--port', '"eighty"');
  });

  test('a bad port in the file names server.port', () => {
    fails({ file: yaml('server:\n  port: abc\n') }, 'server.port');
    fails({ file: yaml('server:\n  port: 70000\n') }, 'server.port');
  });

  test('an unknown key in the file is named, with where it is', () => {
    const file = yaml('bogus: 1\n');
    const top = fails({ file }, file, '"bogus"');
    assert.ok(!top.includes('body'), `"${top}" speaks of an HTTP body`);
    fails({ file: yaml('server:\n  prot: 9000\n') }, 'server', '"prot"');
    fails({ file: yaml('storage:\n  mysql:\n    url: x\n') }, 'storage', '"mysql"');
  });

  test('a project with an unknown field names projects[i] and the field', () => {
    const m = fails({ file: yaml('projects:\n  - id: game\n    colour: blue\n') }, 'projects[0]', '"colour"');
    assert.ok(!m.includes('body'), `"${m}" speaks of an HTTP body`);
    fails(
      { file: yaml('projects:\n  - id: a\n  - id: b\n    timeouts:\n      pendingMs: 1\n      typo: 2\n') },
      'projects[1].timeouts',
      '"typo"',
    );
  });

  test('a project with a bad value names its path', () => {
    fails(
      { file: yaml('projects:\n  - id: a\n    timeouts:\n      pendingMs: -5\n') },
      'projects[0].timeouts.pendingMs',
    );
    fails({ file: yaml('projects:\n  - id: a\n    maxQueueLength: lots\n') }, 'projects[0].maxQueueLength');
    fails({ file: yaml('projects:\n  - name: no id\n') }, 'projects[0].id');
    // what the API would refuse is refused before the server starts
    fails(
      { file: yaml('projects:\n  - id: a\n    regions:\n      default: { min: 5, max: 2 }\n') },
      'projects[0] (a): regions.default: min (5) must not be greater than max (2)',
    );
    fails(
      { file: yaml('projects:\n  - id: a\n    defaultRegion: mars\n') },
      'projects[0] (a): defaultRegion "mars" is not one of regions',
    );
  });

  test('sqlite and postgres both given is refused, naming both', () => {
    fails(
      { file: yaml('storage:\n  sqlite:\n    path: a.db\n  postgres:\n    url: postgres://x/y\n') },
      'storage',
      'sqlite',
      'postgres',
    );
  });

  test('a missing or unparseable file names the file', () => {
    const missing = join(dir, 'nope.yaml');
    fails({ file: missing }, missing);
    const broken = yaml('server: [\n');
    fails({ file: broken }, broken);
  });

  test('short admin keys, a short secret and an unknown log level name where they came from', () => {
    fails({ env: { USHER_ADMIN_KEYS: 'short' } }, 'admin keys', 'env USHER_ADMIN_KEYS');
    fails({ flags: { 'admin-key': ['short'] } }, 'flag --admin-key');
    fails({ file: yaml('adminKeys: [short]\n') }, 'adminKeys');
    fails({ env: { USHER_SECRET: 'too-short' } }, 'secret', 'env USHER_SECRET');
    fails({ flags: { 'log-level': 'loud' } }, '"loud"', 'flag --log-level', 'info');
    fails({ env: { USHER_DATABASE_URL: 'file:' } }, 'USHER_DATABASE_URL');
  });
});

describe('operations settings: origins, proxies, rate limits, metrics, webhooks', () => {
  const SECRET = 'a-webhook-secret-of-24-chars+';
  test('from the file, overridden by the environment and flags, with their sources', () => {
    const file = yaml(`
server:
  trustProxy: [10.0.0.0/8]
  allowedOrigins: [https://app.example.com]
  bodyLimitBytes: 65536
sessionRate:
  perClient: { perSecond: 5, burst: 10 }
  perProject: false
messageRate: { perSecond: 20, burst: 40 }
roomMessageRate: { perSecond: 100, burst: 200 }
joinRate: { perSecond: 2, burst: 10 }
metrics: { public: true }
webhooks:
  - url: https://hooks.example.com/usher
    events: [session.status_changed]
  - url: https://other.example.com/usher
    secret: ${SECRET}
`);
    const c = resolve({ file, env: { USHER_WEBHOOK_SECRET: 'from-the-environment-0123456789' } });
    assert.deepEqual(c.trustProxy, ['10.0.0.0/8']);
    assert.deepEqual(c.allowedOrigins, ['https://app.example.com']);
    assert.equal(c.bodyLimitBytes, 65536);
    assert.deepEqual(c.sessionRate, { perClient: { perSecond: 5, burst: 10 }, perProject: false });
    assert.deepEqual(c.messageRate, { perSecond: 20, burst: 40 });
    assert.deepEqual(c.roomMessageRate, { perSecond: 100, burst: 200 });
    assert.deepEqual(c.joinRate, { perSecond: 2, burst: 10 });
    assert.equal(c.metricsPublic, true);
    // the environment's secret fills only the endpoint without one
    assert.deepEqual(
      c.webhooks.map((w) => w.secret),
      ['from-the-environment-0123456789', SECRET],
    );
    const env = resolve({
      file,
      env: {
        USHER_ALLOWED_ORIGINS: 'https://a.example.com, https://b.example.com',
        USHER_TRUST_PROXY: 'true',
        USHER_METRICS_PUBLIC: 'false',
        USHER_WEBHOOK_SECRET: 'from-the-environment-0123456789',
      },
    });
    assert.deepEqual(env.allowedOrigins, ['https://a.example.com', 'https://b.example.com']);
    assert.equal(env.sources.allowedOrigins, 'env USHER_ALLOWED_ORIGINS');
    assert.equal(env.trustProxy, true);
    assert.equal(env.metricsPublic, false);
    const flags = resolve({
      file,
      env: { USHER_WEBHOOK_SECRET: 'from-the-environment-0123456789' },
      flags: { 'allowed-origin': ['http://localhost:3000'], 'metrics-public': true },
    });
    assert.deepEqual(flags.allowedOrigins, ['http://localhost:3000']);
    assert.equal(flags.sources.allowedOrigins, 'flag --allowed-origin');
  });

  test('defaults: no other origin, no proxy, metrics behind the admin key, no webhooks', () => {
    const c = resolve();
    assert.deepEqual(
      [c.allowedOrigins, c.trustProxy, c.metricsPublic, c.webhooks, c.sessionRate],
      [[], false, false, [], undefined],
    );
  });

  test('mistakes name the key to fix', () => {
    fails(
      { env: { USHER_ALLOWED_ORIGINS: 'https://app.example.com/app' } },
      'https://app.example.com/app',
      'USHER_ALLOWED_ORIGINS',
      'no path',
    );
    fails({ file: yaml('sessionRate:\n  perClient: { perSecond: 0, burst: 1 }\n') }, 'sessionRate.perClient');
    fails({ env: { USHER_METRICS_PUBLIC: 'maybe' } }, 'USHER_METRICS_PUBLIC', 'true or false');
    fails(
      { file: yaml('webhooks:\n  - url: https://h.example.com/x\n') },
      'webhooks[0].secret',
      'USHER_WEBHOOK_SECRET',
    );
    fails({ file: yaml(`webhooks:\n  - url: not a url\n    secret: ${SECRET}\n`) }, 'webhooks[0].url');
  });
});

describe('storageFromUrl', () => {
  test('postgres:// and postgresql:// URLs are PostgreSQL, kept whole', () => {
    assert.deepEqual(storageFromUrl('postgres://u:p@h:5432/d?sslmode=require', 'k'), {
      type: 'postgres',
      url: 'postgres://u:p@h:5432/d?sslmode=require',
    });
    assert.deepEqual(storageFromUrl('postgresql://h/d', 'k'), { type: 'postgres', url: 'postgresql://h/d' });
  });

  test('anything else is a SQLite file path, with an optional file: prefix', () => {
    assert.deepEqual(storageFromUrl('usher.db', 'k'), { type: 'sqlite', path: 'usher.db' });
    assert.deepEqual(storageFromUrl('/data/usher.db', 'k'), { type: 'sqlite', path: '/data/usher.db' });
    assert.deepEqual(storageFromUrl('file:./x.db', 'k'), { type: 'sqlite', path: './x.db' });
    assert.deepEqual(storageFromUrl(':memory:', 'k'), { type: 'sqlite', path: ':memory:' });
  });

  test('an empty path names the key', () => {
    assert.throws(
      () => storageFromUrl('file:', 'flag --database'),
      (err) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /flag --database/);
        return true;
      },
    );
  });
});

describe("the agent seed's YAML in a project", () => {
  test('`session.timeouts` (seconds) is accepted verbatim and applies as milliseconds', () => {
    const c = resolve({
      file: yaml(`
projects:
  - id: stella
    kind: agent
    # Session configuration
    session:
      timeouts:
        pending: 300        # seconds
        connecting: 120     # seconds
        idle: 1800          # seconds
        paused: 900         # seconds
`),
    });
    assert.equal(c.projects.length, 1);
    const p = c.projects[0]!;
    assert.deepEqual(p.session, { timeouts: { pending: 300, connecting: 120, idle: 1800, paused: 900 } });
    const settings = applyProjectInput(null, {
      ...p,
      session: { timeouts: { ...p.session!.timeouts, idle: 60 } },
    });
    assert.equal(settings.timeouts.pendingMs, 300_000);
    assert.equal(settings.timeouts.connectingMs, 120_000);
    assert.equal(settings.timeouts.idleMs, 60_000);
    assert.equal(settings.timeouts.pausedMs, 900_000);
  });

  test('at the top level, exactly as the seed writes it, it is the default of every declared project', () => {
    const c = resolve({
      file: yaml(`
# Session configuration
session:
  timeouts:
    pending: 300        # seconds
    connecting: 120     # seconds
    idle: 1800          # seconds
    paused: 900         # seconds
projects:
  - id: plain
  - id: own-ms
    timeouts: { idleMs: 5000 }
  - id: own-seconds
    session: { timeouts: { paused: 10 } }
`),
    });
    const settings = Object.fromEntries(c.projects.map((p) => [p.id, applyProjectInput(null, p).timeouts]));
    assert.deepEqual(
      [
        settings.plain!.pendingMs,
        settings.plain!.connectingMs,
        settings.plain!.idleMs,
        settings.plain!.pausedMs,
      ],
      [300_000, 120_000, 1_800_000, 900_000],
    );
    // a project's own value wins, in either form
    assert.equal(settings['own-ms']!.idleMs, 5000);
    assert.equal(settings['own-ms']!.pendingMs, 300_000);
    assert.equal(settings['own-seconds']!.pausedMs, 10_000);
    assert.equal(settings['own-seconds']!.idleMs, 1_800_000);
  });

  test('a typo in the top-level block is named', () => {
    fails({ file: yaml('session:\n  timeouts:\n    idel: 300\n') }, 'session.timeouts', '"idel"');
  });

  test('a typo inside the seed block is named', () => {
    fails(
      { file: yaml('projects:\n  - id: a\n    session:\n      timeouts:\n        pendnig: 300\n') },
      'projects[0].session.timeouts',
      '"pendnig"',
    );
  });
});
