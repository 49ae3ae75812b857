// The operator dashboard in real Chromium, served by the server at /dashboard/, clicked through as an operator
// would: sign in (a wrong key is refused), create a project and edit every setting (read back through the
// API), watch sessions appear and change state without a reload, read a session's timeline, participants and
// transcript (with debug messages and older pages), see the queue's positions and waits, drain a worker, list
// the servers (two sharing a PostgreSQL database), disable a project through the confirm dialog (its live
// viewer's socket closes with 4000), and the overview's counts and charts. Every page is saved as a screenshot.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { Envelope, MessagePage, Project } from '@usher/protocol';
import {
  agentProject,
  databaseKinds,
  streamProject,
  TEST_ADMIN_KEY,
  TestServer,
  type TestSocket,
  useTestServer,
} from '@usher/testing';
import type { WebSocketRoute } from 'playwright-core';
import { useChromium } from './chromium.ts';
import { DashboardPage, ensureDashboardBuilt } from './pages/dashboard-page.ts';

describe('the operator dashboard in Chromium', () => {
  before(() => ensureDashboardBuilt());
  const { t } = useTestServer('sqlite', {
    projects: [
      streamProject('play', { min: 0, max: 2 }),
      agentProject('chat', { min: 0, max: 1 }),
      agentProject('line', { min: 1, max: 1 }),
      streamProject('shutter', { min: 1, max: 1 }),
      agentProject('crowd', { min: 0, max: 1 }),
    ],
  });
  const chromium = useChromium();

  const open = () => DashboardPage.signedIn(chromium.browser, t.url, TEST_ADMIN_KEY);

  /** A session of the project with its viewer connected, once it is active. */
  async function liveSession(projectId: string): Promise<{ id: string; viewer: TestSocket }> {
    const s = await t.createSession(projectId);
    const viewer = await t.connect(s);
    await t.waitForState(s.id, 'active');
    return { id: s.id, viewer };
  }

  test('the server serves the dashboard at /dashboard/', async () => {
    const redirect = await fetch(`${t.url}/dashboard`, { redirect: 'manual' });
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.get('location'), '/dashboard/');
    for (const [path, type] of [
      ['/dashboard/', 'text/html'],
      ['/dashboard/dashboard.js', 'text/javascript'],
      ['/dashboard/dashboard.css', 'text/css'],
    ]) {
      const r = await fetch(`${t.url}${path}`);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type') ?? '', new RegExp(`^${type}`), path);
    }
  });

  test('sign-in: a wrong key is refused, the admin key opens the overview; a refused key and sign-out return to sign-in', async () => {
    const d = await DashboardPage.open(chromium.browser, t.url);
    try {
      await d.signIn('not-the-key');
      assert.match(await d.signInMessage(), /^That key was refused: the admin key is not valid/);
      await d.screenshot('dashboard-sign-in-refused');

      await d.signIn(TEST_ADMIN_KEY);
      await d.heading('Overview');
      await d.live();
      assert.equal(
        await d.page.evaluate(() => sessionStorage.getItem('usher.adminKey')),
        TEST_ADMIN_KEY,
        'the key is kept for the tab',
      );

      // the key stops working (here: another one in its place): the next call's 401 signs the operator out
      await d.page.evaluate(() => sessionStorage.setItem('usher.adminKey', 'a-revoked-key'));
      await d.page.reload();
      assert.match(await d.signInMessage(), /^Your admin key was refused \(the admin key is not valid/);
      assert.equal(await d.page.evaluate(() => sessionStorage.getItem('usher.adminKey')), null);

      await d.signIn(TEST_ADMIN_KEY);
      await d.heading('Overview');
      await d.page.locator('nav.sidebar button', { hasText: 'Sign out' }).click();
      assert.equal(await d.signInMessage(), 'Signed out.');
      assert.equal(await d.page.evaluate(() => sessionStorage.getItem('usher.adminKey')), null);
    } finally {
      await d.close();
    }
  });

  test('projects: create one, edit every setting and read them back through the API; the API’s validation errors show beside the field', async () => {
    const d = await open();
    const project = async () => (await t.api<Project>('GET', '/projects/arcade')).body;
    try {
      await d.nav('Projects');
      await d.shows('tr[data-project="play"]');
      await d.page.locator('a', { hasText: 'New project' }).click();
      await d.heading('New project');
      const form = d.page.locator('form.project-form');
      await form.locator('[name="id"]').fill('arcade');
      await form.locator('[name="name"]').fill('Arcade');
      await form.locator('[name="kind"]').selectOption('stream');
      await form.locator('[name="worker.driver"]').selectOption('process');
      await form.locator('[name="worker.command"]').fill('fake-worker\n--level\n3');
      await form.locator('tr.region [name="min"]').fill('0');
      await form.locator('tr.region [name="max"]').fill('1');
      await d.screenshot('dashboard-project-new');
      await form.locator('button[type="submit"]').click();
      await d.heading('Project arcade');
      await d.shows('.notice', 'Project created');
      const created = await project();
      assert.equal(created.name, 'Arcade');
      assert.deepEqual(created.worker, { driver: 'process', command: ['fake-worker', '--level', '3'] });
      assert.deepEqual(created.regions, { default: { min: 0, max: 1 } });
      assert.equal(created.enabled, true);

      // every setting the issue names, changed through the form
      const fields: [string, string][] = [
        ['name', 'Arcade floor'],
        ['maxQueueLength', '5'],
        ['timeouts.pendingMs', '90'],
        ['timeouts.connectingMs', '45'],
        ['timeouts.seatHoldMs', '20'],
        ['timeouts.idleMs', '600'],
        ['timeouts.pausedMs', '300'],
        ['timeouts.maxRuntimeMs', '900'],
        ['timeouts.reconnectWindowMs', '30'],
        ['timeouts.shutdownGraceMs', '5'],
        ['timeouts.afkWarningMs', '100'],
        ['timeouts.afkDisconnectMs', '20'],
        ['autoRestart.maxRestarts', '2'],
      ];
      for (const [name, value] of fields) await form.locator(`[name="${name}"]`).fill(value);
      await form.locator('tr.region [name="min"]').fill('1');
      await form.locator('tr.region [name="max"]').fill('3');
      await form.locator('button', { hasText: 'Add region' }).click();
      await form.locator('tr.region').nth(1).locator('[name="region"]').fill('eu');
      await form.locator('tr.region').nth(1).locator('[name="min"]').fill('0');
      await form.locator('tr.region').nth(1).locator('[name="max"]').fill('2');
      await form.locator('[name="afkEnabled"]').uncheck();
      await form.locator('[name="autoRestart.enabled"]').check();
      await form.locator('[name="reuseWorkers"]').check();
      await form.locator('[name="public"]').check();
      await form.locator('button[type="submit"]').click();
      await d.shows('.notice', 'Settings saved');
      await d.screenshot('dashboard-project-edit');

      const saved = await project();
      assert.equal(saved.name, 'Arcade floor');
      assert.deepEqual(saved.regions, { default: { min: 1, max: 3 }, eu: { min: 0, max: 2 } });
      assert.equal(saved.defaultRegion, 'default');
      assert.deepEqual(saved.timeouts, {
        pendingMs: 90_000,
        connectingMs: 45_000,
        seatHoldMs: 20_000,
        afkWarningMs: 100_000,
        afkDisconnectMs: 20_000,
        idleMs: 600_000,
        pausedMs: 300_000,
        maxRuntimeMs: 900_000,
        reconnectWindowMs: 30_000,
        shutdownGraceMs: 5_000,
      });
      assert.equal(saved.afkEnabled, false);
      assert.equal(saved.maxQueueLength, 5);
      assert.deepEqual(saved.autoRestart, { enabled: true, maxRestarts: 2 });
      assert.equal(saved.reuseWorkers, true);
      assert.equal(saved.public, true);
      assert.deepEqual(saved.worker, created.worker, 'the worker is kept as it was');

      // the API refuses more warm workers than the pool may have: its message shows beside the region
      await form.locator('tr.region [name="min"]').first().fill('5');
      await form.locator('button[type="submit"]').click();
      const beside = await d.shows(
        '[data-path="regions"] .field-error',
        'min (5) must not be greater than max (3)',
      );
      assert.match(beside, /^regions\.default: /);
      await d.shows('.form-error', 'regions.default: min (5)');
      await d.screenshot('dashboard-project-invalid');
      // ...and a timeout below the schema's minimum: beside that timeout
      await form.locator('tr.region [name="min"]').first().fill('1');
      await form.locator('[name="timeouts.pendingMs"]').fill('0');
      await form.locator('button[type="submit"]').click();
      await d.shows('[data-path="timeouts.pendingMs"] .field-error', 'timeouts.pendingMs must be >= 1');
      assert.deepEqual(await project(), saved, 'nothing was saved');

      await d.nav('Projects');
      await d.shows('tr[data-project="arcade"]', 'default: 1 / 3, eu: 0 / 2');
      await d.screenshot('dashboard-projects');
    } finally {
      await d.close();
    }
  });

  test('sessions: a session created through the API appears and changes state without a reload', async () => {
    const d = await open();
    try {
      await d.nav('Sessions');
      await d.page.locator('select[name="project"]').selectOption('play');
      await d.shows('.tabs[data-project="play"] a[data-state="live"]', 'All live (0)');
      await d.mark();

      const s = await t.createSession('play');
      const row = `tr[data-session="${s.id}"]`;
      await d.shows(row, 'play');
      const viewer = await t.connect(s);
      await d.shows(`${row}[data-state="active"]`, 'active');
      await d.shows('.tabs a[data-state="active"]', 'active (1)');
      await d.screenshot('dashboard-sessions');

      await t.api('POST', `/sessions/${s.id}/end`);
      assert.equal((await viewer.closed).code, 1000);
      await d.gone(row);
      await d.page.locator('.tabs a[data-state="ended"]').click();
      await d.shows(`${row}[data-state="ended"]`, '1000 completed');
      assert.equal(await d.reloaded(), false, 'the page was never loaded again');
    } finally {
      await d.close();
    }
  });

  test('sessions: the counts are the server’s; a list cut at its limit says so, and shows more on request', async () => {
    const ids: string[] = [];
    for (let n = 0; n < 3; n++) ids.push((await t.createSession('crowd')).id);
    // one worker: the two after the first wait in line
    assert.equal((await t.session(ids[2]!)).state, 'queued');
    const d = await open();
    try {
      await d.page.goto(`${t.url}/dashboard/#/sessions?project=crowd&limit=2`);
      await d.heading('Sessions');
      await d.shows('.tabs[data-project="crowd"] a[data-state="live"]', 'All live (3)');
      await d.shows('.tabs a[data-state="queued"]', 'queued (2)');
      await d.shows('.list-cut', 'Showing the newest 2 of 3 sessions.');
      const rows = () => d.page.locator('tr[data-session]').count();
      assert.equal(await rows(), 2);
      // the newest two
      await d.shows(`tr[data-session="${ids[2]}"]`);
      await d.shows(`tr[data-session="${ids[1]}"]`);
      await d.screenshot('dashboard-sessions-cut');

      await d.page.locator('.list-cut a', { hasText: 'Show 20' }).click();
      await d.shows(`tr[data-session="${ids[0]}"]`);
      await d.gone('.list-cut:not([hidden])');
      assert.equal(await rows(), 3);

      await d.page.goto(`${t.url}/dashboard/#/sessions?project=crowd&state=queued&limit=1`);
      await d.shows('.list-cut', 'Showing the newest 1 of 2 sessions.');
      await d.shows(`tr[data-session="${ids[2]}"]`, 'queued');
      assert.equal(await rows(), 1);
      assert.ok(
        d.calls.every((c) => !c.includes('limit=1000')),
        `no call asks for every session: ${d.calls.join(', ')}`,
      );
    } finally {
      await d.close();
      for (const id of ids.reverse()) await t.api('POST', `/sessions/${id}/end`);
      for (const id of ids) await t.waitForState(id, 'ended');
    }
  });

  test('the event stream: dropped, it reconnects and the live views go on without a reload', async () => {
    const d = await DashboardPage.open(chromium.browser, t.url);
    // the page's event sockets pass through the test, which can cut them
    const sockets: WebSocketRoute[] = [];
    await d.page.routeWebSocket(/\/events\/ws/, (ws) => {
      ws.connectToServer();
      sockets.push(ws);
    });
    try {
      await d.signIn(TEST_ADMIN_KEY);
      await d.live();
      await d.nav('Sessions');
      await d.page.locator('select[name="project"]').selectOption('play');
      await d.shows('.tabs[data-project="play"] a[data-state="live"]', 'All live (0)');
      await d.mark();
      await d.recordLiveStatus();

      assert.equal(sockets.length, 1);
      await sockets[0]!.close({ code: 1001, reason: 'cut by the test' });
      const s = await t.createSession('play');
      await d.shows(`tr[data-session="${s.id}"]`, 'play');
      await d.live();
      assert.equal(sockets.length, 2, 'a second socket');
      // the admin key travels as a subprotocol, never in the URL
      for (const ws of sockets) assert.equal(new URL(ws.url()).search, '', ws.url());
      assert.deepEqual(await d.liveStatuses(), ['reconnecting', 'live']);
      assert.equal(await d.reloaded(), false);
      await t.api('POST', `/sessions/${s.id}/end`);
      await d.gone(`tr[data-session="${s.id}"]`);
    } finally {
      await d.close();
    }
  });

  test('a session’s page: live transcript, close code and reason, timeline with causes, participants, debug messages and older pages', async () => {
    const { id, viewer } = await liveSession('chat');
    // 53 things said and 2 debug notes, each acknowledged once recorded
    const said = 53;
    for (let n = 1; n <= said; n++)
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: `line ${n}` }, ref: `u${n}` });
    for (const n of [1, 2])
      viewer.send({ type: 'message', messageType: 'debug', data: { text: `note ${n}` }, ref: `d${n}` });
    await viewer.untilOther((frames) => frames.filter((f) => f.type === 'message_ack').length === said + 2);

    const d = await open();
    try {
      await d.nav('Sessions');
      await d.page.locator(`tr[data-session="${id}"] a`, { hasText: id }).click();
      await d.heading(`Session ${id}`);
      await d.shows('.facts', 'active');
      await d.shows('.messages li', `line ${said}`);
      // its own socket, opened with the admin key as a subprotocol: nothing secret in the URL
      assert.equal((await d.socketTo(`/sessions/${id}/ws`)).search, '');
      for (const url of d.socketUrls) assert.equal(new URL(url).search, '', url);
      // what is said while the page is open appears without a reload
      await d.mark();
      viewer.send({ type: 'message', messageType: 'user_text', data: { text: 'said live' }, ref: 'live' });
      await d.shows('.messages li:last-child', 'said live');
      // more than a page said at once, between two reads of the newest page: none is skipped
      for (let n = 1; n <= 60; n++)
        viewer.send({
          type: 'message',
          messageType: 'user_text',
          data: { text: `burst ${n}` },
          ref: `b${n}`,
        });
      await d.shows('.messages li:last-child', 'burst 60');
      const sinceOpened = await recorded(id, false);
      const shownNow = await shownIds(d);
      assert.deepEqual(shownNow, ids(sinceOpened.slice(-shownNow.length)), 'every message, in order, no gap');
      viewer.send({ type: 'message', messageType: 'debug', data: { text: 'note 3' }, ref: 'd3' });
      await viewer.untilOther((frames) => frames.some((f) => f.type === 'message_ack' && f.ref === 'd3'));

      // the operator ends it; the page follows (close code, reason, the last transitions) without a reload
      await d.page.locator('main button', { hasText: 'End session' }).click();
      await d.shows('dialog.confirm', 'End session');
      await d.page.locator('dialog.confirm button[value="confirm"]').click();
      assert.equal((await viewer.closed).code, 1000);
      await d.shows('.facts', '1000 completed');
      await d.shows('.facts', 'ended on request');
      const session = await t.waitForState(id, 'ended');
      const timeline = session.timeline as { from: string | null; to: string; cause: string }[];
      await d.shows('.timeline tbody tr:last-child', 'ended');
      const rows = await d.texts('.timeline tbody tr');
      assert.equal(rows.length, timeline.length);
      rows.forEach((text, i) => {
        const { to, cause } = timeline[i]!;
        assert.ok(text.includes(to) && text.includes(cause), `row ${i}: ${text} shows ${to} ${cause}`);
      });
      assert.ok(
        timeline.some((e) => e.cause === 'api:end'),
        'the end is recorded with its cause',
      );

      const viewerIdentity = (
        await t.api<MessagePage>('GET', `/sessions/${id}/messages?limit=100`)
      ).body.messages.find((m) => m.type === 'user_text')!.from.identity;
      await d.shows(`tr[data-identity="${viewerIdentity}"]`, 'viewer');

      // the transcript: the newest page of 50 (and what was said since it was read), then older pages; every
      // message once and in order
      const all = await recorded(id, false);
      assert.ok(all.length > 50, `more than a page (${all.length})`);
      await d.shows(`.messages li[data-id="${all.at(-1)!.id}"]`);
      const newest = await shownIds(d);
      assert.ok(newest.length >= 50 && newest.length < all.length, `${newest.length} shown`);
      assert.deepEqual(newest, ids(all.slice(-newest.length)));
      await d.screenshot('dashboard-session');
      // older pages, one click each, until the first message is shown
      for (let n = (await shownIds(d)).length; n < all.length; n = (await shownIds(d)).length) {
        await d.page.locator('button', { hasText: 'Older messages' }).click();
        await d.page.waitForFunction((shown) => document.querySelectorAll('.messages li').length > shown, n);
      }
      await d.shows(`.messages li[data-id="${all[0]!.id}"]`);
      assert.deepEqual(await shownIds(d), ids(all));
      await d.gone('button.older:not([hidden])');
      assert.deepEqual(await d.texts('.messages li[data-type="debug"]'), []);

      // with the toggle, the debug notes too
      const withDebug = await recorded(id, true);
      await d.page.locator('input[name="debug"]').check();
      await d.shows('.messages li[data-type="debug"]', 'note 3');
      assert.deepEqual(await shownIds(d), ids(withDebug.slice(-50)));
      await d.screenshot('dashboard-session-debug');
      await d.page.locator('input[name="debug"]').uncheck();
      await d.gone('.messages li[data-type="debug"]');
      assert.equal(await d.reloaded(), false);
    } finally {
      await d.close();
    }
  });

  test('queues: a queued session at position 1 with its estimated wait; the line moves without a reload', async () => {
    // one session of 60 s gives the pool a mean duration, hence estimates
    const first = await liveSession('line');
    await t.advance(60_000);
    await t.api('POST', `/sessions/${first.id}/end`);
    await t.waitForState(first.id, 'ended');
    await t.readyWorkers('line', 1);
    const seated = await liveSession('line');
    const waiting = await t.createSession('line');
    assert.equal(waiting.state, 'queued');

    const d = await open();
    try {
      await d.nav('Queues');
      const queue = '[data-queue="line/default"]';
      const at = (id: string) => `${queue} tr[data-session="${id}"]`;
      assert.match(await d.shows(at(waiting.id)), /^1\t.*\t1 min$/);
      await d.shows(queue, '1 waiting');
      await d.mark();

      const later = await t.createSession('line');
      assert.match(await d.shows(at(later.id)), /^2\t.*\t2 min$/);
      await d.shows(queue, '2 waiting');
      await d.screenshot('dashboard-queues');

      // the seated session ends at once (0 s): the mean halves, and the one behind moves up
      await t.api('POST', `/sessions/${seated.id}/end`);
      await d.gone(at(waiting.id));
      assert.match(await d.shows(at(later.id), '30 s'), /^1\t/);
      assert.equal(await d.reloaded(), false);
      await t.api('POST', `/sessions/${later.id}/end`);
      await d.gone(queue);
      await d.shows('.queues .empty', 'No session is waiting.');
      await t.api('POST', `/sessions/${waiting.id}/end`);
    } finally {
      await d.close();
    }
  });

  test('workers: each one’s state and session; draining one goes through a confirmation', async () => {
    const { id, viewer } = await liveSession('line');
    const worker = (await t.session(id)).workerId as string;
    const d = await open();
    try {
      await d.nav('Workers');
      await d.page.locator('select[name="project"]').selectOption('line');
      const row = `tr[data-worker="${worker}"]`;
      assert.match(await d.shows(row, id), /busy/);
      await d.screenshot('dashboard-workers');

      await d.page.locator(`${row} button`, { hasText: 'Drain' }).click();
      await d.shows('dialog.confirm', 'stops once its current session ends');
      await d.page.locator('dialog.confirm button[value="confirm"]').click();
      await d.shows(row, 'draining');
      const drained = (
        await t.api<{ workers: { id: string; draining: boolean }[] }>('GET', '/workers?projectId=line')
      ).body.workers.find((w) => w.id === worker);
      assert.equal(drained?.draining, true);

      // its session ends: the worker stops and leaves the list
      await t.api('POST', `/sessions/${id}/end`);
      await viewer.closed;
      await d.gone(row);
    } finally {
      await d.close();
    }
  });

  test('servers: this one, alive', async () => {
    const d = await open();
    try {
      await d.nav('Servers');
      const row = await d.shows('tr[data-server="test-server"]', 'this one');
      assert.match(row, /alive/);
      assert.ok(row.includes(t.url), row);
      await d.screenshot('dashboard-servers');
    } finally {
      await d.close();
    }
  });

  test('disabling a project asks first, then its live viewer’s socket closes with 4000', async () => {
    const { id, viewer } = await liveSession('shutter');
    const d = await open();
    try {
      await d.nav('Projects');
      await d.page.locator('tr[data-project="shutter"] a', { hasText: 'shutter' }).click();
      await d.heading('Project shutter');
      const disable = d.page.locator('main .actions button', { hasText: 'Disable project' });

      // canceled: nothing happens
      await disable.click();
      await d.shows('dialog.confirm', 'end now with close code 4000');
      await d.page.locator('dialog.confirm button[value="cancel"]').click();
      await d.gone('dialog.confirm');
      assert.equal((await t.api<Project>('GET', '/projects/shutter')).body.enabled, true);
      assert.equal((await t.session(id)).state, 'active');

      await disable.click();
      await d.shows('dialog.confirm', 'end now with close code 4000');
      await d.screenshot('dashboard-disable-confirm', { fullPage: false });
      await d.page.locator('dialog.confirm button[value="confirm"]').click();
      const closed = await viewer.closed;
      assert.equal(closed.code, 4000);
      await d.shows('main .actions .badge', 'disabled');
      await d.shows('.notice', 'Project disabled');
      assert.equal((await t.api<Project>('GET', '/projects/shutter')).body.enabled, false);
      const ended = await t.waitForState(id, 'ended');
      assert.deepEqual([ended.endCode, ended.endReason], [4000, 'project_disabled']);

      await d.page.locator('main .actions button', { hasText: 'Enable project' }).click();
      await d.page.locator('dialog.confirm button[value="confirm"]').click();
      await d.shows('main .actions .badge', 'enabled');
    } finally {
      await d.close();
    }
  });

  test('overview: counts by state (the server’s) and the last day in charts (states, queue and waits, close codes); leaving destroys the charts', async () => {
    const { id } = await liveSession('play');
    const d = await DashboardPage.signedIn(chromium.browser, t.url, TEST_ADMIN_KEY, {
      countObservers: true,
    });
    try {
      await d.shows('.count[data-state="active"] .count-value', '1');
      assert.ok(
        !d.calls.some((c) => c.startsWith('GET /sessions')),
        `counted by the server, not from a list: ${d.calls.join(', ')}`,
      );
      await d.shows('canvas[data-chart="closeCodes"][aria-label]');
      const label = (chart: string) =>
        d.page.locator(`canvas[data-chart="${chart}"]`).getAttribute('aria-label') as Promise<string>;
      const closeCodes = await label('closeCodes');
      assert.match(closeCodes, /1000 completed: \d+/);
      assert.match(closeCodes, /4000 project_disabled: 1/);
      assert.match(await label('states'), /active 1/);
      assert.match(
        await label('queue'),
        /^Queue length and waits over \d+ intervals; the longest queue: \d+$/,
      );
      await d.screenshot('dashboard-overview');
      await t.api('POST', `/sessions/${id}/end`);
      await d.shows('.count[data-state="active"] .count-value', '0');

      // each chart observes its box while shown; leaving the page destroys it, observers and all, every time
      assert.ok((await d.observers()).resize >= 3, JSON.stringify(await d.observers()));
      for (let visit = 0; visit < 2; visit++) {
        await d.nav('Servers');
        assert.deepEqual(await d.observers(), { resize: 0, mutation: 0 }, `after visit ${visit + 1}`);
        await d.nav('Overview');
        await d.shows('canvas[data-chart="closeCodes"][aria-label]');
      }
    } finally {
      await d.close();
    }
  });

  /** Every recorded message of a session, oldest first (the API's pages, read back to the start). */
  async function recorded(id: string, debug: boolean): Promise<Envelope[]> {
    const all: Envelope[] = [];
    let cursor = '';
    for (;;) {
      const r = await t.api<MessagePage>(
        'GET',
        `/sessions/${id}/messages?limit=100&include_debug=${debug}${cursor}`,
      );
      all.unshift(...r.body.messages);
      if (!r.body.hasMore) return all;
      cursor = `&before=${encodeURIComponent(r.body.nextBefore!)}&before_id=${r.body.nextBeforeId}`;
    }
  }
});

