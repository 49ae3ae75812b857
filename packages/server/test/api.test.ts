// The HTTP API (SPEC §8) and the session socket, from the outside as a client sees them, on both databases:
// sessions, projects, workers, health, the OpenAPI document, and who may do what.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, test } from 'node:test';
import type { SessionEvent } from '@usher/protocol';
import {
  type CreatedSession,
  createTestDatabase,
  databaseKinds,
  streamProject,
  TEST_ADMIN_KEY,
  TestServer,
  useTestServer,
} from '@usher/testing';
import { assertError, nextFrame } from './helpers.ts';

interface SessionBody {
  id: string;
  projectId: string;
  state: string;
  workerId: string | null;
  queuePosition: number | null;
  endCode: number | null;
  endReason: string | null;
  outcome: string | null;
  timeline?: { from: string | null; to: string; at: string; cause: string }[];
}
interface ProjectBody {
  id: string;
  name: string;
  kind: string;
  enabled: boolean;
  public: boolean;
  regions: Record<string, { min: number; max: number }>;
  timeouts: Record<string, number>;
  maxQueueLength: number;
  afkEnabled: boolean;
  reuseWorkers: boolean;
  createdAt: string;
  updatedAt: string;
}
interface WorkerBody {
  id: string;
  projectId: string;
  state: string;
  sessionId: string | null;
  draining: boolean;
  connected: boolean;
}

const statusOf = (e: SessionEvent) => (e.type === 'session.status_changed' ? e.status : null);

/** Every route Fastify has, from its route tree, as OpenAPI paths with their methods (HEAD left out). */
function registeredRoutes(tree: string): { path: string; methods: string[] }[] {
  const routes: { path: string; methods: string[] }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^((?:│ {3}| {4})*)[├└]── (\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    const path = (depth > 0 ? stack[depth - 1]! : '') + m[2]!;
    stack[depth] = path;
    stack.length = depth + 1;
    const methods = (m[3] ?? '').split(', ').filter((x) => x && x !== 'HEAD');
    if (methods.length > 0) routes.push({ path: path.replaceAll(/:(\w+)/g, '{$1}'), methods });
  }
  return routes;
}

