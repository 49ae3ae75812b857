// Resolves the server's configuration once: defaults, then the YAML file, then environment variables, then
// flags (each overriding the one before), validated with messages that name the key to fix. Frozen.
import { readFileSync } from 'node:fs';
import {
  type ProjectInput,
  ProjectInput as ProjectInputSchema,
  SeedSessionBlock,
  validator,
} from '@usher/protocol';
import {
  checkOrigin,
  type KubernetesSettings,
  type LiveKitSettings,
  parseKubernetesSettings,
  parseLiveKitSettings,
  type RateLimit,
  resolveEndpoints,
  type SessionRateOptions,
  type StorageOptions,
  validateProject,
  type WebhookEndpoint,
} from '@usher/server';
import Type, { type Static } from 'typebox';
import { parse as parseYaml } from 'yaml';

const Rate = Type.Object(
  { perSecond: Type.Number({ exclusiveMinimum: 0 }), burst: Type.Integer({ minimum: 1 }) },
  { additionalProperties: false },
);

const ConfigFile = Type.Object(
  {
    server: Type.Optional(
      Type.Object(
        {
          host: Type.Optional(Type.String()),
          port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
          publicUrl: Type.Optional(Type.String()),
          serverId: Type.Optional(Type.String()),
          // believe X-Forwarded-For from these proxies (true: from any peer)
          trustProxy: Type.Optional(Type.Union([Type.Boolean(), Type.String(), Type.Array(Type.String())])),
          // exact origins of the web pages that may use the API and session sockets from a browser, or "*"
          allowedOrigins: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
          // the largest HTTP body accepted, in bytes
          bodyLimitBytes: Type.Optional(Type.Integer({ minimum: 1024 })),
        },
        { additionalProperties: false },
      ),
    ),
    // limits on POST /sessions (docs/security.md)
    sessionRate: Type.Optional(
      Type.Object(
        {
          perClient: Type.Optional(Type.Union([Rate, Type.Literal(false)])),
          perProject: Type.Optional(Type.Union([Rate, Type.Literal(false)])),
          exemptClients: Type.Optional(Type.Array(Type.String())),
        },
        { additionalProperties: false },
      ),
    ),
    // room messages each participant connection may send
    messageRate: Type.Optional(Rate),
    // room messages a session's participants may send together, and join tokens they may ask for
    roomMessageRate: Type.Optional(Rate),
    joinRate: Type.Optional(Rate),
    metrics: Type.Optional(
      Type.Object({ public: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    ),
    // signed POSTs of session events (docs/webhooks.md): checked by resolveEndpoints, whose messages name the key
    webhooks: Type.Optional(Type.Array(Type.Unknown())),
    storage: Type.Optional(
      Type.Object(
        {
          sqlite: Type.Optional(Type.Object({ path: Type.String() }, { additionalProperties: false })),
          postgres: Type.Optional(
            Type.Object(
              {
                url: Type.String(),
                schema: Type.Optional(Type.String()),
                poolSize: Type.Optional(Type.Integer({ minimum: 1 })),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    adminKeys: Type.Optional(Type.Array(Type.String({ minLength: 16 }))),
    secret: Type.Optional(Type.String({ minLength: 32 })),
    log: Type.Optional(Type.Object({ level: Type.Optional(Type.String()) }, { additionalProperties: false })),
    webrtc: Type.Optional(
      Type.Object(
        {
          // what browsers and streamers get in Pixel Streaming's `config` message (an RTCConfiguration)
          iceServers: Type.Optional(
            Type.Array(
              Type.Object(
                {
                  urls: Type.Union([Type.String(), Type.Array(Type.String())]),
                  username: Type.Optional(Type.String()),
                  credential: Type.Optional(Type.String()),
                },
                { additionalProperties: false },
              ),
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    // LiveKit mode (docs/livekit.md): checked by parseLiveKitSettings, whose messages name the key
    livekit: Type.Optional(Type.Unknown()),
    // the Kubernetes driver (docs/kubernetes.md): checked by parseKubernetesSettings, whose messages name the key
    kubernetes: Type.Optional(Type.Unknown()),
    // the agent seed's block, as written there (seconds): the timeouts of every project declared here that
    // does not set its own
    session: Type.Optional(SeedSessionBlock),
    projects: Type.Optional(Type.Array(Type.Unknown())),
  },
  { additionalProperties: false },
);
type ConfigFile = Static<typeof ConfigFile>;

export interface ResolvedConfig {
  host: string;
  port: number;
  publicUrl: string | undefined;
  serverId: string | undefined;
  storage: StorageOptions;
  adminKeys: readonly string[];
  secret: string | undefined;
  logLevel: string;
  /** STUN/TURN servers for WebRTC peers (Pixel Streaming `config`); none by default */
  iceServers: readonly { urls: string | string[]; username?: string; credential?: string }[];
  /** the LiveKit server of projects with `rooms: livekit`; none by default */
  livekit: Readonly<LiveKitSettings> | undefined;
  /** the Kubernetes driver's settings, for projects with `worker.driver: kubernetes`; none by default */
  kubernetes: Readonly<KubernetesSettings> | undefined;
  projects: readonly ProjectInput[];
  /** whose X-Forwarded-For to believe: false (default), true, or proxy addresses / CIDR ranges */
  trustProxy: boolean | string | readonly string[];
  /** origins of other web pages allowed to use the API and session sockets; none by default */
  allowedOrigins: readonly string[];
  bodyLimitBytes: number | undefined;
  /** limits on POST /sessions; the server's defaults where unset */
  sessionRate: SessionRateOptions | undefined;
  messageRate: RateLimit | undefined;
  roomMessageRate: RateLimit | undefined;
  joinRate: RateLimit | undefined;
  /** whether GET /metrics is served without an admin key */
  metricsPublic: boolean;
  webhooks: readonly WebhookEndpoint[];
  /** where each setting came from, for `usher serve --print-config` */
  sources: Readonly<Record<string, string>>;
}

export interface ConfigInputs {
  file?: string;
  env: Record<string, string | undefined>;
  flags: {
    host?: string;
    port?: string;
    database?: string;
    'admin-key'?: string[];
    'public-url'?: string;
    'log-level'?: string;
    'allowed-origin'?: string[];
    'metrics-public'?: boolean;
  };
  /** defaults that differ per command (demo vs serve) */
  defaults?: Partial<Pick<ResolvedConfig, 'host' | 'port' | 'storage' | 'projects' | 'logLevel'>>;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const fileValidator = validator(ConfigFile);
const projectValidator = validator(ProjectInputSchema);
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** postgres://… → PostgreSQL; anything else is a SQLite file path (file: prefix allowed). */
export function storageFromUrl(value: string, key: string): StorageOptions {
  if (/^postgres(ql)?:\/\//.test(value)) return { type: 'postgres', url: value };
  const path = value.replace(/^file:/, '');
  if (!path) throw new ConfigError(`${key} is empty: give a SQLite file path or a postgres:// URL`);
  return { type: 'sqlite', path };
}

export function resolveConfig(inputs: ConfigInputs): ResolvedConfig {
  const sources: Record<string, string> = {};
  const d = inputs.defaults ?? {};
  let host = d.host ?? '127.0.0.1';
  let port = d.port ?? 8080;
  let publicUrl: string | undefined;
  let serverId: string | undefined;
  let storage: StorageOptions = d.storage ?? { type: 'sqlite', path: 'usher.db' };
  let adminKeys: string[] = [];
  let secret: string | undefined;
  let logLevel = d.logLevel ?? 'info';
  let iceServers: ResolvedConfig['iceServers'] = [];
  let livekit: Record<string, unknown> | undefined;
  let kubernetes: Record<string, unknown> | undefined;
  let projects: ProjectInput[] = [...(d.projects ?? [])];
  let trustProxy: ResolvedConfig['trustProxy'] = false;
  let allowedOrigins: string[] = [];
  let bodyLimitBytes: number | undefined;
  let sessionRate: SessionRateOptions | undefined;
  let messageRate: RateLimit | undefined;
  let roomMessageRate: RateLimit | undefined;
  let joinRate: RateLimit | undefined;
  let metricsPublic = false;
  let webhooks: WebhookEndpoint[] = [];
  for (const k of ['host', 'port', 'storage', 'adminKeys', 'logLevel', 'projects']) sources[k] = 'default';

  // 1. the YAML file
  if (inputs.file) {
    let raw: unknown;
    try {
      raw = parseYaml(readFileSync(inputs.file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read the config file ${inputs.file}: ${(err as Error).message}`);
    }
    const parsed = fileValidator.parse(raw ?? {});
    if (!parsed.ok) throw new ConfigError(`${inputs.file}: ${yamlMessage('', parsed.message)}`);
    const f: ConfigFile = parsed.value;
    const src = `file ${inputs.file}`;
    if (f.server?.host !== undefined) [host, sources.host] = [f.server.host, src];
    if (f.server?.port !== undefined) [port, sources.port] = [f.server.port, src];
    if (f.server?.publicUrl !== undefined) [publicUrl, sources.publicUrl] = [f.server.publicUrl, src];
    if (f.server?.serverId !== undefined) [serverId, sources.serverId] = [f.server.serverId, src];
    if (f.storage?.sqlite && f.storage.postgres)
      throw new ConfigError(`${inputs.file}: storage: give either sqlite or postgres, not both`);
    if (f.storage?.sqlite)
      [storage, sources.storage] = [{ type: 'sqlite', path: f.storage.sqlite.path }, src];
    if (f.storage?.postgres) [storage, sources.storage] = [{ type: 'postgres', ...f.storage.postgres }, src];
    if (f.server?.trustProxy !== undefined) [trustProxy, sources.trustProxy] = [f.server.trustProxy, src];
    if (f.server?.allowedOrigins) [allowedOrigins, sources.allowedOrigins] = [f.server.allowedOrigins, src];
    if (f.server?.bodyLimitBytes) [bodyLimitBytes, sources.bodyLimitBytes] = [f.server.bodyLimitBytes, src];
    if (f.sessionRate) [sessionRate, sources.sessionRate] = [f.sessionRate, src];
    if (f.messageRate) [messageRate, sources.messageRate] = [f.messageRate, src];
    if (f.roomMessageRate) [roomMessageRate, sources.roomMessageRate] = [f.roomMessageRate, src];
    if (f.joinRate) [joinRate, sources.joinRate] = [f.joinRate, src];
    if (f.metrics?.public !== undefined) [metricsPublic, sources.metricsPublic] = [f.metrics.public, src];
    if (f.webhooks) [webhooks, sources.webhooks] = [f.webhooks as WebhookEndpoint[], src];
    if (f.adminKeys) [adminKeys, sources.adminKeys] = [f.adminKeys, src];
    if (f.secret) [secret, sources.secret] = [f.secret, src];
    if (f.log?.level) [logLevel, sources.logLevel] = [f.log.level, src];
    if (f.webrtc?.iceServers) [iceServers, sources.iceServers] = [f.webrtc.iceServers, src];
    if (f.livekit !== undefined) {
      if (typeof f.livekit !== 'object' || f.livekit === null || Array.isArray(f.livekit))
        throw new ConfigError(`${inputs.file}: livekit must be an object with url, apiKey and apiSecret`);
      [livekit, sources.livekit] = [{ ...(f.livekit as Record<string, unknown>) }, src];
    }
    if (f.kubernetes !== undefined) {
      if (typeof f.kubernetes !== 'object' || f.kubernetes === null || Array.isArray(f.kubernetes))
        throw new ConfigError(`${inputs.file}: kubernetes must be an object with at least a namespace`);
      [kubernetes, sources.kubernetes] = [{ ...(f.kubernetes as Record<string, unknown>) }, src];
    }
    if (f.projects) {
      projects = f.projects.map((p, i) => {
        const r = projectValidator.parse(p);
        if (!r.ok) throw new ConfigError(`${inputs.file}: ${yamlMessage(`projects[${i}]`, r.message)}`);
        if (!r.value.id) throw new ConfigError(`${inputs.file}: projects[${i}].id is required`);
        const project = withSessionDefaults(r.value, f.session);
        // the rules the API applies (min ≤ max, a default region that exists…), before the server starts
        try {
          validateProject(null, project);
        } catch (err) {
          const message = (err as Error).message.replace(/^project settings: /, '');
          throw new ConfigError(`${inputs.file}: projects[${i}] (${project.id}): ${message}`);
        }
        return project;
      });
      sources.projects = src;
    }
  }

  // 2. environment variables
  const env = inputs.env;
  if (env.USHER_HOST) [host, sources.host] = [env.USHER_HOST, 'env USHER_HOST'];
  if (env.USHER_PORT) [port, sources.port] = [parsePort(env.USHER_PORT, 'env USHER_PORT'), 'env USHER_PORT'];
  if (env.USHER_PUBLIC_URL) [publicUrl, sources.publicUrl] = [env.USHER_PUBLIC_URL, 'env USHER_PUBLIC_URL'];
  if (env.USHER_SERVER_ID) [serverId, sources.serverId] = [env.USHER_SERVER_ID, 'env USHER_SERVER_ID'];
  if (env.USHER_DATABASE_URL)
    [storage, sources.storage] = [
      storageFromUrl(env.USHER_DATABASE_URL, 'env USHER_DATABASE_URL'),
      'env USHER_DATABASE_URL',
    ];
  if (env.USHER_ADMIN_KEYS)
    [adminKeys, sources.adminKeys] = [
      env.USHER_ADMIN_KEYS.split(',')
        .map((k) => k.trim())
        .filter(Boolean),
      'env USHER_ADMIN_KEYS',
    ];
  if (env.USHER_SECRET) [secret, sources.secret] = [env.USHER_SECRET, 'env USHER_SECRET'];
  if (env.USHER_LOG_LEVEL) [logLevel, sources.logLevel] = [env.USHER_LOG_LEVEL, 'env USHER_LOG_LEVEL'];
  if (env.USHER_ALLOWED_ORIGINS)
    [allowedOrigins, sources.allowedOrigins] = [list(env.USHER_ALLOWED_ORIGINS), 'env USHER_ALLOWED_ORIGINS'];
  if (env.USHER_TRUST_PROXY)
    [trustProxy, sources.trustProxy] = [parseTrustProxy(env.USHER_TRUST_PROXY), 'env USHER_TRUST_PROXY'];
  if (env.USHER_METRICS_PUBLIC)
    [metricsPublic, sources.metricsPublic] = [
      parseBoolean(env.USHER_METRICS_PUBLIC, 'env USHER_METRICS_PUBLIC'),
      'env USHER_METRICS_PUBLIC',
    ];
  // a webhook secret is best kept out of the file: it fills in the endpoints that have none
  if (env.USHER_WEBHOOK_SECRET) {
    webhooks = webhooks.map((w) => (w.secret ? w : { ...w, secret: env.USHER_WEBHOOK_SECRET! }));
    sources.webhookSecret = 'env USHER_WEBHOOK_SECRET';
  }
  // LiveKit's API secret is best kept out of the file
  for (const [name, key] of [
    ['USHER_LIVEKIT_URL', 'url'],
    ['USHER_LIVEKIT_API_KEY', 'apiKey'],
    ['USHER_LIVEKIT_API_SECRET', 'apiSecret'],
  ] as const) {
    const value = env[name];
    if (value) [livekit, sources.livekit] = [{ ...livekit, [key]: value }, `env ${name}`];
  }
  // in a pod, the namespace comes from the downward API and the in-cluster address from the Service
  for (const [name, key] of [
    ['USHER_KUBERNETES_NAMESPACE', 'namespace'],
    ['USHER_KUBERNETES_USHER_URL', 'usherUrl'],
  ] as const) {
    const value = env[name];
    if (value) [kubernetes, sources.kubernetes] = [{ ...kubernetes, [key]: value }, `env ${name}`];
  }

  // 3. flags
  const fl = inputs.flags;
  if (fl.host) [host, sources.host] = [fl.host, 'flag --host'];
  if (fl.port) [port, sources.port] = [parsePort(fl.port, 'flag --port'), 'flag --port'];
  if (fl['public-url']) [publicUrl, sources.publicUrl] = [fl['public-url'], 'flag --public-url'];
  if (fl.database)
    [storage, sources.storage] = [storageFromUrl(fl.database, 'flag --database'), 'flag --database'];
  if (fl['admin-key']?.length) [adminKeys, sources.adminKeys] = [fl['admin-key'], 'flag --admin-key'];
  if (fl['log-level']) [logLevel, sources.logLevel] = [fl['log-level'], 'flag --log-level'];
  if (fl['allowed-origin']?.length)
    [allowedOrigins, sources.allowedOrigins] = [fl['allowed-origin'], 'flag --allowed-origin'];
  if (fl['metrics-public']) [metricsPublic, sources.metricsPublic] = [true, 'flag --metrics-public'];

  for (const k of adminKeys) {
    if (k.length < 16)
      throw new ConfigError(`admin keys must be at least 16 characters (${sources.adminKeys})`);
  }
  if (secret !== undefined && secret.length < 32)
    throw new ConfigError(`the secret must be at least 32 characters (${sources.secret})`);
  if (!LOG_LEVELS.includes(logLevel))
    throw new ConfigError(
      `log level "${logLevel}" (${sources.logLevel}) must be one of ${LOG_LEVELS.join(', ')}`,
    );
  let livekitSettings: Readonly<LiveKitSettings> | undefined;
  try {
    livekitSettings = livekit ? parseLiveKitSettings(livekit) : undefined;
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (${sources.livekit})`);
  }
  for (const o of allowedOrigins) {
    if (o === '*') continue;
    try {
      checkOrigin(o);
    } catch (err) {
      throw new ConfigError(`${(err as Error).message} (${sources.allowedOrigins})`);
    }
  }
  try {
    resolveEndpoints(webhooks);
  } catch (err) {
    const hint = sources.webhookSecret ? '' : ' (a secret may also come from env USHER_WEBHOOK_SECRET)';
    throw new ConfigError(`${(err as Error).message} (${sources.webhooks})${hint}`);
  }
  let kubernetesSettings: Readonly<KubernetesSettings> | undefined;
  try {
    kubernetesSettings = kubernetes ? parseKubernetesSettings(kubernetes) : undefined;
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (${sources.kubernetes})`);
  }
  return Object.freeze({
    host,
    port,
    publicUrl,
    serverId,
    storage,
    adminKeys,
    secret,
    logLevel,
    iceServers,
    livekit: livekitSettings,
    kubernetes: kubernetesSettings,
    projects,
    trustProxy,
    allowedOrigins,
    bodyLimitBytes,
    sessionRate,
    messageRate,
    roomMessageRate,
    joinRate,
    metricsPublic,
    webhooks,
    sources: Object.freeze(sources),
  });
}

/**
 * A declared project with the file's top-level `session.timeouts` (seconds) as defaults: a value the project sets
 * itself, in either form (`timeouts.pendingMs` or its own `session.timeouts.pending`), wins.
 */
function withSessionDefaults(p: ProjectInput, session: SeedSessionBlock | undefined): ProjectInput {
  const seed = session?.timeouts;
  if (!seed) return p;
  const ms = (seconds: number | undefined) =>
    seconds === undefined ? undefined : Math.round(seconds * 1000);
  const defaults = Object.fromEntries(
    Object.entries({
      pendingMs: ms(seed.pending),
      connectingMs: ms(seed.connecting),
      idleMs: ms(seed.idle),
      pausedMs: ms(seed.paused),
    }).filter(([, v]) => v !== undefined),
  );
  return { ...p, timeouts: { ...defaults, ...p.timeouts } };
}

/**
 * A validator message about the YAML node at `prefix` (e.g. `projects[0]`, or '' for the file's top level) with
 * its path as dotted YAML keys: `/timeouts/pendingMs must be >= 1` → `projects[0].timeouts.pendingMs must be >= 1`.
 */
function yamlMessage(prefix: string, message: string): string {
  const m = /^(?:\/(\S*)|body|value) (.*)$/s.exec(message);
  if (!m) return prefix ? `${prefix}: ${message}` : message;
  const path = [prefix, (m[1] ?? '').replaceAll('/', '.')].filter(Boolean).join('.');
  return `${path || 'top level'} ${m[2]}`;
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

/** USHER_TRUST_PROXY: true/false, or proxy addresses and CIDR ranges, comma-separated. */
function parseTrustProxy(value: string): boolean | string[] {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  return list(value);
}

function parseBoolean(value: string, key: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new ConfigError(`${key} must be true or false, not "${value}"`);
}

function parsePort(value: string, key: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new ConfigError(`${key} must be a port number (0-65535), not "${value}"`);
  return n;
}