describe('the dashboard lists every server that shares the database', {
  skip: !databaseKinds().includes('postgres'),
}, () => {
  before(() => ensureDashboardBuilt());
  const suite = useTestServer('postgres', { serverId: 'server-a' });
  const { t } = suite;
  const chromium = useChromium();

  test('two servers on one PostgreSQL: both listed, the one that answered marked', async () => {
    const other = await new TestServer({ storage: suite.db.storage, serverId: 'server-b' }).start();
    const d = await DashboardPage.signedIn(chromium.browser, t.url, TEST_ADMIN_KEY);
    try {
      await d.nav('Servers');
      assert.match(await d.shows('tr[data-server="server-a"]', 'this one'), /alive/);
      const b = await d.shows('tr[data-server="server-b"]', other.url);
      assert.match(b, /alive/);
      assert.ok(!b.includes('this one'));
      await d.screenshot('dashboard-servers-two');
      // server-b drains: the list says so on its next refresh
      await other.server.drain({ timeoutMs: 0 });
      await d.shows('tr[data-server="server-b"]', 'draining');
    } finally {
      await d.close();
      await other.close();
    }
  });
});

const ids = (messages: { id: string }[]) => messages.map((m) => m.id);

function shownIds(d: DashboardPage): Promise<string[]> {
  return d.page
    .locator('.messages li[data-id]')
    .evaluateAll((els) => els.map((e) => e.getAttribute('data-id')!));
}
