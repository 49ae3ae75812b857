// Issue 6's operator journey, end to end, the way a new operator goes through it: `usher serve --config` with a
// YAML file that declares two projects whose workers are real commands (the demo streamer and the demo agent),
// the seed's session.timeouts block, an admin key and a webhook endpoint; the dashboard in Chromium shows both
// projects and the sessions as they come and change; users talk with the agent and the transcript is read in
// the dashboard and through the API; the operator ends a session, disables the other project through the
// confirm dialog (its viewer's socket closes with 4000), scrapes /metrics, checks the signed webhooks and their
// delivery log, and stops the server with SIGTERM. Every step is saved as a screenshot.
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Envelope, MessagePage } from '@usher/protocol';
import { TestSocket } from '@usher/testing';
import { Webhook } from 'standardwebhooks';
import { useChromium } from '../../server/test/browser/chromium.ts';
import { DashboardPage, ensureDashboardBuilt } from '../../server/test/browser/pages/dashboard-page.ts';
import { eventually, gone } from '../../server/test/fixtures/processes.ts';
import { WebhookReceiver } from '../../server/test/fixtures/webhook-receiver.ts';
import { DEMO_AGENT, DEMO_STREAMER } from '../src/demo.ts';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const ADMIN_KEY = 'operator-journey-admin-key-0123456789';
/** kept out of the file, as docs/configuration.md advises: USHER_WEBHOOK_SECRET fills it in */
const WEBHOOK_SECRET = `whsec_${randomBytes(32).toString('base64')}`;

/** A session as POST /sessions answers it. */
interface Created {
  id: string;
  state: string;
  token: string;
  url: string;
}
interface SessionView {
  id: string;
  state: string;
  endCode: number | null;
  endReason: string | null;
  timeline: { from: string | null; to: string; cause: string }[];
}
interface Delivery {
  id: string;
  endpointUrl: string;
  eventType: string;
  sessionId: string;
  projectId: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
}

/** `usher serve` as a child process: its URL, its log lines (pino JSON), and how it ended. */
class UsherProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly log: Record<string, unknown>[] = [];
  /** what it printed that is not a log line, and its stderr */
  printed = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  /** the "usher is listening" log line */
  readonly listening: Promise<Record<string, unknown>>;

  constructor(configFile: string, cwd: string, env: Record<string, string>) {
    // the operator's own USHER_* settings stay out: the test sees only what it passes
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('USHER_')));
    this.child = spawn(process.execPath, [MAIN, 'serve', '--config', configFile], {
      env: { ...base, ...env },
      cwd,
    });
    this.child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => this.child.on('close', resolve));
    this.listening = new Promise((resolve, reject) => {
      // every line is read to the end, so that the server never blocks on a full pipe
      createInterface({ input: this.child.stdout }).on('line', (line) => {
        if (!line.startsWith('{')) {
          this.printed += `${line}\n`;
          return;
        }
        const entry = JSON.parse(line) as Record<string, unknown>;
        this.log.push(entry);
        if (entry.msg === 'usher is listening') resolve(entry);
      });
      void this.exited.then((code) =>
        reject(new Error(`usher serve exited (${code}) before listening; stderr: ${this.stderr}`)),
      );
    });
  }

  /** The last log lines and stderr, to read beside a failure. */
  tail(): string {
    const show = (lines: Record<string, unknown>[]) =>
      lines.map((l) => JSON.stringify(l)).join('\n  ') || '(none)';
    return (
      `usher serve's warnings and errors:\n  ${show(this.log.filter((l) => Number(l.level) >= 40))}\n` +
      `its last log lines:\n  ${show(this.log.slice(-40))}\nstderr:\n  ${this.stderr || '(empty)'}`
    );
  }

  /** Kills it and its workers at once (after a failure: nothing may outlive the test). */
  async kill(): Promise<void> {
    // once it has exited, its pid may belong to another process
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    for (const pid of this.children()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {} // gone already
    }
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** The processes it runs now (its workers), read from /proc. */
  children(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid === this.child.pid) pids.push(Number(entry));
      } catch {} // gone meanwhile
    }
    return pids;
  }
}

