// `npm run docs`: writes the reference tables of docs/*.md from the protocol's code, between markers;
// `npm run docs -- --check` only says which files are out of date. packages/protocol/src/docs.test.ts
// runs the same comparison in `npm test`, so the docs cannot drift from the code.
//
// The prose around the tables is written by hand. What the code does not say in words (a state's meaning,
// a frame's purpose) is kept here in maps typed by the protocol's own types, so a new state, frame, code or
// setting fails the typecheck until it is documented.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Assignment,
  CLOSE_CODES,
  CloseCode,
  DEFAULT_TIMEOUTS,
  END_REASONS,
  ENDING_TIMEOUT_MS,
  type EndReason,
  Envelope,
  ERRORS,
  LIVE_STATES,
  outcomeOf,
  Participant,
  PENDING_STATES,
  type ReconnectPolicy,
  SEATED_STATES,
  SEED_STATE_NAMES,
  SESSION_STATES,
  type SeedSessionBlock,
  ServerToWorkerFrame,
  type SessionState,
  SocketCloseCode,
  type Timeouts,
  TRANSITIONS,
  WORKER_ENV,
  WorkerFrame,
} from '@usher/protocol';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---------------------------------------------------------------- words the code does not carry

export const STATE_MEANINGS: Readonly<Record<SessionState, string>> = {
  requesting: 'request received, admission checks running',
  queued: 'no worker free; waiting in line with a position',
  connecting: 'worker reserved or being started; stream or agent being set up',
  active: 'stream live / conversation in progress',
  idle: 'no viewer input past the AFK warning threshold; the warning is shown',
  paused: 'paused by a user or the agent',
  ending: 'shutting down: worker told to stop, state saved, resources released',
  ended: 'terminal; carries `endCode`, `endReason` and `outcome`',
};

export const RECONNECT_POLICIES: Readonly<Record<ReconnectPolicy, string>> = {
  none: 'no',
  resume: 'yes: resume the same session, exponential backoff + jitter',
  fresh: 'yes: start a fresh session, which may land on another worker',
};

type TimeoutKey = keyof Timeouts;

export interface TimeoutDoc {
  /** the row of SPEC §3 */
  what: string;
  /** when the clock runs */
  runs: string;
  /** what happens on expiry, besides ending with `reason` */
  onExpiry: string;
  /** the end reason on expiry, or null when expiry does not end the session */
  reason: EndReason | null;
}

export const TIMEOUT_DOCS: Readonly<Record<TimeoutKey, TimeoutDoc>> = {
  pendingMs: {
    what: 'pending (requesting + queued)',
    runs: 'from the request, while `requesting` or `queued`',
    onExpiry: 'the session ends',
    reason: 'pending_timeout',
  },
  connectingMs: {
    what: 'connecting',
    runs: 'while `connecting`, until the worker reports `session_started`',
    onExpiry: 'the session ends; an operator alert is logged',
    reason: 'connecting_timeout',
  },
  seatHoldMs: {
    what: 'seat hold (stream projects)',
    runs: 'while `connecting` once the worker has started, until the viewer attaches',
    onExpiry: 'the session ends',
    reason: 'seat_expired',
  },
  afkWarningMs: {
    what: 'AFK warning',
    runs: 'while `active` in stream projects with AFK on; viewer input restarts it',
    onExpiry: '→ `idle`, and a `session.afk_warning` event with the disconnect deadline',
    reason: null,
  },
  afkDisconnectMs: {
    what: 'AFK disconnect',
    runs: 'while `idle`, after the warning; viewer input returns the session to `active`',
    onExpiry: 'the session ends',
    reason: 'afk_timeout',
  },
  idleMs: {
    what: 'idle (agent projects)',
    runs: 'while `active` or `idle` in agent projects; any activity restarts it',
    onExpiry: 'the session ends',
    reason: 'idle_timeout',
  },
  pausedMs: {
    what: 'paused',
    runs: 'while `paused`',
    onExpiry: 'the session ends',
    reason: 'paused_timeout',
  },
  maxRuntimeMs: {
    what: 'max runtime',
    runs: 'from the first `active`, through pauses and AFK; 0 = no limit',
    onExpiry: 'the session ends',
    reason: 'max_runtime',
  },
  reconnectWindowMs: {
    what: 'reconnect window',
    runs: 'while the viewer link is lost (closed with a code other than 1000, 1001 or 4004, or a server restart)',
    onExpiry: 'the session ends',
    reason: 'reconnect_failed',
  },
  shutdownGraceMs: {
    what: 'shutdown grace',
    runs: 'in `ending`, from the `shutdown` frame; capped at the ending limit',
    onExpiry:
      'a worker that is not reused is stopped by its driver (SIGTERM, then SIGKILL); the session ends with its reason',
    reason: null,
  },
};

