// Project settings: the schema the API validates against, their defaults, and the seed's YAML timeouts shape.
import Type, { type Static } from 'typebox';

/**
 * The longest any timeout may be: 30 days. Deadlines are instants stored with the session, and a longer one
 * would run past what dates and the database's integers hold.
 */
export const MAX_TIMEOUT_MS = 30 * 86_400_000;

/** The `ending` state's cleanup limit. Not configurable (SPEC §3); `shutdownGraceMs` fits within it. */
export const ENDING_TIMEOUT_MS = 60_000;

const Ms = (description: string, minimum = 0, maximum = MAX_TIMEOUT_MS) =>
  Type.Integer({ minimum, maximum, description });

export const ProjectId = Type.String({
  pattern: '^[a-z0-9][a-z0-9-]{0,62}$',
  description: 'Lower-case letters, digits and dashes; 1 to 63 characters.',
});
export const RegionName = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' });

export const Timeouts = Type.Object(
  {
    pendingMs: Ms('requesting + queued; on expiry 4001 pending_timeout', 1),
    connectingMs: Ms('connecting; on expiry 4003 connecting_timeout', 1),
    seatHoldMs: Ms('worker ready but viewer not attached; on expiry 4005 seat_expired', 1),
    afkWarningMs: Ms('no viewer input while active, then idle + warning', 1),
    afkDisconnectMs: Ms('after the AFK warning; on expiry 4004 afk_timeout', 1),
    idleMs: Ms('agent sessions: no activity at all; on expiry 4004 idle_timeout', 1),
    pausedMs: Ms('paused; on expiry 4004 paused_timeout', 1),
    maxRuntimeMs: Ms('from first active; 0 = no limit; on expiry 4004 max_runtime'),
    reconnectWindowMs: Ms('viewer link lost; on expiry 4007 reconnect_failed', 1),
    shutdownGraceMs: Ms(
      'how long a worker may take to stop after shutdown; at most the 60 s ending limit',
      0,
      ENDING_TIMEOUT_MS,
    ),
  },
  { additionalProperties: false },
);
export type Timeouts = Static<typeof Timeouts>;

export const DEFAULT_TIMEOUTS: Timeouts = Object.freeze({
  pendingMs: 300_000,
  connectingMs: 120_000,
  seatHoldMs: 60_000,
  afkWarningMs: 120_000,
  afkDisconnectMs: 30_000,
  idleMs: 1_800_000,
  pausedMs: 900_000,
  maxRuntimeMs: 1_800_000,
  reconnectWindowMs: 60_000,
  shutdownGraceMs: 10_000,
});

export const Pool = Type.Object(
  {
    min: Type.Integer({ minimum: 0, maximum: 10_000, description: 'workers kept warm and ready' }),
    max: Type.Integer({
      minimum: 0,
      maximum: 10_000,
      description: 'workers in total (the seed\'s "worker count")',
    }),
  },
  { additionalProperties: false },
);
export type Pool = Static<typeof Pool>;

export const WorkerSpec = Type.Union([
  Type.Object(
    {
      driver: Type.Literal('process'),
      command: Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        description: 'argv of the worker command',
      }),
      env: Type.Optional(Type.Record(Type.String(), Type.String())),
      cwd: Type.Optional(Type.String()),
    },
    { additionalProperties: false },
  ),
  Type.Object({ driver: Type.Literal('external') }, { additionalProperties: false }),
  Type.Object(
    {
      driver: Type.Literal('kubernetes'),
      image: Type.String({ minLength: 1 }),
      command: Type.Optional(Type.Array(Type.String())),
      namespace: Type.Optional(Type.String()),
      resources: Type.Optional(Type.Record(Type.String(), Type.Record(Type.String(), Type.String()))),
      nodeSelector: Type.Optional(Type.Record(Type.String(), Type.String())),
      tolerations: Type.Optional(Type.Array(Type.Record(Type.String(), Type.Unknown()))),
      env: Type.Optional(Type.Record(Type.String(), Type.String())),
    },
    { additionalProperties: false },
  ),
]);
export type WorkerSpec = Static<typeof WorkerSpec>;

export const ProjectKind = Type.Union([Type.Literal('stream'), Type.Literal('agent')]);
export type ProjectKind = Static<typeof ProjectKind>;

/** Where a session's room lives: Usher's own WebSocket relay, or a LiveKit room (docs/livekit.md). */
export const RoomsMode = Type.Union([Type.Literal('builtin'), Type.Literal('livekit')], {
  description:
    "builtin: Usher's own WebSocket relay; livekit: a LiveKit room (needs the server's livekit settings)",
});
export type RoomsMode = Static<typeof RoomsMode>;

