// The Usher server as a library: construct with options (no I/O), then listen() and close().
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import { MAX_WORKER_FRAME_BYTES, type ProjectInput, SocketCloseCode, UsherError } from '@usher/protocol';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { WebSocket } from 'ws';
import { type AuthContext, selectSocketProtocol } from './api/auth.ts';
import type { ApiContext } from './api/context.ts';
import { installErrorHandling, toUsherError } from './api/errors.ts';
import { OriginPolicy } from './api/origins.ts';
import { adminKeyRoutes } from './api/routes/admin-keys.ts';
import { healthRoutes } from './api/routes/health.ts';
import { messageRoutes } from './api/routes/messages.ts';
import { metricsRoutes } from './api/routes/metrics.ts';
import { operationRoutes } from './api/routes/operations.ts';
import { projectRoutes } from './api/routes/projects.ts';
import { serverRoutes } from './api/routes/servers.ts';
import { sessionRoutes } from './api/routes/sessions.ts';
import { webRoutes } from './api/routes/web.ts';
import { webhookRoutes } from './api/routes/webhooks.ts';
import { workerRoutes } from './api/routes/workers.ts';
import { SessionRateLimiter, type SessionRateOptions } from './api/session-rate.ts';
import { installJsonParser, installUrlGuard, installValidation } from './api/validation.ts';
import { AdminKeys } from './auth/admin-keys.ts';
import { TokenIssuer } from './auth/tokens.ts';
import { type Bus, localBus, PostgresBus } from './cluster/bus.ts';
import { ServerRegistry } from './cluster/registry.ts';
import type { WorkerDriver } from './drivers/driver.ts';
import { ExternalDriver } from './drivers/external.ts';
import type { KubernetesSettings } from './drivers/kubernetes-settings.ts';
import { ProcessDriver } from './drivers/process.ts';
import { type Clock, systemClock } from './engine/clock.ts';
import { Engine, type EngineOptions } from './engine/engine.ts';
import { EventHub } from './engine/event-hub.ts';
import type { LiveKitSettings } from './livekit/config.ts';
import { LiveKitMode, RECORDED_ROOM_STATES } from './livekit/mode.ts';
import { liveKitWebhookRoute } from './livekit/webhooks.ts';
import { Observability } from './observability/observability.ts';
import { eventsSocketRoute } from './realtime/events-socket.ts';
import { failedOnServer } from './realtime/frames.ts';
import { Keepalive } from './realtime/keepalive.ts';
import {
  BucketMap,
  DEFAULT_JOIN_RATE,
  DEFAULT_MESSAGE_RATE,
  DEFAULT_ROOM_MESSAGE_RATE,
  MESSAGE_RATE_KEYS,
  type RateLimit,
  roomSender,
  SIGNALLING_RATE,
} from './realtime/rate-limit.ts';
import { sessionSocketRoute } from './realtime/session-socket.ts';
import { SignallingRelay } from './realtime/signalling/relay.ts';
import { streamerSocketRoute } from './realtime/signalling/streamer-socket.ts';
import { workerSocketRoute } from './realtime/worker-socket.ts';
import { AdminKeyStore } from './storage/admin-keys.ts';
import { PostgresDb } from './storage/postgres.ts';
import { openStore, type StorageOptions, Store } from './storage/store.ts';
import { type Logger, silentLogger } from './util/logger.ts';
import { scrubSecrets } from './util/redact.ts';
import { resolveEndpoints, type WebhookEndpoint } from './webhooks/endpoints.ts';
import { type WebhookDeliveryOptions, Webhooks } from './webhooks/service.ts';

export const VERSION = '0.1.0';