/** One sample of a Prometheus exposition: `name{labels}`, labels in any order; undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: string[] = (m[2] ?? '').match(/\w+="(?:[^"\\]|\\.)*"/g) ?? [];
    if (have.length === wanted.length && wanted.every((w) => have.includes(w))) return Number(m[3]);
  }
  return undefined;
}

/**
 * The promise, or a failure that names what was awaited once `ms` have passed: a deadline, so that a failure says
 * where it stopped (with the server's log) before the test runner's own timeout, not a wait.
 */
async function within<T>(what: string, promise: Promise<T>, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

describe('an operator runs Usher (issue 6)', () => {
  before(() => ensureDashboardBuilt());
  const chromium = useChromium();
  let usher: UsherProcess | undefined;
  // also when the test runner's timeout stopped the test
  after(() => usher?.kill());

  test('serve from YAML, watch it in the dashboard, talk, disable a project (4000), read the transcript, scrape /metrics, get signed webhooks, stop with SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usher-operator-'));
    const receiver = await WebhookReceiver.start();
    const configFile = join(dir, 'usher.yaml');
    // what an operator writes after reading docs/configuration.md (paths quoted: JSON strings are YAML too)
    writeFileSync(
      configFile,
      `server:
  port: 0
storage:
  sqlite:
    path: ${JSON.stringify(join(dir, 'usher.db'))}
adminKeys: [${ADMIN_KEY}]
webhooks:
  - url: ${receiver.url}/usher
session:
  timeouts:
    pending: 300
    connecting: 120
    idle: 1800
    paused: 900
projects:
  - id: game
    name: The game
    kind: stream
    worker: { driver: process, command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(DEMO_STREAMER)}] }
    regions: { default: { min: 1, max: 1 } }
  - id: assistant
    name: The assistant
    kind: agent
    worker: { driver: process, command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(DEMO_AGENT)}] }
    regions: { default: { min: 1, max: 2 } }
`,
    );
    usher = new UsherProcess(configFile, dir, { USHER_WEBHOOK_SECRET: WEBHOOK_SECRET });
    const sockets: TestSocket[] = [];
    let dashboard: DashboardPage | undefined;
    try {
      const listening = await usher.listening;
      // as written: the operator appends paths to it
      const url = String(listening.url);
      assert.match(url, /^http:\/\/localhost:\d+$/);
      assert.deepEqual(listening.projects, ['game', 'assistant']);
      const api = async <T>(method: string, path: string, body?: unknown, key: string | null = ADMIN_KEY) => {
        const res = await fetch(url + path, {
          method,
          headers: {
            ...(key ? { authorization: `Bearer ${key}` } : {}),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.text();
        const json = res.headers.get('content-type')?.startsWith('application/json');
        return { status: res.status, body: (json ? JSON.parse(text) : {}) as T, text };
      };
      const connect = (url: string, token: string) => {
        const s = new TestSocket(`${url}?token=${encodeURIComponent(token)}`);
        sockets.push(s);
        return s;
      };

      // 1. the dashboard, where the start-up line points: sign in with the file's admin key; both projects
      assert.equal(listening.dashboard, `${url}/dashboard/`);
      const d = await DashboardPage.signedIn(chromium.browser, url, ADMIN_KEY);
      dashboard = d;
      await d.heading('Overview');
      await d.screenshot('operator-1-overview');
      await d.nav('Projects');
      assert.match(
        await d.shows('tr[data-project="game"]'),
        /^game\tThe game\tstream\tenabled\tdefault: 1 \/ 1/,
      );
      assert.match(
        await d.shows('tr[data-project="assistant"]'),
        /^assistant\tThe assistant\tagent\tenabled\tdefault: 1 \/ 2/,
      );
      await d.screenshot('operator-2-projects');

      // 2. sessions asked for through the API appear on the Sessions page, and go live, without a reload
      await d.nav('Sessions');
      await d.shows('.tabs a[data-state="live"]', 'All live (0)');
      await d.mark();
      const created = async (projectId: string) => {
        const r = await api<Created>('POST', '/sessions', { projectId });
        assert.equal(r.status, 201, r.text);
        return r.body;
      };
      const chat = await created('assistant');
      await d.shows(`tr[data-session="${chat.id}"]`, 'assistant');
      const ana = connect(chat.url, chat.token);
      await within('the chat to be active', ana.state('active'));
      await d.shows(`tr[data-session="${chat.id}"][data-state="active"]`);

      const play = await created('game');
      await d.shows(`tr[data-session="${play.id}"]`, 'game');
      const viewer = connect(play.url, play.token);
      // a stream goes live once its streamer has started and the viewer is connected
      await within('the stream to be active', viewer.state('active'));
      await d.shows(`tr[data-session="${play.id}"][data-state="active"]`);
      await d.shows('.tabs a[data-state="active"]', 'active (2)');
      await d.screenshot('operator-3-sessions-live');
      assert.equal(await d.reloaded(), false, 'the Sessions page followed without a reload');

      // 3. users talk with the agent: a second one joins, each waits for the agent's answer before going on
      const joined = await api<{ token: string; url: string; identity: string }>(
        'POST',
        `/sessions/${chat.id}/join`,
        { identity: 'bo', name: 'Bo' },
      );
      assert.equal(joined.status, 200, joined.text);
      const bo = connect(joined.body.url, joined.body.token);
      const agentSays = (socket: TestSocket, text: string | RegExp) =>
        within(
          `the agent to say ${text}`,
          socket.waitFor(
            (e) =>
              e.type === 'session.message' &&
              e.message.type === 'agent_text' &&
              (typeof text === 'string'
                ? (e.message.data as { text?: string }).text === text
                : text.test(String((e.message.data as { text?: string }).text))),
          ),
        );
      await agentSays(bo, 'Welcome, bo.');
      const said: [TestSocket, string, string | RegExp][] = [
        [ana, 'add buy milk', /^Added #1: buy milk \(for /],
        [bo, 'done 1', 'Done: buy milk.'],
        [ana, 'thanks, Bo', /said: thanks, Bo$/],
      ];
      for (const [i, [socket, text, answer]] of said.entries()) {
        socket.send({ type: 'message', messageType: 'user_text', data: { text }, ref: `said-${i}` });
        const ack = await within(`the ack of ${text}`, socket.next('message_ack'));
        assert.deepEqual([ack.ref, ack.recorded], [`said-${i}`, true]);
        // both users see the answer
        await agentSays(ana, answer);
        await agentSays(bo, answer);
      }

      // 4. the transcript: through the API, and on the session's page in the dashboard (reached by its link)
      const transcript = async (debug: boolean) => {
        const r = await api<MessagePage>(
          'GET',
          `/sessions/${chat.id}/messages?limit=100&include_debug=${debug}`,
        );
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.hasMore, false);
        return r.body.messages;
      };
      const conversation = (messages: Envelope[]) =>
        messages
          .filter((m) => m.type === 'user_text' || m.type === 'agent_text')
          .map((m) => `${m.from.kind}: ${(m.data as { text: string }).text}`);
      const spoken = await transcript(false);
      const lines = conversation(spoken);
      const at = (line: string | RegExp) =>
        lines.findIndex((l) => (typeof line === 'string' ? l === line : line.test(l)));
      const order = [
        at(/^agent: Hello! /),
        at('agent: Welcome, bo.'),
        at('viewer: add buy milk'),
        at(/^agent: Added #1: buy milk/),
        at('user: done 1'),
        at('agent: Done: buy milk.'),
        at('viewer: thanks, Bo'),
        at(/^agent: .* said: thanks, Bo$/),
      ];
      assert.ok(
        order.every((i, n) => i >= 0 && (n === 0 || i > order[n - 1]!)),
        `the conversation, in order: ${lines.join(' | ')}`,
      );
      assert.ok(
        spoken.some((m) => m.type === 'complete_todo_list'),
        'the agent’s list is recorded',
      );

      await d.page.locator(`tr[data-session="${chat.id}"] a`, { hasText: chat.id }).click();
      await d.heading(`Session ${chat.id}`);
      await d.shows('.facts', 'active');
      await d.shows(`.messages li[data-id="${spoken.at(-1)!.id}"]`);
      assert.deepEqual(
        await shownIds(d),
        spoken.map((m) => m.id),
        'the page shows the API’s transcript',
      );
      await d.shows('.messages li', 'Done: buy milk.');
      await d.shows('tr[data-identity="bo"]', 'user');
      await d.screenshot('operator-4-session-transcript');
      // said while the page is open: it appears without a reload
      ana.send({ type: 'message', messageType: 'user_text', data: { text: 'list' }, ref: 'live' });
      await d.shows('.messages li:last-child', '1. [x] buy milk');

      // 5. the operator ends the conversation from its page: both users' sockets close with 1000
      await d.page.locator('main button', { hasText: 'End session' }).click();
      await d.shows('dialog.confirm', 'End session');
      await d.page.locator('dialog.confirm button[value="confirm"]').click();
      assert.equal((await within('the viewer’s socket to close', ana.closed)).code, 1000);
      assert.equal((await within('bo’s socket to close', bo.closed)).code, 1000);
      await d.shows('.facts', '1000 completed');
      await d.screenshot('operator-5-session-ended');

      // 6. the operator disables the game through the confirm dialog; its viewer's socket closes with 4000
      await d.nav('Projects');
      await d.page.locator('tr[data-project="game"] a', { hasText: 'game' }).click();
      await d.heading('Project game');
      // the seed's session.timeouts block (seconds) is what the project's settings show
      const form = d.page.locator('form.project-form');
      for (const [field, seconds] of [
        ['pendingMs', '300'],
        ['connectingMs', '120'],
        ['idleMs', '1800'],
        ['pausedMs', '900'],
      ])
        assert.equal(await form.locator(`[name="timeouts.${field}"]`).inputValue(), seconds, field);
      await d.page.locator('main .actions button', { hasText: 'Disable project' }).click();
      await d.shows('dialog.confirm', 'end now with close code 4000');
      await d.screenshot('operator-6-disable-confirm', { fullPage: false });
      await d.page.locator('dialog.confirm button[value="confirm"]').click();
      assert.equal((await within('the stream viewer’s socket to close', viewer.closed)).code, 4000);
      await d.shows('main .actions .badge', 'disabled');
      await d.shows('.notice', 'Project disabled');
      await d.screenshot('operator-7-project-disabled');
      // the Sessions page lists it as ended, with its code and reason
      await d.nav('Sessions');
      await d.page.locator('.tabs a[data-state="ended"]').click();
      await d.shows(`tr[data-session="${play.id}"][data-state="ended"]`, '4000 project_disabled');
      await d.shows(`tr[data-session="${chat.id}"][data-state="ended"]`, '1000 completed');
      await d.screenshot('operator-8-sessions-ended');
      const ended = (await api<SessionView>('GET', `/sessions/${play.id}`)).body;
      assert.deepEqual([ended.state, ended.endCode, ended.endReason], ['ended', 4000, 'project_disabled']);
      // a new session of the disabled project is refused, and ends at once with 4000 too
      const refused = await api<{
        error: { code: string; details: { sessionId: string; closeCode: number } };
      }>('POST', '/sessions', { projectId: 'game' });
      assert.equal(refused.status, 403, refused.text);
      assert.equal(refused.body.error.code, 'PROJECT_DISABLED');
      assert.equal(refused.body.error.details.closeCode, 4000);
      const turnedAway = refused.body.error.details.sessionId;

      // 7. /metrics: refused without the key; with it, the figures of what happened (the transcripts are read
      // first: what the API returns is committed, and so counted)
      const everything = await transcript(true);
      const streamed = await api<MessagePage>(
        'GET',
        `/sessions/${play.id}/messages?limit=100&include_debug=true`,
      );
      assert.equal(streamed.body.hasMore, false);
      assert.equal((await api('GET', '/metrics', undefined, null)).status, 401);
      const scraped = await api<never>('GET', '/metrics');
      assert.equal(scraped.status, 200);
      const metrics = scraped.text;
      const pool = (project: string) => ({ project, region: 'default' });
      assert.equal(sample(metrics, 'usher_sessions_created_total', pool('assistant')), 1);
      assert.equal(sample(metrics, 'usher_sessions_created_total', pool('game')), 2, 'the refused one too');
      const endedWith = (project: string, code: string, reason: string) =>
        sample(metrics, 'usher_sessions_ended_total', { ...pool(project), code, reason });
      assert.equal(endedWith('assistant', '1000', 'completed'), 1);
      assert.equal(endedWith('game', '4000', 'project_disabled'), 2, 'the live session and the refused one');
      for (const project of ['assistant', 'game']) {
        assert.equal(sample(metrics, 'usher_time_to_active_seconds_count', pool(project)), 1, project);
        for (const state of ['queued', 'connecting', 'active', 'ending'])
          assert.equal(
            sample(metrics, 'usher_sessions', { ...pool(project), state }),
            0,
            `${project} ${state}`,
          );
        assert.equal(sample(metrics, 'usher_queue_length', pool(project)), 0, project);
      }
      assert.equal(
        sample(metrics, 'usher_messages_recorded_total', { project: 'assistant' }),
        everything.length,
        'every transcript entry, debug ones included, is counted once',
      );
      assert.equal(
        sample(metrics, 'usher_messages_relayed_total', { project: 'assistant' }),
        everything.filter((m) => m.type !== 'participant_joined' && m.type !== 'participant_left').length,
        'every message said in the room (the demo agent sends only recorded types)',
      );
      // the stream's room: who came and went is recorded, nothing was said
      assert.equal(
        sample(metrics, 'usher_messages_recorded_total', { project: 'game' }) ?? 0,
        streamed.body.messages.length,
      );
      assert.equal(sample(metrics, 'usher_messages_relayed_total', { project: 'game' }) ?? 0, 0);
      assert.ok(
        (sample(metrics, 'usher_worker_starts_total', { ...pool('game'), driver: 'process' }) ?? 0) >= 1,
      );
      assert.equal(
        sample(metrics, 'usher_worker_crashes_total', { ...pool('assistant'), recoverable: 'false' }) ?? 0,
        0,
      );

      // 8. webhooks: every event of the three sessions arrived, signed; the delivery log says delivered
      const verifier = new Webhook(WEBHOOK_SECRET);
      for (const { id, projectId, end } of [
        { id: chat.id, projectId: 'assistant', end: [1000, 'completed'] },
        { id: play.id, projectId: 'game', end: [4000, 'project_disabled'] },
        { id: turnedAway, projectId: 'game', end: [4000, 'project_disabled'] },
      ]) {
        const of = (type: string) =>
          receiver.received.filter((r) => r.json.data.sessionId === id && r.json.type === type);
        // the session's last events: it ended, and everyone who joined its room has left. The receiver calls
        // back on each request; the predicate looks at all it has received.
        await within(
          `the last webhooks of ${id}`,
          receiver.waitFor(
            () =>
              of('session.status_changed').some((r) => r.json.data.status === 'ended') &&
              of('session.participant_left').length === of('session.participant_joined').length,
          ),
        );
        const changes = of('session.status_changed').sort((a, b) =>
          a.json.timestamp.localeCompare(b.json.timestamp),
        );
        const { timeline } = (await api<SessionView>('GET', `/sessions/${id}`)).body;
        assert.deepEqual(
          changes.map((r) => r.json.data.status),
          timeline.map((e) => e.to),
          `every state change of ${id} arrived`,
        );
        const last = changes.at(-1)!.json.data;
        assert.deepEqual([last.projectId, last.endCode, last.endReason], [projectId, ...end]);
        const identities = (type: string) =>
          of(type)
            .map((r) => (r.json.data.participant as { identity: string }).identity)
            .sort();
        assert.deepEqual(identities('session.participant_left'), identities('session.participant_joined'));
        if (id === chat.id)
          assert.ok(identities('session.participant_joined').includes('bo'), 'bo joining was sent');
        const hooks = receiver.received.filter((r) => r.json.data.sessionId === id);
        for (const r of hooks) {
          assert.equal(r.path, '/usher');
          assert.deepEqual(verifier.verify(r.body, r.headers as Record<string, string>), r.json, 'signed');
          assert.equal(r.json.data.projectId, projectId);
        }
        // the server records a delivery as delivered once the receiver's 200 has reached it: nothing tells the
        // test when, so the log is read again (every 25 ms, for 30 s at most) until all are delivered
        const deliveries = await eventually(`the deliveries of ${id} to be delivered`, async () => {
          const r = await api<{ deliveries: Delivery[] }>(
            'GET',
            `/webhooks/deliveries?sessionId=${id}&limit=100`,
          );
          assert.equal(r.status, 200, r.text);
          const all = r.body.deliveries;
          return all.every((x) => x.status === 'delivered') && all;
        });
        assert.deepEqual(
          deliveries.map((x) => x.id).sort(),
          hooks.map((r) => r.headers['webhook-id']).sort(),
          'each delivery arrived once, under its id',
        );
        for (const x of deliveries) {
          assert.equal(x.endpointUrl, `${receiver.url}/usher`);
          assert.equal(x.projectId, projectId);
          assert.equal(x.attempts, 1);
        }
      }

      // 9. the overview's close-code chart counts the day's endings
      await d.nav('Overview');
      await d.shows('canvas[data-chart="closeCodes"][aria-label]');
      const closeCodes = await d.page.locator('canvas[data-chart="closeCodes"]').getAttribute('aria-label');
      assert.match(closeCodes ?? '', /1000 completed: 1\b/);
      assert.match(closeCodes ?? '', /4000 project_disabled: 2\b/);
      await d.screenshot('operator-9-overview');

      // 10. SIGTERM: the server drains (nothing is live), stops its workers and exits 0
      const workers = usher.children();
      assert.ok(workers.length >= 1, 'the warm workers run as children of the server');
      usher.child.kill('SIGTERM');
      assert.equal(await within('usher serve to exit', usher.exited), 0, usher.tail());
      // the workers are not the test's children, so nothing tells it when they are gone: gone() reads /proc
      // again (every 10 ms, for 10 s at most)
      for (const pid of workers) assert.ok(await gone(pid), `worker process ${pid} is gone`);
      assert.ok(usher.log.some((l) => l.msg === 'stopped'));
      assert.equal(
        usher.printed,
        '',
        'stdout had log lines only (the admin key is configured: none was made)',
      );
      const errors = usher.log.filter((l) => Number(l.level) >= 50);
      assert.deepEqual(errors, [], 'no error was logged');
    } catch (err) {
      // beside the failure: what the server said
      (err as Error).message += `\n${usher.tail()}`;
      throw err;
    } finally {
      await dashboard?.close();
      for (const s of sockets) s.ws.terminate();
      await usher.kill();
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function shownIds(d: DashboardPage): Promise<string[]> {
  return d.page
    .locator('.messages li[data-id]')
    .evaluateAll((els) => els.map((e) => e.getAttribute('data-id')!));
}