for (const kind of databaseKinds()) {
  describe(`HTTP API and session socket (${kind})`, () => {
    const { t } = useTestServer(kind);

    // ------------------------------------------------------------------ sessions

    test('POST /sessions answers 201 with the session, a viewer token and the socket URL', async () => {
      await t.createProject(streamProject('s-create', { min: 1, max: 1 }));
      await t.readyWorkers('s-create', 1);
      const r = await t.api<CreatedSession>('POST', '/sessions', { projectId: 's-create', config: { a: 1 } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const s = r.body;
      assert.match(s.id, /^s_/);
      assert.equal(s.projectId, 's-create');
      assert.equal(s.region, 'default');
      assert.deepEqual(s.config, { a: 1 });
      assert.equal(s.state, 'connecting', 'seated at once on the warm worker');
      assert.ok(s.workerId);
      assert.equal(s.queuePosition, null);
      assert.match(s.token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a signed token');
      assert.equal(s.url, `${t.url.replace(/^http/, 'ws')}/sessions/${s.id}/ws`);
      assert.equal(s.endCode, null);

      const queued = await t.createSession('s-create');
      assert.equal(queued.state, 'queued');
      assert.equal(queued.queuePosition, 1);
      assert.equal(queued.workerId, null);
      await t.api('POST', `/sessions/${queued.id}/end`);
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('GET /sessions/{id} includes the timeline; the token of the session may read it', async () => {
      await t.createProject(streamProject('s-get', { min: 0, max: 1 }));
      const a = await t.createSession('s-get');
      const b = await t.createSession('s-get');
      await t.api('POST', `/sessions/${b.id}/end`);
      const r = await t.api<SessionBody>('GET', `/sessions/${b.id}`, undefined, b.token);
      assert.equal(r.status, 200);
      assert.equal(r.body.id, b.id);
      assert.equal(r.body.state, 'ended');
      assert.deepEqual(
        r.body.timeline?.map((e) => [e.from, e.to]),
        [
          [null, 'requesting'],
          ['requesting', 'queued'],
          ['queued', 'ended'],
        ],
      );
      for (const e of r.body.timeline ?? []) {
        assert.ok(!Number.isNaN(Date.parse(e.at)), 'each entry has a timestamp');
        assert.ok(e.cause.length > 0, 'each entry has a cause');
      }
      assert.equal(r.body.timeline?.at(-1)?.cause, 'api:end');
      const ra = await t.api<SessionBody>('GET', `/sessions/${a.id}`);
      assert.deepEqual(
        ra.body.timeline?.map((e) => [e.from, e.to]),
        [
          [null, 'requesting'],
          ['requesting', 'connecting'],
        ],
        'nobody was waiting, so it was seated without queueing',
      );
      await t.api('POST', `/sessions/${a.id}/end`);
    });

    test('GET /sessions filters by project and by comma-separated states; a bad state is a 400 naming it', async () => {
      await t.createProject(streamProject('s-list', { min: 0, max: 1 }));
      await t.createProject(streamProject('s-list-other', { min: 0, max: 1 }));
      const s1 = await t.createSession('s-list');
      const s2 = await t.createSession('s-list');
      const s3 = await t.createSession('s-list');
      const other = await t.createSession('s-list-other');
      await t.api('POST', `/sessions/${s3.id}/end`);
      const ids = async (query: string) => {
        const r = await t.api<{ sessions: SessionBody[] }>('GET', `/sessions?${query}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return r.body.sessions.map((s) => s.id).sort();
      };
      assert.deepEqual(await ids('projectId=s-list'), [s1.id, s2.id, s3.id].sort());
      assert.deepEqual(await ids('projectId=s-list&state=queued'), [s2.id]);
      assert.deepEqual(await ids('projectId=s-list&state=connecting,ended'), [s1.id, s3.id].sort());
      assert.deepEqual(await ids('projectId=s-list&state=queued,%20connecting'), [s1.id, s2.id].sort());
      assert.deepEqual(await ids('projectId=s-list&state=active'), []);
      assert.deepEqual(await ids('projectId=s-list-other'), [other.id]);
      const listed = await t.api<{ sessions: SessionBody[] }>(
        'GET',
        '/sessions?projectId=s-list&state=queued',
      );
      assert.equal(listed.body.sessions[0]?.queuePosition, 1, 'a listed queued session shows its position');

      const bad = assertError(await t.api('GET', '/sessions?state=queued,sleeping'), 400, 'BAD_PARAMETER');
      assert.match(bad.message, /"sleeping"/);
      assert.match(bad.message, /state/);
      for (const s of [s1, s2, other]) await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('the URLs handed out start where the caller reached the server (its Host), not at the listen address', async () => {
      await t.createProject(streamProject('s-host', { min: 0, max: 1 }));
      const port = new URL(t.url).port;
      /** a request as a client that dialled `host` sends it (fetch does not let a caller set Host) */
      const post = (path: string, body: unknown, host: string) =>
        new Promise<Record<string, string>>((resolve, reject) => {
          const req = request(`${t.url}${path}`, {
            method: 'POST',
            headers: { host, authorization: `Bearer ${TEST_ADMIN_KEY}`, 'content-type': 'application/json' },
          });
          req.on('response', async (res) => {
            let text = '';
            for await (const chunk of res) text += chunk;
            resolve(JSON.parse(text));
          });
          req.on('error', reject);
          req.end(JSON.stringify(body));
        });
      const local = await post('/sessions', { projectId: 's-host' }, `localhost:${port}`);
      assert.equal(local.url, `ws://localhost:${port}/sessions/${local.id}/ws`);
      const joined = await post(`/sessions/${local.id}/join`, {}, `usher.lan:${port}`);
      assert.equal(joined.url, `ws://usher.lan:${port}/sessions/${local.id}/ws`);
      const pool = await post('/projects/s-host/pool-tokens', {}, `[::1]:${port}`);
      assert.equal(pool.workerUrl, `ws://[::1]:${port}/workers/ws`);
      assert.ok(pool.signallingUrl!.startsWith(`ws://[::1]:${port}/workers/signalling?token=`));
      // a Host that is no host name is not put in a URL: the listen address is used instead
      const odd = await post('/sessions', { projectId: 's-host' }, 'evil.example/path?x=');
      assert.equal(odd.url, `${t.url.replace(/^http/, 'ws')}/sessions/${odd.id}/ws`);
      for (const id of [local.id, odd.id]) await t.api('POST', `/sessions/${id}/end`);
    });

    test('POST /sessions/{id}/join gives a participant a token and URL scoped to the session', async () => {
      await t.createProject(streamProject('s-join', { min: 0, max: 1 }));
      const s = await t.createSession('s-join');
      const r = await t.api<{ token: string; url: string; identity: string }>(
        'POST',
        `/sessions/${s.id}/join`,
        { role: 'observer', identity: 'recorder-1' },
      );
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.url, s.url);
      assert.equal(r.body.identity, 'recorder-1');
      assert.notEqual(r.body.token, s.token);
      const read = await t.api<SessionBody>('GET', `/sessions/${s.id}`, undefined, r.body.token);
      assert.equal(read.status, 200);
      const observer = await t.connect(s, r.body.token);
      assert.equal(statusOf(observer.events[0] ?? (await observer.waitFor(() => true))), 'connecting');

      // the viewer may invite a user (the default role)
      const byViewer = await t.api<{ identity: string; token: string }>(
        'POST',
        `/sessions/${s.id}/join`,
        undefined,
        s.token,
      );
      assert.equal(byViewer.status, 200, JSON.stringify(byViewer.body));
      assert.match(byViewer.body.identity, /^user_/);
      // an observer may not invite anyone
      assertError(await t.api('POST', `/sessions/${s.id}/join`, undefined, r.body.token), 403, 'FORBIDDEN');
      await t.api('POST', `/sessions/${s.id}/end`);
      assert.equal((await observer.closed).code, 1000);
    });

    test('pause and resume a live session; the socket and the timeline show both', async () => {
      await t.createProject(streamProject('s-pause', { min: 1, max: 1 }));
      await t.readyWorkers('s-pause', 1);
      const s = await t.createSession('s-pause');
      const viewer = await t.connect(s);
      await viewer.state('active');

      const paused = await t.api<SessionBody>('POST', `/sessions/${s.id}/pause`, undefined, s.token);
      assert.equal(paused.status, 200, JSON.stringify(paused.body));
      assert.equal(paused.body.state, 'paused');
      await viewer.state('paused');
      const resumed = await t.api<SessionBody>('POST', `/sessions/${s.id}/resume`);
      assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
      assert.equal(resumed.body.state, 'active');
      await viewer.waitFor(
        (e) => statusOf(e) === 'active' && e.type === 'session.status_changed' && e.previous === 'paused',
      );
      assert.deepEqual(viewer.states.slice(-3), ['active', 'paused', 'active']);

      const got = await t.api<SessionBody>('GET', `/sessions/${s.id}`);
      const timeline = got.body.timeline ?? [];
      assert.deepEqual(
        timeline.slice(-2).map((e) => [e.to, e.cause]),
        [
          ['paused', 'viewer:pause'],
          ['active', 'api:resume'],
        ],
      );
      await viewer.close(1000);
      await t.waitForState(s.id, 'ended');
    });

    test('only a live session pauses: one still connecting, or queued, is refused with 409 and left as it was', async () => {
      await t.createProject(streamProject('s-early', { min: 1, max: 1 }));
      await t.readyWorkers('s-early', 1);
      // seated on its worker, which takes it, but no viewer yet: connecting
      const seated = await t.createSession('s-early');
      const queued = await t.createSession('s-early');
      await t.workersWhere('s-early', (ws) =>
        ws.some((w) => w.sessionId === seated.id && w.state === 'busy'),
      );
      for (const s of [seated, queued]) {
        const before = (await t.session(s.id)).state;
        assertError(
          await t.api('POST', `/sessions/${s.id}/pause`, undefined, s.token),
          409,
          'ILLEGAL_TRANSITION',
        );
        assert.equal((await t.session(s.id)).state, before);
      }
      // the connecting one still goes live when its viewer comes
      const viewer = await t.connect(seated);
      await viewer.state('active');
      await viewer.close(1000);
      await t.api('POST', `/sessions/${queued.id}/end`);
    });

    test('POST /sessions/{id}/end: a pending session ends at once, 1000 canceled', async () => {
      await t.createProject(streamProject('s-cancel', { min: 0, max: 1 }));
      const first = await t.createSession('s-cancel');
      const waiting = await t.createSession('s-cancel');
      assert.equal(waiting.state, 'queued');
      const watcher = await t.connect(waiting, TEST_ADMIN_KEY);
      const r = await t.api<SessionBody>('POST', `/sessions/${waiting.id}/end`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.state, 'ended');
      assert.equal(r.body.endCode, 1000);
      assert.equal(r.body.endReason, 'canceled');
      assert.equal(r.body.outcome, 'disconnected');
      assert.deepEqual(await watcher.closed, { code: 1000, reason: 'canceled' });
      assert.ok(!watcher.states.includes('ending'), 'a pending session skips ending');
      await t.api('POST', `/sessions/${first.id}/end`);
    });

    test('POST /sessions/{id}/end: a seated session goes through ending, then ended 1000 completed', async () => {
      await t.createProject(streamProject('s-end', { min: 1, max: 1 }));
      await t.readyWorkers('s-end', 1);
      const s = await t.createSession('s-end');
      const viewer = await t.connect(s);
      await viewer.state('active');
      const r = await t.api<SessionBody>('POST', `/sessions/${s.id}/end`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.state, 'ending');
      assert.deepEqual(await viewer.closed, { code: 1000, reason: 'completed' });
      assert.deepEqual(viewer.states.slice(-2), ['ending', 'ended']);
      const ended = await t.session(s.id);
      assert.equal(ended.state, 'ended');
      assert.equal(ended.endCode, 1000);
      assert.equal(ended.endReason, 'completed');
      assert.equal(ended.outcome, 'disconnected');
    });

    // ------------------------------------------------------------------ projects

    test('projects: create with defaults, read, list, and PATCH changes only the fields given', async () => {
      const created = await t.api<ProjectBody>('POST', '/projects', {
        id: 'p-crud',
        name: 'CRUD',
        worker: { driver: 'process', command: ['fake-worker'] },
        regions: { default: { min: 0, max: 3 } },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const p = created.body;
      assert.equal(p.id, 'p-crud');
      assert.equal(p.name, 'CRUD');
      assert.equal(p.enabled, true);
      assert.equal(p.public, false, 'projects are private unless they say otherwise');
      assert.equal(p.kind, 'stream');
      assert.equal(p.timeouts.pendingMs, 300_000);
      assert.equal(p.timeouts.pausedMs, 900_000);
      assert.equal(p.maxQueueLength, 1000);

      const read = await t.api<ProjectBody>('GET', '/projects/p-crud');
      assert.equal(read.status, 200);
      assert.deepEqual(read.body, p);
      const list = await t.api<{ projects: ProjectBody[] }>('GET', '/projects');
      assert.equal(list.status, 200);
      assert.deepEqual(
        list.body.projects.find((x) => x.id === 'p-crud'),
        p,
      );

      const patched = await t.api<ProjectBody>('PATCH', '/projects/p-crud', {
        name: 'Renamed',
        timeouts: { afkWarningMs: 5_000 },
      });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      assert.equal(patched.body.name, 'Renamed');
      assert.equal(patched.body.timeouts.afkWarningMs, 5_000);
      const { name: _n, updatedAt: _u, timeouts: newTimeouts, ...rest } = patched.body;
      const { name: _n0, updatedAt: _u0, timeouts: oldTimeouts, ...restBefore } = p;
      assert.deepEqual(rest, restBefore, 'every other setting is as it was');
      assert.deepEqual({ ...newTimeouts, afkWarningMs: oldTimeouts.afkWarningMs }, oldTimeouts);
      assert.deepEqual((await t.api('GET', '/projects/p-crud')).body, patched.body, 'the change is stored');
    });

    test("PATCH accepts the agent seed's YAML shape: session.timeouts in seconds", async () => {
      await t.createProject(streamProject('p-seed', { min: 0, max: 1 }, { kind: 'agent' }));
      const before = (await t.api<ProjectBody>('GET', '/projects/p-seed')).body;
      const r = await t.api<ProjectBody>('PATCH', '/projects/p-seed', {
        session: { timeouts: { pending: 30, connecting: 45, idle: 600, paused: 1.5 } },
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.timeouts.pendingMs, 30_000);
      assert.equal(r.body.timeouts.connectingMs, 45_000);
      assert.equal(r.body.timeouts.idleMs, 600_000);
      assert.equal(r.body.timeouts.pausedMs, 1_500);
      assert.equal(r.body.timeouts.afkWarningMs, before.timeouts.afkWarningMs);
      assert.equal(r.body.timeouts.maxRuntimeMs, before.timeouts.maxRuntimeMs);
      assert.ok(!('session' in r.body), 'the seed block is folded into timeouts, not stored as is');
    });

    test('disabling a project ends its live and queued sessions with 4000; new sessions are refused', async () => {
      await t.createProject(streamProject('p-off', { min: 1, max: 1 }));
      await t.readyWorkers('p-off', 1);
      const live = await t.createSession('p-off');
      const queued = await t.createSession('p-off');
      assert.equal(queued.state, 'queued');
      const vLive = await t.connect(live);
      await vLive.state('active');
      const vQueued = await t.connect(queued);
      await vQueued.waitFor((e) => e.type === 'session.queue_position');

      const r = await t.api<ProjectBody>('POST', '/projects/p-off/disable');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.enabled, false);
      assert.deepEqual(await vLive.closed, { code: 4000, reason: 'project_disabled' });
      assert.deepEqual(await vQueued.closed, { code: 4000, reason: 'project_disabled' });
      for (const s of [live, queued]) {
        const ended = await t.session(s.id);
        assert.equal(ended.state, 'ended');
        assert.equal(ended.endCode, 4000);
        assert.equal(ended.endReason, 'project_disabled');
      }
      assert.ok(vLive.states.includes('ending'), 'the live session shut its worker down first');

      const refused = await t.api('POST', '/sessions', { projectId: 'p-off' });
      const err = assertError(refused, 403, 'PROJECT_DISABLED');
      assert.equal(err.details?.closeCode, 4000);
      const endedId = err.details?.sessionId as string;
      assert.ok(endedId, 'the refusal names the session it ended');
      const refusedSession = await t.session(endedId);
      assert.equal(refusedSession.state, 'ended');
      assert.equal(refusedSession.endCode, 4000);
      assert.equal(refusedSession.endReason, 'project_disabled');
      const open = await t.api<{ sessions: SessionBody[] }>(
        'GET',
        '/sessions?projectId=p-off&state=requesting,queued,connecting,active,idle,paused,ending',
      );
      assert.deepEqual(open.body.sessions, [], 'nothing of the project is still open');

      const enabled = await t.api<ProjectBody>('POST', '/projects/p-off/enable');
      assert.equal(enabled.status, 200);
      assert.equal(enabled.body.enabled, true);
      const again = await t.createSession('p-off');
      assert.notEqual(again.state, 'ended');
      await t.api('POST', `/sessions/${again.id}/end`);
    });

    test('changes to one project at the same moment are all kept: a disable and two PATCHes', async () => {
      await t.createProject(streamProject('p-race', { min: 0, max: 1 }));
      for (let round = 0; round < 5; round++) {
        await t.api('POST', '/projects/p-race/enable');
        const answers = await Promise.all([
          t.api('POST', '/projects/p-race/disable'),
          t.api('PATCH', '/projects/p-race', { name: `round ${round}` }),
          t.api('PATCH', '/projects/p-race', { maxQueueLength: 10 + round }),
        ]);
        for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body));
        const p = await t.api<ProjectBody & { name: string; maxQueueLength: number }>(
          'GET',
          '/projects/p-race',
        );
        assert.deepEqual(
          [p.body.enabled, p.body.name, p.body.maxQueueLength],
          [false, `round ${round}`, 10 + round],
          `round ${round}`,
        );
      }
    });

    test('sessions asked for while the project is disabled are refused or end 4000: none stays open', async () => {
      await t.createProject(streamProject('p-rush', { min: 0, max: 1 }));
      const asked = Array.from({ length: 20 }, () =>
        t.api<SessionBody>('POST', '/sessions', { projectId: 'p-rush' }),
      );
      const disabled = await t.api('POST', '/projects/p-rush/disable');
      assert.equal(disabled.status, 200);
      const answers = await Promise.all(asked);
      // what an admission on the settings it read before the change let in is ended once the change is known
      await t.settled();
      for (const a of answers) {
        if (a.status === 403) continue;
        assert.equal(a.status, 201, JSON.stringify(a.body));
        const s = await t.waitForState(a.body.id, 'ended');
        assert.deepEqual([s.endCode, s.endReason], [4000, 'project_disabled']);
      }
    });

    test('a PATCH that takes away the region (or the worker) sessions wait for ends them 4002 app_not_found', async () => {
      await t.createProject(
        streamProject(
          'p-shrink',
          { min: 0, max: 1 },
          { regions: { eu: { min: 0, max: 1 }, us: { min: 0, max: 1 } } },
        ),
      );
      const seated = {
        eu: await t.createSession('p-shrink', { region: 'eu' }),
        us: await t.createSession('p-shrink', { region: 'us' }),
      };
      const waiting = {
        eu: await t.createSession('p-shrink', { region: 'eu' }),
        us: await t.createSession('p-shrink', { region: 'us' }),
      };
      for (const s of Object.values(waiting)) assert.equal(s.state, 'queued');
      const watch = await t.connect(waiting.us, TEST_ADMIN_KEY);
      const r = await t.api('PATCH', '/projects/p-shrink', { regions: { eu: { min: 0, max: 1 } } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(await watch.closed, { code: 4002, reason: 'app_not_found' });
      const gone = await t.session(waiting.us.id);
      assert.deepEqual([gone.state, gone.endReason], ['ended', 'app_not_found']);
      // the region kept is untouched, and the seated session in the other goes on (its worker runs)
      assert.equal((await t.session(waiting.eu.id)).state, 'queued');
      assert.notEqual((await t.session(seated.us.id)).state, 'ended');
      // no worker at all: whatever waits ends too
      await t.api('PATCH', '/projects/p-shrink', { worker: null });
      assert.equal((await t.waitForState(waiting.eu.id, 'ended')).endReason, 'app_not_found');
      for (const s of Object.values(seated)) await t.api('POST', `/sessions/${s.id}/end`);
    });

    test("a project stored with timeouts past today's bounds (by an earlier version) can still be changed: they are brought within them", async () => {
      await t.createProject(streamProject('p-legacy', { min: 0, max: 1 }));
      const db = t.engine.store.db;
      const stored = await db.get<{ settings: string }>('SELECT settings FROM projects WHERE id = ?', [
        'p-legacy',
      ]);
      const settings = JSON.parse(stored!.settings);
      settings.timeouts.shutdownGraceMs = 120_000;
      settings.timeouts.pausedMs = 1e12;
      await db.run('UPDATE projects SET settings = ? WHERE id = ?', [JSON.stringify(settings), 'p-legacy']);
      const r = await t.api<ProjectBody & { timeouts: Record<string, number> }>(
        'POST',
        '/projects/p-legacy/disable',
      );
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.enabled, false);
      assert.equal(r.body.timeouts.shutdownGraceMs, 60_000);
      assert.equal(r.body.timeouts.pausedMs, 30 * 86_400_000);
    });

    test('a project without a runnable app refuses sessions: 422 APP_NOT_FOUND, close code 4002', async () => {
      await t.createProject(streamProject('p-noapp', { min: 0, max: 1 }, { worker: null }));
      const err = assertError(
        await t.api('POST', '/sessions', { projectId: 'p-noapp' }),
        422,
        'APP_NOT_FOUND',
      );
      assert.equal(err.details?.closeCode, 4002);
      assert.equal(err.details?.endReason, 'app_not_found');
      const s = await t.session(err.details?.sessionId as string);
      assert.equal(s.endCode, 4002);
      assert.equal(s.outcome, 'failed');
    });

    test('maxQueueLength 0: a session is seated at once where a worker is free, and refused where none is', async () => {
      await t.createProject(streamProject('p-noq', { min: 1, max: 1 }, { maxQueueLength: 0 }));
      await t.readyWorkers('p-noq', 1);
      const seated = await t.createSession('p-noq');
      assert.equal(seated.state, 'connecting', 'no queue is needed to take a free worker');
      assertError(await t.api('POST', '/sessions', { projectId: 'p-noq' }), 503, 'QUEUE_FULL');
      await t.api('POST', `/sessions/${seated.id}/end`);
    });

    test('a full queue refuses sessions: 503 QUEUE_FULL, close code 4001; the socket of that session closes 4001', async () => {
      await t.createProject(streamProject('p-full', { min: 0, max: 1 }, { maxQueueLength: 1 }));
      const seated = await t.createSession('p-full');
      const waiting = await t.createSession('p-full');
      assert.equal(waiting.state, 'queued');
      const r = await t.api('POST', '/sessions', { projectId: 'p-full' });
      const err = assertError(r, 503, 'QUEUE_FULL');
      assert.equal(err.retryable, true);
      assert.equal(err.details?.closeCode, 4001);
      assert.equal(err.details?.endReason, 'queue_full');
      // a late socket on an ended session gets its final state and is closed with its end code
      const late = await t.connect({ id: err.details?.sessionId as string }, TEST_ADMIN_KEY);
      assert.deepEqual(await late.closed, { code: 4001, reason: 'queue_full' });
      assert.equal(late.events.length, 1);
      const only = late.events[0]!;
      assert.ok(only.type === 'session.status_changed' && only.status === 'ended' && only.endCode === 4001);
      await t.api('POST', `/sessions/${waiting.id}/end`);
      await t.api('POST', `/sessions/${seated.id}/end`);
    });

    // ------------------------------------------------------------------ workers

    test('GET /workers lists live workers; draining a ready one stops it and a replacement is started', async () => {
      await t.createProject(streamProject('w-drain', { min: 1, max: 2 }));
      await t.readyWorkers('w-drain', 1);
      const listed = await t.api<{ workers: WorkerBody[] }>('GET', '/workers?projectId=w-drain');
      assert.equal(listed.status, 200);
      assert.equal(listed.body.workers.length, 1);
      const w = listed.body.workers[0]!;
      assert.equal(w.projectId, 'w-drain');
      assert.equal(w.state, 'ready');
      assert.equal(w.draining, false);
      assert.equal(w.connected, true);

      const drained = await t.api<WorkerBody>('POST', `/workers/${w.id}/drain`);
      assert.equal(drained.status, 200, JSON.stringify(drained.body));
      assert.equal(drained.body.id, w.id);
      assert.equal(drained.body.draining, true);
      await t.workersWhere(
        'w-drain',
        (ws) =>
          ws.length === 1 && ws[0]!.state === 'ready' && !ws.some((x) => (x as { id?: string }).id === w.id),
      );
      const after = await t.api<{ workers: WorkerBody[] }>('GET', '/workers?projectId=w-drain');
      assert.equal(after.body.workers.length, 1);
      assert.notEqual(
        after.body.workers[0]!.id,
        w.id,
        'the drained worker is gone, a new one took its place',
      );
      assert.ok(!(await t.fake.isAlive(w.id)), 'the drained worker was stopped');
      assertError(await t.api('POST', `/workers/${w.id}/drain`), 404, 'NOT_FOUND');
    });

    test('draining a busy worker lets its session finish, then stops it instead of reusing it', async () => {
      await t.createProject(streamProject('w-busy', { min: 1, max: 2 }, { reuseWorkers: true }));
      await t.readyWorkers('w-busy', 1);
      const s = await t.createSession('w-busy');
      const viewer = await t.connect(s);
      await viewer.state('active');
      const wid = s.workerId!;
      const drained = await t.api<WorkerBody>('POST', `/workers/${wid}/drain`);
      assert.equal(drained.status, 200, JSON.stringify(drained.body));
      assert.equal(drained.body.draining, true);
      assert.equal(drained.body.state, 'busy');
      assert.equal((await t.session(s.id)).state, 'active', 'the session goes on');
      assert.ok(await t.fake.isAlive(wid));

      await viewer.close(1000);
      await t.waitForState(s.id, 'ended');
      await t.workersWhere('w-busy', (ws) => !ws.some((x) => (x as { id?: string }).id === wid));
      assert.ok(!(await t.fake.isAlive(wid)), 'the drained worker stopped after its session');
      await t.readyWorkers('w-busy', 1);
      const next = await t.createSession('w-busy');
      assert.notEqual(next.workerId, wid, 'a drained worker takes no new session');
      await t.api('POST', `/sessions/${next.id}/end`);
    });

    // ------------------------------------------------------------------ health and OpenAPI

    test('GET /healthz answers ok with the storage in use', async () => {
      const r = await t.api<{ status: string; storage: string; version: string }>(
        'GET',
        '/healthz',
        undefined,
        null,
      );
      assert.equal(r.status, 200);
      assert.equal(r.body.status, 'ok');
      assert.equal(r.body.storage, kind);
      assert.match(r.body.version, /^\d+\.\d+\.\d+/);
    });

    test('GET /openapi.json is an OpenAPI 3.1 document with every registered route', async () => {
      const r = await t.api<{
        openapi: string;
        info: { version: string };
        paths: Record<string, Record<string, unknown>>;
      }>('GET', '/openapi.json', undefined, null);
      assert.equal(r.status, 200);
      assert.equal(r.body.openapi, '3.1.0');
      const routes = registeredRoutes(t.server.app.printRoutes({ commonPrefix: false }));
      const paths = routes.map((x) => x.path);
      for (const known of [
        '/sessions',
        '/sessions/{id}/end',
        '/projects/{id}',
        '/workers/{id}/drain',
        '/healthz',
      ])
        assert.ok(paths.includes(known), `the route tree was read (${known})`);
      for (const { path, methods } of routes) {
        if (path === '/openapi.json') continue; // the document itself
        for (const method of methods) {
          assert.ok(r.body.paths[path]?.[method.toLowerCase()], `the document has ${method} ${path}`);
        }
      }
      for (const path of ['/sessions/{id}/ws', '/workers/ws'])
        assert.ok(r.body.paths[path]?.get, `the WebSocket endpoint ${path} is documented`);
    });

    // ------------------------------------------------------------------ the session socket

    test('a late socket first gets the current state, then (if queued) its queue position', async () => {
      await t.createProject(streamProject('ws-late', { min: 0, max: 1 }));
      const first = await t.createSession('ws-late');
      const second = await t.createSession('ws-late');
      const third = await t.createSession('ws-late');
      const sock = await t.connect(third, TEST_ADMIN_KEY);
      const pos = await sock.waitFor((e) => e.type === 'session.queue_position');
      const firstEvent = sock.events[0]!;
      assert.equal(firstEvent.type, 'session.status_changed');
      assert.equal(statusOf(firstEvent), 'queued');
      assert.ok(sock.events.indexOf(pos) > 0, 'the position comes after the state');
      assert.ok(pos.type === 'session.queue_position' && pos.position === 2 && pos.queueLength === 2);

      const seated = await t.connect(first, TEST_ADMIN_KEY);
      await seated.waitFor(() => true);
      assert.equal(statusOf(seated.events[0]!), 'connecting');
      assert.ok(
        !seated.events.some((e) => e.type === 'session.queue_position'),
        'no position when not queued',
      );
      for (const s of [third, second, first]) await t.api('POST', `/sessions/${s.id}/end`);
      assert.equal((await sock.closed).code, 1000);
    });

    test('a viewer that leaves right after connecting ends its session (its close is not lost)', async () => {
      await t.createProject(streamProject('ws-quick', { min: 0, max: 1 }));
      const first = await t.createSession('ws-quick');
      const waiting = await t.createSession('ws-quick');
      const viewer = await t.connect(waiting);
      await viewer.close(1000);
      const ended = await t.waitForState(waiting.id, 'ended');
      assert.equal(ended.endReason, 'canceled');
      await t.api('POST', `/sessions/${first.id}/end`);
    });

    test("a viewer that closes with 4004 (the Web SDK's own AFK threshold ran out) ends its session 4004 afk_timeout", async () => {
      await t.createProject(streamProject('ws-afk', { min: 1, max: 1 }));
      await t.readyWorkers('ws-afk', 1);
      const s = await t.createSession('ws-afk');
      const viewer = await t.connect(s);
      await viewer.state('active');
      await viewer.close(4004);
      const ended = await t.waitForState(s.id, 'ended');
      assert.deepEqual(
        [ended.endCode, ended.endReason, ended.outcome],
        [4004, 'afk_timeout', 'disconnected'],
      );
    });

    test('a waiting viewer that closes its tab (1001) ends its session 1001 viewer_left, as a seated one does', async () => {
      await t.createProject(streamProject('ws-tab', { min: 0, max: 1 }));
      const first = await t.createSession('ws-tab');
      const waiting = await t.createSession('ws-tab');
      assert.equal(waiting.state, 'queued');
      const viewer = await t.connect(waiting);
      await viewer.close(1001);
      const ended = await t.waitForState(waiting.id, 'ended');
      assert.deepEqual(
        [ended.endCode, ended.endReason, ended.outcome],
        [1001, 'viewer_left', 'disconnected'],
      );
      await t.api('POST', `/sessions/${first.id}/end`);
    });

    test('ping gets pong with the same id, even sent the moment the socket opens', async () => {
      await t.createProject(streamProject('ws-ping', { min: 0, max: 1 }));
      const s = await t.createSession('ws-ping');
      const sock = await t.connect(s, TEST_ADMIN_KEY);
      sock.send({ type: 'ping', id: 'p-1' });
      const pong = await nextFrame(sock, (f) => f.type === 'pong');
      assert.equal(pong.id, 'p-1');
      sock.send({ type: 'ping', id: 7 });
      assert.equal((await nextFrame(sock, (f) => f.type === 'pong' && f.id === 7)).id, 7);
      await t.api('POST', `/sessions/${s.id}/end`);
      await sock.closed;
    });

    // ------------------------------------------------------------------ auth

    test('no credentials, or a wrong admin key, get 401 UNAUTHORIZED', async () => {
      await t.createProject(streamProject('a-none', { min: 0, max: 1 }));
      const s = await t.createSession('a-none');
      const calls: [string, string, unknown?][] = [
        ['GET', '/sessions'],
        ['GET', `/sessions/${s.id}`],
        ['POST', `/sessions/${s.id}/end`],
        ['POST', `/sessions/${s.id}/join`],
        ['GET', '/projects'],
        ['GET', '/projects/a-none'],
        ['POST', '/projects', { id: 'a-none-2' }],
        ['PATCH', '/projects/a-none', { name: 'x' }],
        ['POST', '/projects/a-none/disable'],
        ['GET', '/workers'],
      ];
      for (const [method, path, body] of calls) {
        assertError(await t.api(method, path, body, null), 401, 'UNAUTHORIZED');
        assertError(await t.api(method, path, body, 'not-the-admin-key'), 401, 'UNAUTHORIZED');
      }
      const viaHeader = await fetch(`${t.url}/projects`, { headers: { 'x-api-key': 'not-the-admin-key' } });
      assert.equal(viaHeader.status, 401);
      const wrong = assertError(await t.api('GET', '/projects', undefined, 'nope'), 401, 'UNAUTHORIZED');
      assert.match(wrong.message, /admin key/);
      // a token cut short (copied from a log, say) is not taken for a wrong admin key
      const cut = s.token.slice(0, s.token.lastIndexOf('.'));
      const cutShort = assertError(
        await t.api('GET', `/sessions/${s.id}`, undefined, cut),
        401,
        'UNAUTHORIZED',
      );
      assert.match(cutShort.message, /neither an admin key nor a whole token/);
      const bare = assertError(await t.api('GET', `/sessions/${s.id}`, undefined, null), 401, 'UNAUTHORIZED');
      assert.match(bare.message, /Authorization: Bearer/, 'says where the credential goes');
      assert.equal((await t.session(s.id)).state, 'connecting', 'nothing was ended');
      assertError(await t.api('GET', '/projects/a-none-2'), 404, 'NOT_FOUND');
      assert.equal((await t.api<ProjectBody>('GET', '/projects/a-none')).body.enabled, true);
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('a viewer token of one session cannot touch another (403, socket closed 1008)', async () => {
      await t.createProject(streamProject('a-cross', { min: 0, max: 2 }));
      const a = await t.createSession('a-cross');
      const b = await t.createSession('a-cross');
      assertError(await t.api('GET', `/sessions/${b.id}`, undefined, a.token), 403, 'FORBIDDEN');
      assertError(await t.api('POST', `/sessions/${b.id}/end`, undefined, a.token), 403, 'FORBIDDEN');
      assertError(await t.api('POST', `/sessions/${b.id}/pause`, undefined, a.token), 403, 'FORBIDDEN');
      assertError(await t.api('POST', `/sessions/${b.id}/join`, undefined, a.token), 403, 'FORBIDDEN');
      assert.equal((await t.session(b.id)).state, 'connecting', 'b is untouched');

      const sock = await t.connect(b, a.token);
      const closed = await sock.closed;
      assert.equal(closed.code, 1008);
      assert.deepEqual(sock.events, [], 'no event of b leaked');
      const err = await nextFrame(sock, (f) => f.type === 'error');
      assert.equal(err.code, 'FORBIDDEN');
      // a's own token works on a
      assert.equal((await t.api('GET', `/sessions/${a.id}`, undefined, a.token)).status, 200);
      for (const s of [a, b]) await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('a viewer token cannot list sessions, manage projects or workers (403)', async () => {
      await t.createProject(streamProject('a-viewer', { min: 0, max: 1 }));
      const s = await t.createSession('a-viewer');
      const before = (await t.api<ProjectBody>('GET', '/projects/a-viewer')).body;
      const calls: [string, string, unknown?][] = [
        ['GET', '/sessions'],
        ['GET', '/projects'],
        ['GET', '/projects/a-viewer'],
        ['POST', '/projects', { id: 'a-viewer-2' }],
        ['PATCH', '/projects/a-viewer', { public: false }],
        ['POST', '/projects/a-viewer/disable'],
        ['GET', '/workers'],
        ['POST', `/workers/${s.workerId}/drain`],
        ['POST', '/sessions', { projectId: 'a-viewer' }],
      ];
      for (const [method, path, body] of calls)
        assertError(await t.api(method, path, body, s.token), 403, 'FORBIDDEN');
      assert.deepEqual((await t.api('GET', '/projects/a-viewer')).body, before, 'the project is unchanged');
      assertError(await t.api('GET', '/projects/a-viewer-2'), 404, 'NOT_FOUND');
      const workers = await t.api<{ workers: WorkerBody[] }>('GET', '/workers?projectId=a-viewer');
      assert.ok(
        workers.body.workers.every((w) => !w.draining),
        'no worker was drained',
      );
      await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('a project that is not public refuses anonymous POST /sessions with 401', async () => {
      await t.createProject(streamProject('a-private', { min: 0, max: 1 }, { public: false }));
      const priv = assertError(
        await t.api('POST', '/sessions', { projectId: 'a-private' }, null),
        401,
        'UNAUTHORIZED',
      );
      // without a key, a private project and one that does not exist look the same
      const none = assertError(
        await t.api('POST', '/sessions', { projectId: 'a-no-such-project' }, null),
        401,
        'UNAUTHORIZED',
      );
      assert.equal(none.message, priv.message.replace('a-private', 'a-no-such-project'));
      assertError(await t.api('POST', '/sessions', { projectId: 'a-no-such-project' }), 404, 'NOT_FOUND');
      const listed = await t.api<{ sessions: SessionBody[] }>('GET', '/sessions?projectId=a-private');
      assert.deepEqual(listed.body.sessions, [], 'no session was created');
      const byAdmin = await t.createSession('a-private');
      assert.equal(byAdmin.state, 'connecting');
      // a public project lets anyone ask
      await t.createProject(streamProject('a-public', { min: 0, max: 1 }));
      const anon = await t.api<CreatedSession>('POST', '/sessions', { projectId: 'a-public' }, null);
      assert.equal(anon.status, 201);
      for (const s of [byAdmin, anon.body]) await t.api('POST', `/sessions/${s.id}/end`);
    });

    test('an expired session token gets 401 saying so, on HTTP and on the socket', async () => {
      const db2 = await createTestDatabase(kind);
      const t2 = await new TestServer({
        storage: db2.storage,
        engine: { sessionTokenTtlMs: 30_000 },
      }).start();
      try {
        await t2.createProject(streamProject('a-exp', { min: 0, max: 1 }));
        const s = await t2.createSession('a-exp');
        assert.equal((await t2.api('GET', `/sessions/${s.id}`, undefined, s.token)).status, 200);
        await t2.advance(31_000);
        const err = assertError(
          await t2.api('GET', `/sessions/${s.id}`, undefined, s.token),
          401,
          'UNAUTHORIZED',
        );
        assert.match(err.message, /expired/);
        const sock = await t2.connect(s);
        assert.equal((await sock.closed).code, 1008);
        const frame = await nextFrame(sock, (f) => f.type === 'error');
        assert.equal(frame.code, 'UNAUTHORIZED');
        assert.match(String(frame.message), /expired/);
        assert.equal((await t2.session(s.id)).state, 'connecting', 'the session itself goes on');
      } finally {
        await t2.close();
        await db2.drop();
      }
    });
  });
}