export interface UsherServerOptions {
  /** where sessions, workers and timers are kept: a SQLite file or a PostgreSQL URL, or an open Store */
  storage: StorageOptions | Store;
  host?: string;
  /** 0 picks a free port */
  port?: number;
  /**
   * The URL clients and workers use to reach this server. Without it, callers are handed URLs at the address
   * they reached (their request's scheme and Host), and the workers it starts http://host:port.
   */
  publicUrl?: string;
  /**
   * Admin API keys given in configuration (held as hashes in memory). More can be made, listed and revoked
   * through /admin-keys (docs/security.md). When none is given and none is stored, the first start makes one
   * named "bootstrap": its value is `generatedAdminKey`, for the caller to show once; it is never logged.
   */
  adminKeys?: readonly string[];
  /** the secret that signs tokens (at least 32 characters); default: one generated once and kept in the database */
  secret?: string;
  /** the clock for session deadlines (tests pass a ManualClock) */
  clock?: Clock;
  log?: Logger;
  /** this server's id; default host:port, stable across restarts */
  serverId?: string;
  /** worker drivers by name; `process` and `external` are built in */
  drivers?: Partial<Record<'process' | 'external' | 'kubernetes', WorkerDriver>>;
  /**
   * The Kubernetes driver's settings (docs/kubernetes.md): projects with `worker.driver: kubernetes` get a Pod
   * and a Secret per worker. Ignored when `drivers.kubernetes` is given.
   */
  kubernetes?: KubernetesSettings;
  /** projects declared in configuration: created when missing, updated when present */
  projects?: readonly ProjectInput[];
  /**
   * The `peerConnectionOptions` every Pixel Streaming `config` message carries (an RTCConfiguration: STUN and
   * TURN servers). Default: none, which suffices on one network.
   */
  peerConnectionOptions?: Record<string, unknown>;
  /**
   * How often participants' sockets are pinged (real time); one that has not answered the previous ping is
   * dropped as 1006, which opens its reconnect window. Default 20 s; 0 turns it off.
   */
  keepaliveMs?: number;
  /** a folder of pages served at `/` (the demo's); the Web SDK is always served at `/sdk/usher.js` */
  pagesRoot?: string;
  /**
   * LiveKit mode (docs/livekit.md): the LiveKit server that holds the rooms of projects with `rooms: livekit`.
   * A LiveKitMode instance may be passed instead of settings (tests inject a recorder room that way).
   */
  livekit?: LiveKitSettings | LiveKitMode;
  /**
   * On PostgreSQL, whether this server is one of several sharing the database (default true): events and
   * worker frames then travel between them as notifications (docs/scaling.md). False for a server that is
   * known to be alone, which saves a notification per event.
   */
  cluster?: boolean;
  /**
   * How often this server refreshes its row in the servers table (default 5 s); a server not seen for three
   * times as long is taken for dead, and another adopts its viewers and workers.
   */
  serverHeartbeatMs?: number;
  /** room messages each participant may send, its sockets on this server together (default 50 a second, bursts of 100) */
  messageRate?: RateLimit;
  /**
   * room messages all of a session's participants may send together (the agent's aside), on top of each one's
   * (default 500 a second, bursts of 1,000)
   */
  roomMessageRate?: RateLimit;
  /**
   * tokens for new participants (POST /sessions/{id}/join) a session's participants may ask for; admin keys are
   * not limited (default 1 a second, bursts of 20)
   */
  joinRate?: RateLimit;
  /** Pixel Streaming signalling messages a viewer's socket may send (default 20 a second, bursts of 200) */
  signallingRate?: RateLimit;
  /** the largest HTTP body accepted, in bytes (default 1 MiB) */
  bodyLimitBytes?: number;
  /**
   * How many bytes of events an operator event socket (`GET /events/ws`) may have waiting to be sent before it
   * is closed with 4101 as too slow (default 4 MiB): a slow dashboard never holds up the server.
   */
  eventsSocketMaxBufferedBytes?: number;
  /**
   * Whether to believe X-Forwarded-For (and -Host, -Proto) from the peer: true for any peer, or the proxies'
   * addresses and CIDR ranges (a list, or comma-separated), as Fastify's trustProxy. Default false: the client
   * is the socket's peer. Per-client rate limits need it behind a load balancer.
   */
  trustProxy?: boolean | string | readonly string[];
  /**
   * Web pages of other origins that may call the API and open session sockets from a browser: exact origins
   * (`https://app.example.com`) or `*`. Default none: only pages this server serves (same origin). Clients that
   * send no Origin (workers, backends) are not concerned.
   */
  allowedOrigins?: readonly string[];
  /** limits on POST /sessions per client address and per project (docs/security.md) */
  sessionRate?: SessionRateOptions;
  /**
   * GET /metrics (Prometheus, docs/observability.md): it needs an admin key unless `public` is true (for a scraper
   * on a private network that cannot send one).
   */
  metrics?: { public?: boolean };
  /**
   * Signed POSTs of session events to these endpoints, with retries and a durable delivery log
   * (docs/webhooks.md). Secrets stay in the configuration: they are never stored or logged.
   */
  webhooks?: readonly WebhookEndpoint[];
  /** how webhook deliveries are made: attempts, timeout, retry schedule, retention (docs/webhooks.md) */
  webhookDelivery?: WebhookDeliveryOptions;
  engine?: Partial<
    Omit<
      EngineOptions,
      'store' | 'clock' | 'hub' | 'tokens' | 'drivers' | 'log' | 'serverId' | 'workerUrl' | 'signallingUrl'
    >
  >;
}