type SeedTimeoutKey = keyof NonNullable<SeedSessionBlock['timeouts']>;

/** The agent seed's `session.timeouts` keys (seconds) and the setting each one sets (milliseconds). */
export const SEED_TIMEOUTS: Readonly<Record<SeedTimeoutKey, TimeoutKey>> = {
  pending: 'pendingMs',
  connecting: 'connectingMs',
  idle: 'idleMs',
  paused: 'pausedMs',
};

type WorkerFrameType = WorkerFrame['type'];
type ServerFrameType = ServerToWorkerFrame['type'];

export const WORKER_FRAME_DOCS: Readonly<Record<WorkerFrameType, string>> = {
  register:
    'must be the first frame: the worker token (a worker started by the server) or a pool token (an external worker); a worker that comes back with its session adds `after` `{sessionId, at, id?}`, the newest room message it received (or the last `upto` it was given), to have what it missed replayed',
  ready: 'the worker can take a session (or, if started for one, is ready for its assignment)',
  heartbeat: 'the worker is alive; every frame counts, this one says nothing else',
  session_started: 'the assigned session is set up on the worker (acknowledges `assign`)',
  message: 'a room message from the worker, relayed to the participants and recorded if its type is',
  save_state: 'state to hand to the next worker if the session is auto-restarted after a crash',
  control: 'the agent pauses, resumes or ends its own session',
  session_failed:
    'the worker could not set up its assigned session (instead of `session_started`; the SDK sends it when `onConnect` throws): the session ends with `4003` `launch_failed`, and a `session.error` `{code: "AGENT_START_FAILED", recoverable: false}` carries `message`',
  stopped:
    'the worker finished its shutdown; followed by a close with `1000`, it is leaving for good (unasked, too): it is stopped at once, and a live session of its goes as after a crash',
};

export const SERVER_FRAME_DOCS: Readonly<Record<ServerFrameType, string>> = {
  registered:
    "answer to `register`: the worker id, the heartbeat interval to keep, `token`, the worker's own token, fresh, to register with when it reconnects (so it comes back as the same worker, with its session), and `upto`, where the room stood (a cursor for `register.after`)",
  replayed:
    'after a `register` with `after`: the room messages and participant frames the worker missed were sent (`count`, oldest first, at most 1,000: `complete` false when there were more); live frames follow',
  assign:
    'a session for this worker, with a worker token scoped to it and any saved state; `upto`: where the room stood at the handover (the cursor for `register.after` until a message comes)',
  message: 'a room message for the worker',
  participant_joined: 'someone joined the session',
  participant_left: 'someone left the session',
  session_state: "the session's state changed",
  shutdown:
    'stop within `graceMs`; `sessionId` is null when the worker is recycled without a session; with `reuse: true` only the session ends: send `stopped` and stay connected for the next one',
  error:
    'a frame was refused; `code` is an error code (see errors.md). The socket stays open after registration',
  token:
    "fresh credentials, answering a heartbeat once half a token's life has passed: `worker`, the token to register with from now on; `session` `{sessionId, token}`, the session's agent token in place of `assignment.token`",
};

export const ASSIGNMENT_DOCS: Readonly<Record<keyof Assignment, string>> = {
  sessionId: 'the session',
  projectId: 'its project',
  region: 'its region',
  agentType: 'the agent type asked for, or null',
  config: 'the `config` object of the session request',
  token: 'a worker token scoped to this session',
  savedState: 'the last state saved by a previous worker of this session, or null',
  restarts: 'how many times the session was moved to a fresh worker after a crash',
  participants: 'who is in the room now',
  livekit:
    "LiveKit mode only (project `rooms: livekit`): `{url, token}`, the LiveKit server and the agent's access token for the session's room",
  transcript:
    'after an auto-restart only: the newest recorded messages (up to 100, oldest first) and whether older ones exist; page back with `GET /sessions/{id}/messages` and this token',
};