export const Project = Type.Object(
  {
    id: ProjectId,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    kind: ProjectKind,
    enabled: Type.Boolean(),
    public: Type.Boolean({ description: 'viewers may create sessions without an admin key' }),
    worker: Type.Union([WorkerSpec, Type.Null()], {
      description: 'null: no runnable app (sessions end 4002)',
    }),
    agentTypes: Type.Array(Type.String({ minLength: 1 }), {
      description: 'agent types a session may ask for; empty: any',
    }),
    regions: Type.Record(RegionName, Pool),
    defaultRegion: RegionName,
    timeouts: Timeouts,
    afkEnabled: Type.Boolean(),
    maxQueueLength: Type.Integer({ minimum: 0 }),
    reuseWorkers: Type.Boolean({ description: 'keep a worker for the next session instead of recycling it' }),
    rooms: RoomsMode,
    autoRestart: Type.Object(
      { enabled: Type.Boolean(), maxRestarts: Type.Integer({ minimum: 0, maximum: 100 }) },
      { additionalProperties: false },
    ),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type Project = Static<typeof Project>;

/** A timeout of the seed's YAML shape: seconds, fractional allowed, up to the same 30 days. */
const Seconds = () => Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: MAX_TIMEOUT_MS / 1000 }));

/** The agent seed's YAML shape, in seconds: `session: { timeouts: { pending, connecting, idle, paused } }`. */
export const SeedSessionBlock = Type.Object(
  {
    timeouts: Type.Optional(
      Type.Object(
        { pending: Seconds(), connecting: Seconds(), idle: Seconds(), paused: Seconds() },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type SeedSessionBlock = Static<typeof SeedSessionBlock>;

/** What a client sends to create or update a project: every setting optional, plus the seed's block. */
export const ProjectInput = Type.Object(
  {
    id: Type.Optional(ProjectId),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    kind: Type.Optional(ProjectKind),
    enabled: Type.Optional(Type.Boolean()),
    public: Type.Optional(Type.Boolean()),
    worker: Type.Optional(Type.Union([WorkerSpec, Type.Null()])),
    agentTypes: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    regions: Type.Optional(Type.Record(RegionName, Pool)),
    defaultRegion: Type.Optional(RegionName),
    timeouts: Type.Optional(Type.Partial(Timeouts, { additionalProperties: false })),
    session: Type.Optional(SeedSessionBlock),
    afkEnabled: Type.Optional(Type.Boolean()),
    maxQueueLength: Type.Optional(Type.Integer({ minimum: 0 })),
    reuseWorkers: Type.Optional(Type.Boolean()),
    rooms: Type.Optional(RoomsMode),
    autoRestart: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(Type.Boolean()),
          maxRestarts: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type ProjectInput = Static<typeof ProjectInput>;

export const DEFAULT_PROJECT = Object.freeze({
  kind: 'stream' as ProjectKind,
  enabled: true,
  public: false,
  worker: null,
  agentTypes: [] as string[],
  regions: { default: { min: 1, max: 2 } } as Record<string, Pool>,
  defaultRegion: 'default',
  afkEnabled: true,
  maxQueueLength: 1000,
  reuseWorkers: false,
  rooms: 'builtin' as RoomsMode,
  autoRestart: { enabled: false, maxRestarts: 3 },
});

/**
 * Applies an input to a project (or to the defaults when creating). Returns the new settings without
 * timestamps; the caller validates the result against `Project`.
 */
export function applyProjectInput(
  base: Omit<Project, 'createdAt' | 'updatedAt'> | null,
  input: ProjectInput,
): Omit<Project, 'createdAt' | 'updatedAt'> {
  const b = base ?? {
    ...DEFAULT_PROJECT,
    id: input.id ?? '',
    name: input.name ?? input.id ?? '',
    timeouts: DEFAULT_TIMEOUTS,
  };
  const timeouts: Timeouts = { ...b.timeouts, ...stripUndefined(input.timeouts ?? {}) };
  const seed = input.session?.timeouts;
  if (seed) {
    if (seed.pending !== undefined) timeouts.pendingMs = Math.round(seed.pending * 1000);
    if (seed.connecting !== undefined) timeouts.connectingMs = Math.round(seed.connecting * 1000);
    if (seed.idle !== undefined) timeouts.idleMs = Math.round(seed.idle * 1000);
    if (seed.paused !== undefined) timeouts.pausedMs = Math.round(seed.paused * 1000);
  }
  return {
    id: b.id,
    name: input.name ?? b.name,
    kind: input.kind ?? b.kind,
    enabled: input.enabled ?? b.enabled,
    public: input.public ?? b.public,
    worker: input.worker !== undefined ? input.worker : b.worker,
    agentTypes: input.agentTypes ?? b.agentTypes,
    regions: input.regions ?? b.regions,
    defaultRegion:
      input.defaultRegion ??
      (input.regions && !input.regions[b.defaultRegion] ? Object.keys(input.regions)[0]! : b.defaultRegion),
    timeouts,
    afkEnabled: input.afkEnabled ?? b.afkEnabled,
    maxQueueLength: input.maxQueueLength ?? b.maxQueueLength,
    reuseWorkers: input.reuseWorkers ?? b.reuseWorkers,
    // settings stored before rooms existed have none: they used the built-in rooms
    rooms: input.rooms ?? b.rooms ?? 'builtin',
    autoRestart: { ...b.autoRestart, ...stripUndefined(input.autoRestart ?? {}) },
  };
}

function stripUndefined<T extends object>(o: T): { [K in keyof T]-?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as never;
}