export class UsherServer {
  readonly options: UsherServerOptions;
  readonly hub = new EventHub();
  #app: FastifyInstance | null = null;
  #engine: Engine | null = null;
  #store: Store | null = null;
  #ownsStore = false;
  #drivers: Record<string, WorkerDriver> = {};
  #url: string | null = null;
  #adminKey: string | null = null;
  #closing: Promise<void> | null = null;
  /** the WebSockets' close handshakes, once closing has begun */
  #socketsClosed: Promise<void> = Promise.resolve();
  #keepalive: Keepalive | null = null;
  #livekit: LiveKitMode | null = null;
  #bus: Bus | null = null;
  #registry: ServerRegistry | null = null;
  #draining: Promise<{ remaining: number }> | null = null;
  #observability: Observability | null = null;
  #webhooks: Webhooks | null = null;

  constructor(options: UsherServerOptions) {
    this.options = options;
  }

  /** The engine (available after listen()). */
  get engine(): Engine {
    if (!this.#engine) throw new Error('the server is not listening yet: call listen() first');
    return this.#engine;
  }

  get app(): FastifyInstance {
    if (!this.#app) throw new Error('the server is not listening yet: call listen() first');
    return this.#app;
  }

  /** http://host:port (available after listen()). */
  get url(): string {
    if (!this.#url) throw new Error('the server is not listening yet: call listen() first');
    return this.#url;
  }

  /** Webhooks: the delivery log, and settled() for tests (available after listen()). */
  get webhooks(): Webhooks {
    if (!this.#webhooks) throw new Error('the server is not listening yet: call listen() first');
    return this.#webhooks;
  }

  /** What the server observes of itself: its Prometheus metrics, its sessions' pools (after listen()). */
  get observability(): Observability {
    if (!this.#observability) throw new Error('the server is not listening yet: call listen() first');
    return this.#observability;
  }

  /**
   * The admin key made on first start (named "bootstrap") when none was configured or stored, else null. It is
   * stored only as a hash and never logged: show it once to whoever started the server.
   */
  get generatedAdminKey(): string | null {
    return this.#adminKey;
  }

  async listen(): Promise<{ url: string }> {
    const o = this.options;
    const clock = o.clock ?? systemClock;
    resolveEndpoints(o.webhooks ?? []); // a mistake in them stops the start before anything is opened
    if (o.storage instanceof Store) this.#store = o.storage;
    else {
      this.#store = await openStore(o.storage, () => clock.now());
      this.#ownsStore = true;
    }
    const store = this.#store;
    // metrics, and log lines that name a session or worker completed with its project
    const observability = new Observability({
      store,
      hub: this.hub,
      log: o.log ?? silentLogger,
      projects: () => this.#engine?.listProjects() ?? [],
    });
    this.#observability = observability;
    const log = observability.log;
    const secret =
      o.secret ?? (await store.read.getOrInitSetting('token_secret', randomBytes(32).toString('base64url')));
    const tokens = new TokenIssuer(secret, () => clock.now());
    const adminKeys = new AdminKeys(o.adminKeys ?? [], {
      store: new AdminKeyStore(store.db),
      now: () => clock.now(),
      // the other servers drop the key from their caches at once (their cache expiry is the backstop)
      onRevoked: (keyId) => this.#bus?.send({ kind: 'admin_key_revoked', keyId }),
    });
    const bootstrap = await adminKeys.bootstrap();
    if (bootstrap) {
      this.#adminKey = bootstrap.key;
      log.warn(
        { keyId: bootstrap.id, prefix: bootstrap.prefix },
        'no admin key was configured or stored: made one named "bootstrap"; its value goes to whoever started the server, never to the log (rotate it: docs/security.md)',
      );
    }
    const auth: AuthContext = { adminKeys, tokens };

    const processDriver =
      o.drivers?.process ??
      new ProcessDriver({
        // a worker may print its URLs or environment: what looks like a token or key is hidden
        logger: (workerId, stream, line) => log.info({ workerId, stream }, scrubSecrets(line)),
      });
    const externalDriver = o.drivers?.external ?? new ExternalDriver();
    this.#drivers = { process: processDriver, external: externalDriver };
    const kubernetesDriver =
      o.drivers?.kubernetes ?? (o.kubernetes ? await kubernetesFrom(o.kubernetes, log) : null);
    if (kubernetesDriver) this.#drivers.kubernetes = kubernetesDriver;

    const app = Fastify({
      bodyLimit: o.bodyLimitBytes ?? 1024 * 1024,
      trustProxy: (o.trustProxy ?? false) as boolean | string | string[],
      logController: new LogController({ disableRequestLogging: true }),
      // a closing server answers with UNAVAILABLE in Usher's error shape (the onRequest hook below)
      return503OnClosing: false,
      forceCloseConnections: true,
      // ids are at most 200 characters (IdParams): longer ones get Usher's 400, not the router's 414
      routerOptions: { maxParamLength: 256 },
      // errors the router raises before any route (a path that is not valid percent-encoding) in Usher's shape
      frameworkErrors: (err, _req, reply) => {
        const ue = toUsherError(err);
        void (reply as unknown as FastifyReply).status(ue.status).send(ue.toBody());
      },
      ...(o.log ? { loggerInstance: o.log as unknown as FastifyBaseLogger } : { logger: false }),
    }) as unknown as FastifyInstance;
    this.#app = app;
    installValidation(app);
    installJsonParser(app);
    installUrlGuard(app);
    installErrorHandling(app);
    app.addHook('onRequest', (_req, _reply, done) => {
      if (this.#closing)
        done(new UsherError('UNAVAILABLE', 'the server is shutting down: try again, or another server'));
      else done();
    });
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Usher',
          version: VERSION,
          description: 'Session orchestrator for GPU-streamed apps and realtime agents',
        },
        components: {
          securitySchemes: {
            bearer: { type: 'http', scheme: 'bearer', description: 'admin API key or session token' },
          },
        },
        security: [{ bearer: [] }],
      },
      // @fastify/websocket hides WebSocket routes; they are part of the API (SPEC §8), so list them as the
      // GET that upgrades
      transform: ({ schema, url, route }) =>
        route.websocket
          ? {
              schema: { ...schema, hide: false, summary: 'WebSocket: upgrade with GET' },
              url,
            }
          : { schema, url },
    });
    await app.register(websocket, {
      // a browser may offer its credential as a `bearer.` subprotocol beside `usher`, which is the one selected
      options: { maxPayload: MAX_WORKER_FRAME_BYTES, handleProtocols: selectSocketProtocol },
      // every socket hears that the server is going away and may come back: viewers and workers reconnect
      preClose: (done) => {
        const wss = app.websocketServer;
        this.#socketsClosed = closeSockets([...wss.clients]);
        wss.close(() => {});
        done();
      },
    });
    const origins = new OriginPolicy(o.allowedOrigins ?? [], o.publicUrl);
    if (origins.crossOrigin)
      await app.register(cors, {
        origin: (origin, cb) => cb(null, origins.corsOrigin(origin)),
        methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'],
        allowedHeaders: ['authorization', 'content-type', 'x-api-key'],
        // a page told 429 RATE_LIMITED can read how long to wait
        exposedHeaders: ['retry-after'],
        maxAge: 600,
      });
    // browsers apply no CORS to WebSockets: an upgrade from another origin's page is refused here (403) unless
    // allowed. Worker endpoints are dialled by processes, not pages, and authenticate with worker tokens.
    app.addHook('onRequest', async (req) => {
      if (req.ws && !WORKER_SOCKETS.has(req.routeOptions.url ?? '')) await origins.socketGuard(req);
    });
    // a plain GET of a WebSocket endpoint (a browser tab, curl) is told what it is, instead of an empty 404
    const socketRoutes = new Set<string>();
    app.addHook('onRoute', (route) => {
      if (route.websocket) socketRoutes.add(route.url);
    });
    app.addHook('onRequest', (req, _reply, done) => {
      if (!req.ws && socketRoutes.has(req.routeOptions.url ?? ''))
        done(
          new UsherError(
            'BAD_REQUEST',
            `${req.routeOptions.url} is a WebSocket endpoint: open it with a WebSocket client (a GET with Upgrade: websocket)`,
          ),
        );
      else done();
    });

    const livekit =
      o.livekit instanceof LiveKitMode
        ? o.livekit
        : o.livekit
          ? new LiveKitMode({
              settings: o.livekit,
              tokenTtlMs: o.engine?.sessionTokenTtlMs ?? 3_600_000,
              now: () => clock.now(),
            })
          : null;
    this.#livekit = livekit;
    const serverId = o.serverId ?? `${hostname()}:${o.port ?? 8080}`;
    // servers that share a PostgreSQL database hear each other's events through it
    const shared = store.db instanceof PostgresDb && o.cluster !== false;
    const bus = shared ? await PostgresBus.open(store.db as PostgresDb, serverId, log) : localBus;
    this.#bus = bus;
    this.hub.connect(bus, serverId);
    this.hub.onListenerError((err) => log.error({ err }, 'an event listener failed'));
    const registry = new ServerRegistry(store.db, serverId, { heartbeatMs: o.serverHeartbeatMs, log });
    this.#registry = registry;
    const webhooks = new Webhooks({
      db: store.db,
      hub: this.hub,
      sessions: observability.sessions,
      clock,
      serverId,
      endpoints: o.webhooks ?? [],
      delivery: o.webhookDelivery,
      log,
      shared,
      userAgent: `Usher/${VERSION} (webhooks)`,
    });
    this.#webhooks = webhooks;
    let baseUrl = '';
    /**
     * The base of the URLs handed to a caller: the public URL when one is set, else where the caller reached this
     * server (its request's scheme and Host). A page of http://localhost:8080 is handed ws://localhost:8080/…,
     * which its origin may open, and a client on another machine an address it can dial, not the listen address.
     */
    const baseFor = (req: FastifyRequest | undefined): string =>
      !o.publicUrl && req && HOST.test(req.host ?? '') ? `${req.protocol}://${req.host}` : baseUrl;
    const engine = new Engine({
      // another server's deadlines are seen within a second (it may have died before they came due)
      ...(shared ? { timerPollMs: 1_000 } : {}),
      ...o.engine,
      bus,
      aliveServers: () => registry.alive(),
      livekit,
      store,
      clock,
      hub: this.hub,
      tokens,
      drivers: observability.drivers(this.#drivers),
      log,
      serverId,
      workerUrl: () => `${toWs(baseUrl)}/workers/ws`,
      signallingUrl: () => `${toWs(baseUrl)}/workers/signalling`,
      sessionCreated: (s) =>
        observability.sessions.learn(s.id, {
          projectId: s.projectId,
          region: s.region,
          createdAt: s.createdAt,
          queuedAt: s.queuedAt,
          activeAt: s.activeAt,
          endedAt: s.endedAt,
        }),
    });
    this.#engine = engine;
    observability.watchRecorder(engine.recorder);
    registry.onDeadServer((dead, how) => {
      this.hub.forgetServer(dead);
      return engine.adoptServer(dead, how);
    });
    registry.onReclaimed(() => engine.reclaim());
    bus.onMessage((m) => {
      if (m.kind === 'recorders_left') livekit?.resume(m.sessionIds);
    });
    const messageRate = new BucketMap(
      o.messageRate ?? DEFAULT_MESSAGE_RATE,
      performance.now.bind(performance),
      MESSAGE_RATE_KEYS,
    );
    const roomMessageRate = new BucketMap(
      o.roomMessageRate ?? DEFAULT_ROOM_MESSAGE_RATE,
      performance.now.bind(performance),
      MESSAGE_RATE_KEYS,
    );
    livekit?.attach({
      log,
      // the agent is in the LiveKit room and has the packet already
      message: (sessionId, m) => {
        // a participant may publish data as fast as LiveKit lets it: the room message limit holds here too
        if (
          m.from.kind !== 'agent' &&
          (messageRate.take(roomSender(sessionId, m.from.identity)) > 0 ||
            roomMessageRate.take(sessionId) > 0)
        ) {
          log.debug({ sessionId, from: m.from.identity }, 'a LiveKit room message over the rate was dropped');
          return;
        }
        engine.rooms
          .relayMessage(sessionId, m.from, m.type, m.data, { toWorker: false })
          .catch((err) =>
            !failedOnServer(err)
              ? log.warn(
                  { sessionId, from: m.from.identity, problem: err.message },
                  'a LiveKit room message was dropped',
                )
              : log.error({ err, sessionId }, 'a LiveKit room message could not be relayed'),
          );
      },
      participantJoined: (sessionId, p) => engine.rooms.participantJoined(sessionId, p),
      // whichever server LiveKit's webhook reaches: the participant joined through another one, maybe
      participantLeft: (sessionId, p) => engine.rooms.leftEverywhere(sessionId, p.identity),
      roomFinished: async (sessionId) => {
        const s = await engine.store.read.getSession(sessionId);
        // a room LiveKit made for someone who joined early (the session queued) is not the session's yet
        if (s && s.state !== 'ending' && RECORDED_ROOM_STATES.has(s.state))
          await engine.endSession(sessionId, 'livekit:room_finished');
      },
      sessionState: async (sessionId) => (await engine.store.read.getSession(sessionId))?.state,
      roomOptions: async (sessionId) => {
        const s = await engine.store.read.getSession(sessionId);
        const p = s && engine.findProject(s.projectId)?.settings;
        return p ? { departureTimeoutS: Math.max(1, Math.ceil(p.timeouts.reconnectWindowMs / 1000)) } : {};
      },
    });
    processDriver.onExit(
      (exit) =>
        void engine.onWorkerExit(exit).catch((err) => log.error({ err }, 'worker exit handling failed')),
    );
    externalDriver.onExit(
      (exit) =>
        void engine.onWorkerExit(exit).catch((err) => log.error({ err }, 'worker exit handling failed')),
    );
    kubernetesDriver?.onExit(
      (exit) =>
        void engine.onWorkerExit(exit).catch((err) => log.error({ err }, 'worker exit handling failed')),
    );

    bus.onMessage((m) => {
      if (m.kind === 'admin_key_revoked') adminKeys.forget(m.keyId);
      if (m.kind === 'drain' && m.serverId === serverId)
        void this.drain().catch((err) => log.error({ err }, 'draining failed'));
    });
    const relay = new SignallingRelay({
      peerConnectionOptions: o.peerConnectionOptions,
      log,
      bus,
      serverId,
      onDisconnectPlayer: (sessionId, reason) =>
        void engine
          .endSession(sessionId, `worker:disconnect_player: ${reason}`)
          .catch((err) => log.warn({ err, sessionId }, 'disconnectPlayer could not end the session')),
    });
    const keepalive = new Keepalive(o.keepaliveMs ?? 20_000);
    this.#keepalive = keepalive;
    const ctx: ApiContext = {
      engine,
      auth,
      relay,
      keepalive,
      messageRate,
      roomMessageRate,
      joinRate: new BucketMap(o.joinRate ?? DEFAULT_JOIN_RATE, performance.now.bind(performance)),
      signallingRate: o.signallingRate ?? SIGNALLING_RATE,
      sessionRate: new SessionRateLimiter(
        o.sessionRate,
        // an empty list trusts no proxy
        Array.isArray(o.trustProxy) ? o.trustProxy.length > 0 : Boolean(o.trustProxy),
        () => clock.now(),
        log,
      ),
      workerSocketUrl: (req) => `${toWs(baseFor(req))}/workers/ws`,
      signallingUrl: (req) => `${toWs(baseFor(req))}/workers/signalling`,
      version: VERSION,
      servers: {
        selfId: serverId,
        list: () => registry.list(),
        drain: (id) => {
          if (id === serverId) void this.drain().catch((err) => log.error({ err }, 'draining failed'));
          else bus.send({ kind: 'drain', serverId: id });
        },
      },
      sessionSocketUrl: (id, req) => `${toWs(baseFor(req))}/sessions/${encodeURIComponent(id)}/ws`,
    };
    // requests wait until the engine has recovered what an earlier run left (projects, viewers, workers)
    const started = Promise.withResolvers<void>();
    started.promise.catch(() => {});
    app.addHook('onRequest', async () => {
      await started.promise;
    });
    await app.register(async (scope) => {
      healthRoutes(scope, ctx);
      sessionRoutes(scope, ctx);
      messageRoutes(scope, ctx);
      if (livekit)
        await liveKitWebhookRoute(scope, {
          receiver: livekit.webhooks,
          onEvent: (e) => livekit.onWebhook(e),
        });
      projectRoutes(scope, ctx);
      workerRoutes(scope, ctx);
      serverRoutes(scope, ctx);
      operationRoutes(scope, ctx);
      metricsRoutes(scope, ctx, observability.metrics, o.metrics);
      webhookRoutes(scope, { auth, webhooks });
      adminKeyRoutes(scope, { auth });
      sessionSocketRoute(scope, ctx);
      eventsSocketRoute(scope, ctx, {
        sessions: observability.sessions,
        maxBufferedBytes: o.eventsSocketMaxBufferedBytes,
      });
      workerSocketRoute(scope, ctx);
      streamerSocketRoute(scope, ctx);
      await webRoutes(scope, o.pagesRoot);
      scope.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
    });

    const address = await app.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 8080 });
    this.#url = address.replace('[::1]', 'localhost');
    baseUrl = (o.publicUrl ?? this.#url).replace(/\/$/, '');

    try {
      // webhooks hear what the engine does from its first step (recovery included)
      await webhooks.start();
      await engine.start();
      await registry.start(baseUrl, VERSION);
      if (bus instanceof PostgresBus) {
        // events cross between servers only while there are others: a server alone pays nothing for the bus
        bus.setPeers((await registry.alive()).size > 1);
        registry.onBeat((alive) => {
          bus.setPeers(alive.size > 1);
          this.hub.beat(alive);
        });
        bus.send({ kind: 'hello', serverId });
      }
      started.resolve();
    } catch (err) {
      started.reject(err);
      throw err;
    }
    for (const p of o.projects ?? []) {
      const exists = engine.listProjects().some((x) => x.settings.id === p.id);
      if (exists && p.id) await engine.updateProject(p.id, p);
      else await engine.createProject(p);
    }
    if (kubernetesDriver) await reapOrphanPods(kubernetesDriver, engine, log);
    return { url: this.#url };
  }

  /**
   * Drains this server: it answers /readyz with 503, takes no new sessions and starts no workers; the workers it
   * started finish their sessions and stop. Resolves when they are gone, or after `timeoutMs` (default 30 s)
   * with how many are left. Sessions on other workers are not waited for: their participants and workers
   * reconnect to another server when this one closes. Call close() next.
   */
  drain(options: { timeoutMs?: number } = {}): Promise<{ remaining: number }> {
    this.#draining ??= (async () => {
      const timeoutMs = options.timeoutMs ?? 30_000;
      this.options.log?.info(
        { timeoutMs },
        'draining: no new sessions; waiting for the sessions of this server’s workers',
      );
      // the engine refuses new sessions from this moment on
      const drained = this.engine.drainServer(timeoutMs);
      await this.#registry?.markDraining().catch(() => {});
      return drained;
    })();
    return this.#draining;
  }

  /** Stops accepting connections, stops the engine's timers and every worker this server started. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#keepalive?.close();
      // a closing server adopts no other (it would take the watches with it). Nothing is awaited before the
      // app closes: a wait here let a socket in during it that app.close() then waited on for ever
      this.#registry?.stopAdopting();
      // the workers whose sockets close now stay marked as this server's, for the server that adopts it
      this.#engine?.leaving();
      await this.#app?.close();
      // what each socket's end sets off (a viewer's reconnect window, a worker's detach, a participant's
      // departure) is done before the engine and the store close
      await this.#socketsClosed;
      // the workers this server started that its drivers stop on close (child processes) are recorded as stopped
      // while the engine runs (nobody would adopt them once this server's row is gone); the drivers stop them below
      await this.#engine
        ?.retireOwnWorkers()
        .catch((err) => this.options.log?.error({ err }, 'recording the stopping workers failed'));
      await this.#registry?.stop();
      await this.#engine?.close();
      this.#observability?.close();
      await this.#webhooks?.close();
      // the rooms this server's recorder leaves get one from another server
      const left = (await this.#livekit?.stop()) ?? [];
      if (left.length > 0) this.#bus?.send({ kind: 'recorders_left', sessionIds: left });
      await this.#bus?.close();
      await Promise.all(Object.values(this.#drivers).map((d) => d.close()));
      if (this.#ownsStore) await this.#store?.close();
    })();
    return this.#closing;
  }
}

/** How long a closing server waits for its sockets' close handshakes before it cuts them. */
const SHUTDOWN_HANDSHAKE_MS = 2_000;

/** Closes the sockets with 1012 and resolves once each has closed (cut after SHUTDOWN_HANDSHAKE_MS). */
async function closeSockets(sockets: WebSocket[]): Promise<void> {
  const closed = sockets.map((s) =>
    s.readyState === s.CLOSED ? null : new Promise((resolve) => s.once('close', resolve)),
  );
  for (const s of sockets) s.close(SocketCloseCode.ServerShutdown, 'the server is restarting');
  const late = setTimeout(() => {
    for (const s of sockets) s.terminate();
  }, SHUTDOWN_HANDSHAKE_MS);
  await Promise.all(closed);
  clearTimeout(late);
}

/** The WebSocket endpoints of workers: not for browsers, so not subject to allowedOrigins. */
const WORKER_SOCKETS = new Set(['/workers/ws', '/workers/signalling']);

/** A Host header fit to put in a URL: a name or an address, and a port. */
const HOST = /^(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

function toWs(httpUrl: string): string {
  return httpUrl.replace(/^http/, 'ws');
}

/** The Kubernetes driver from settings; its client is loaded only by a server that uses it (it loads slowly). */
async function kubernetesFrom(settings: KubernetesSettings, log: Logger): Promise<WorkerDriver> {
  const { KubernetesDriver } = await import('./drivers/kubernetes.ts');
  const driver = KubernetesDriver.fromSettings(settings, { log });
  driver.onProgress((p) => {
    const { workerId, pod, step, node, reason, message } = p;
    if (step === 'waiting') log.info({ workerId, pod, reason, message }, 'worker pod waiting');
    else log.debug({ workerId, pod, step, node, reason }, 'worker pod progress');
  });
  return driver;
}

/** What a driver that can find workers it left behind (the Kubernetes one) offers at start-up. */
interface OrphanReaper {
  reapOrphans(
    isKnown: (workerId: string) => Promise<boolean>,
    namespaces: Iterable<string>,
  ): Promise<string[]>;
}

/**
 * Start-up, after the engine has recovered the workers it knows: worker pods whose worker is no longer live in
 * the database (a server died between creating a pod and recording it, or its database was replaced) go.
 */
async function reapOrphanPods(driver: WorkerDriver, engine: Engine, log: Logger): Promise<void> {
  const reaper = driver as WorkerDriver & Partial<OrphanReaper>;
  if (typeof reaper.reapOrphans !== 'function') return;
  const namespaces = engine.listProjects().flatMap((p) => {
    const w = p.settings.worker;
    return w?.driver === 'kubernetes' && w.namespace ? [w.namespace] : [];
  });
  try {
    const reaped = await reaper.reapOrphans(async (id) => {
      const w = await engine.store.read.getWorker(id);
      return w !== undefined && w.state !== 'stopped';
    }, namespaces);
    if (reaped.length > 0) log.warn({ pods: reaped }, 'deleted orphaned worker pods');
  } catch (err) {
    log.error({ err }, 'could not look for orphaned worker pods');
  }
}