export const SOCKET_CLOSE_DOCS: Readonly<Record<keyof typeof SocketCloseCode, string>> = {
  PolicyViolation:
    'the handshake or a frame broke the protocol: first frame not `register` (or none within the register limit), bad token, wrong session',
  TooLarge: 'a frame was larger than allowed',
  InternalError:
    'the server failed to open or serve the socket (its database was away, say): an `error` frame (`INTERNAL`) comes first; try again (the Web SDK resumes the session)',
  ServerShutdown:
    'the server is shutting down or restarting: reconnect to another server or later (the Web SDK resumes the session, within its reconnect window)',
  Replaced: 'the worker was replaced by a newer connection, declared lost, or exited',
  SlowConsumer:
    'the operator event socket (`GET /events/ws`) fell too far behind reading its events; reconnect and read the current state again',
};

export const WORKER_ENV_DOCS: Readonly<Record<keyof typeof WORKER_ENV, string>> = {
  url: 'the `ws://…/workers/ws` URL to dial',
  token: 'the worker token to `register` with',
  signallingUrl:
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the placeholder a worker command may contain
    "the `ws://…/workers/signalling?token=…` URL for a Pixel Streaming streamer (a UE app's `-PixelStreamingSignallingURL`); `${USHER_SIGNALLING_URL}` in the command is replaced by it",
  workerId: "the worker's id",
  projectId: 'the project it serves',
  region: 'the region of its pool',
  sessionId: 'the session it was started for (absent for a warm pool worker)',
  sessionToken: 'an agent token for that session (absent for a warm pool worker)',
};

// ---------------------------------------------------------------- markdown helpers

const code = (s: string | number) => `\`${s}\``;
const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ');

const width = (s: string) => [...s].length;

/** A markdown table, its columns padded the way `biome format` pads them, so the two never disagree. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers, ...rows].map((r) => headers.map((_, i) => cell(r[i] ?? '')));
  const widths = headers.map((_, i) => Math.max(3, ...all.map((r) => width(r[i]!))));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c + ' '.repeat(widths[i]! - width(c))).join(' | ')} |`;
  const [head, ...body] = all;
  return [line(head!), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

function duration(ms: number): string {
  if (ms === 0) return 'none';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

interface Schema {
  type?: string;
  const?: unknown;
  anyOf?: Schema[];
  items?: Schema;
  properties?: Record<string, Schema>;
  required?: string[];
  patternProperties?: Record<string, Schema>;
  description?: string;
}

const NAMED = new Map<unknown, string>([
  [Assignment, 'Assignment'],
  [Envelope, 'Envelope'],
  [Participant, 'Participant'],
]);

/** A TypeScript-like name for a schema: `string`, `'pause' | 'resume'`, `Participant[]`. */
export function typeName(s: Schema): string {
  const named = NAMED.get(s);
  if (named) return named;
  if (s.const !== undefined) return typeof s.const === 'string' ? `'${s.const}'` : String(s.const);
  if (s.anyOf) return s.anyOf.map(typeName).join(' | ');
  if (s.type === 'array' && s.items) return `${typeName(s.items)}[]`;
  if (s.type === 'object' && s.patternProperties) {
    const value = Object.values(s.patternProperties)[0];
    return `Record<string, ${value ? typeName(value) : 'unknown'}>`;
  }
  if (s.type === 'object') return 'object';
  return s.type ?? 'unknown';
}

function fields(s: Schema, skip: readonly string[] = []): string[] {
  const required = new Set(s.required ?? []);
  return Object.entries(s.properties ?? {})
    .filter(([name]) => !skip.includes(name))
    .map(([name, f]) => `${name}${required.has(name) ? '' : '?'}: ${typeName(f)}`);
}

function frameTable(union: { anyOf: unknown[] }, docs: Readonly<Record<string, string>>): string {
  const rows = (union.anyOf as Schema[]).map((member) => {
    const type = String(member.properties?.['type']?.const);
    const f = fields(member, ['type']);
    return [code(type), f.length ? f.map(code).join(', ') : '—', docs[type] ?? ''];
  });
  return table(['type', 'fields', 'meaning'], rows);
}

// ---------------------------------------------------------------- the generated blocks

function statesTable(): string {
  return table(
    ['state', 'meaning'],
    SESSION_STATES.map((s) => [code(s), STATE_MEANINGS[s]]),
  );
}

function stateGroups(): string {
  const list = (states: readonly SessionState[]) => states.map(code).join(', ');
  return table(
    ['group', 'states', 'meaning'],
    [
      ['pending', list(PENDING_STATES), 'waiting for a worker; may end directly'],
      ['seated', list(SEATED_STATES), 'a worker is seated; ending goes through `ending`'],
      ['live', list(LIVE_STATES), 'live for its participants'],
      ['terminal', code('ended'), 'never changes again; the data is kept'],
    ],
  );
}

function transitionsTable(): string {
  return table(
    ['from', 'may move to', 'refused'],
    SESSION_STATES.map((from) => {
      const to = TRANSITIONS[from];
      const refused = SESSION_STATES.filter((s) => !to.includes(s));
      return [code(from), to.length ? to.map(code).join(', ') : '— (terminal)', refused.map(code).join(', ')];
    }),
  );
}

function transitionMatrix(): string {
  return table(
    ['from \\ to', ...SESSION_STATES.map(code)],
    SESSION_STATES.map((from) => [
      code(from),
      ...SESSION_STATES.map((to) => (TRANSITIONS[from].includes(to) ? '✓' : '·')),
    ]),
  );
}

function seedNames(): string {
  return table(
    ['Usher', 'pixel-streaming seed (SP)', 'agent seed (ST)'],
    SESSION_STATES.map((s) => [code(s), SEED_STATE_NAMES[s].pixelStreaming, SEED_STATE_NAMES[s].agent]),
  );
}

const closeCodeNames = new Map<number, string>(Object.entries(CloseCode).map(([name, c]) => [c, name]));

function closeCodesTable(): string {
  const reasonsOf = (c: number) =>
    (Object.keys(END_REASONS) as EndReason[]).filter((r) => END_REASONS[r].code === c).map(code);
  return table(
    ['code', 'name', 'meaning', 'outcome', 'SDK reconnects?', 'end reasons'],
    Object.entries(CLOSE_CODES).map(([c, info]) => {
      const reasons = reasonsOf(Number(c));
      return [
        code(c),
        closeCodeNames.get(Number(c)) ?? '',
        info.meaning,
        info.outcome ? code(info.outcome) : '— (the session waits in its reconnect window)',
        RECONNECT_POLICIES[info.reconnect],
        reasons.length ? reasons.join(', ') : '—',
      ];
    }),
  );
}

function endReasonsTable(): string {
  return table(
    ['reason', 'code', 'outcome', 'description'],
    (Object.keys(END_REASONS) as EndReason[]).map((r) => {
      const { code: c, description } = END_REASONS[r];
      return [code(r), code(c), code(outcomeOf(c)), description];
    }),
  );
}

function timeoutEndings(): string {
  const rows = (Object.keys(TIMEOUT_DOCS) as TimeoutKey[]).map((key) => {
    const d = TIMEOUT_DOCS[key];
    return [
      d.what,
      code(key),
      d.reason ? code(END_REASONS[d.reason].code) : '—',
      d.reason ? code(d.reason) : '—',
      d.onExpiry,
    ];
  });
  rows.push([
    'ending (cleanup)',
    `${code('ENDING_TIMEOUT_MS')} (not configurable)`,
    '—',
    '—',
    'force cleanup: the worker is killed and its resources deleted; the session ends with the code and reason it was ending for',
  ]);
  return table(['timeout (SPEC §3)', 'setting', 'code', 'reason', 'on expiry'], rows);
}

function errorsTable(): string {
  return table(
    ['code', 'HTTP status', 'retryable', 'description'],
    Object.entries(ERRORS).map(([c, e]) => [
      code(c),
      String(e.status),
      e.retryable ? 'yes' : 'no',
      e.description,
    ]),
  );
}

function assignmentTable(): string {
  const s = Assignment as Schema;
  const required = new Set(s.required ?? []);
  return table(
    ['field', 'type', 'meaning'],
    (Object.keys(ASSIGNMENT_DOCS) as (keyof Assignment)[]).map((name) => {
      const f = s.properties?.[name] ?? {};
      return [code(`${name}${required.has(name) ? '' : '?'}`), code(typeName(f)), ASSIGNMENT_DOCS[name]];
    }),
  );
}

function socketCloseTable(): string {
  return table(
    ['code', 'name', 'meaning'],
    (Object.keys(SocketCloseCode) as (keyof typeof SocketCloseCode)[])
      .sort((a, b) => SocketCloseCode[a] - SocketCloseCode[b])
      .map((name) => [code(SocketCloseCode[name]), name, SOCKET_CLOSE_DOCS[name]]),
  );
}

function workerEnvTable(): string {
  return table(
    ['variable', 'holds'],
    (Object.keys(WORKER_ENV) as (keyof typeof WORKER_ENV)[]).map((k) => [
      code(WORKER_ENV[k]),
      WORKER_ENV_DOCS[k],
    ]),
  );
}

function timeoutsTable(): string {
  const rows = (Object.keys(TIMEOUT_DOCS) as TimeoutKey[]).map((key) => {
    const d = TIMEOUT_DOCS[key];
    const ms = DEFAULT_TIMEOUTS[key];
    const expiry = d.reason
      ? `${code(END_REASONS[d.reason].code)} ${code(d.reason)}: ${d.onExpiry}`
      : d.onExpiry;
    return [code(key), `${code(ms)} (${duration(ms)})`, d.runs, expiry];
  });
  rows.push([
    `${code('ENDING_TIMEOUT_MS')} (fixed)`,
    `${code(ENDING_TIMEOUT_MS)} (${duration(ENDING_TIMEOUT_MS)})`,
    'while `ending`',
    'force cleanup: the worker is killed and its resources deleted; the session ends with its reason',
  ]);
  return table(['setting', 'default (ms)', 'runs', 'on expiry'], rows);
}

function seedTimeoutsTable(): string {
  return table(
    ['`session.timeouts` key (seconds)', 'sets', 'default'],
    (Object.keys(SEED_TIMEOUTS) as SeedTimeoutKey[]).map((k) => {
      const key = SEED_TIMEOUTS[k];
      return [code(k), code(key), `${DEFAULT_TIMEOUTS[key] / 1000} s`];
    }),
  );
}

// ---------------------------------------------------------------- the documents

export interface Doc {
  file: string;
  blocks: Readonly<Record<string, () => string>>;
}

export const DOCS: readonly Doc[] = [
  {
    file: 'docs/states.md',
    blocks: {
      states: statesTable,
      'state-groups': stateGroups,
      transitions: transitionsTable,
      'transition-matrix': transitionMatrix,
      'seed-names': seedNames,
    },
  },
  {
    file: 'docs/close-codes.md',
    blocks: {
      'close-codes': closeCodesTable,
      'end-reasons': endReasonsTable,
      'timeout-endings': timeoutEndings,
    },
  },
  { file: 'docs/errors.md', blocks: { errors: errorsTable } },
  {
    file: 'docs/worker-protocol.md',
    blocks: {
      'worker-frames': () => frameTable(WorkerFrame, WORKER_FRAME_DOCS),
      'server-frames': () => frameTable(ServerToWorkerFrame, SERVER_FRAME_DOCS),
      assignment: assignmentTable,
      'socket-close-codes': socketCloseTable,
      'worker-env': workerEnvTable,
    },
  },
  { file: 'docs/timeouts.md', blocks: { timeouts: timeoutsTable, 'seed-timeouts': seedTimeoutsTable } },
];

export const begin = (name: string) => `<!-- generated:${name} begin (npm run docs writes this table) -->`;
export const end = (name: string) => `<!-- generated:${name} end -->`;

/** Replaces every block between its markers; throws when a marker is missing or repeated. */
export function fill(text: string, blocks: Readonly<Record<string, () => string>>, file: string): string {
  let out = text;
  for (const [name, render] of Object.entries(blocks)) {
    const [b, e] = [begin(name), end(name)];
    const at = out.indexOf(b);
    const until = out.indexOf(e);
    if (at < 0 || until < at || out.indexOf(b, at + 1) >= 0 || out.indexOf(e, until + 1) >= 0)
      throw new Error(`${file} must contain the markers\n  ${b}\n  ${e}\nonce each, in that order`);
    out = `${out.slice(0, at + b.length)}\n${render()}\n${out.slice(until)}`;
  }
  return out;
}

/** Each doc as it is on disk and as the code says it should be. */
export function renderDocs(root = ROOT): { file: string; current: string; expected: string }[] {
  return DOCS.map((doc) => {
    const current = readFileSync(join(root, doc.file), 'utf8');
    return { file: doc.file, current, expected: fill(current, doc.blocks, doc.file) };
  });
}

if (import.meta.main) {
  const check = process.argv.includes('--check');
  const stale = renderDocs().filter((d) => d.current !== d.expected);
  for (const d of stale) {
    if (check) console.error(`✖ ${d.file} is out of date: run \`npm run docs\``);
    else {
      writeFileSync(join(ROOT, d.file), d.expected);
      console.log(`updated ${d.file}`);
    }
  }
  if (stale.length === 0) console.log('docs are up to date');
  else if (check) process.exitCode = 1;
}
