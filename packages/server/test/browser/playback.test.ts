// Real Chromium playing Usher stream sessions through the Web SDK, with demo streamers as worker processes:
// the video really plays and input echoes back on the data channel; a third viewer of two workers waits in
// line and is seated when one of the first two leaves; a dropped connection resumes the same session.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { useChromium } from './chromium.ts';
import { ensureSdkBuilt, SdkPage } from './pages/sdk-page.ts';
import { demoProject, useStreamingServer } from './streaming.ts';

describe('stream sessions in Chromium', () => {
  before(() => ensureSdkBuilt());
  const server = useStreamingServer([demoProject('demo', { reuseWorkers: true })]);
  const { t } = server;
  const chromium = useChromium();

  test('the video plays, the session is active, and input comes back on the data channel', async () => {
    const viewer = await SdkPage.open(chromium.browser, t.url);
    try {
      const started = await viewer.start('demo');
      assert.ok('id' in started, `the session starts: ${JSON.stringify(started)}`);
      await viewer.waitForState('active');
      const played = await viewer.videoPlays();
      assert.deepEqual([played.width, played.height], [640, 360]);
      assert.ok(played.to > played.from);
      await viewer.waitForEvent('stream');

      await viewer.dataChannelOpen();
      assert.equal(await viewer.sendInput('hello'), true, 'the data channel takes the input');
      await viewer.waitForEvent('dataChannelMessage');
      const echoes = await viewer.events('dataChannelMessage');
      assert.deepEqual(
        echoes.map((e) => e.data),
        ['hello'],
      );
      assert.equal((await t.session(started.id)).state, 'active');
      await viewer.screenshot('playback-video-plays');
      await viewer.leave();
      await t.waitForState(started.id, 'ended');
    } finally {
      await viewer.close();
    }
  });

  test('a third viewer of two workers waits in line at position 1, and plays once one of the first two leaves', async () => {
    await t.readyWorkers('demo', 2);
    const viewers = await Promise.all([1, 2, 3].map(() => SdkPage.open(chromium.browser, t.url)));
    const [first, second, third] = viewers as [SdkPage, SdkPage, SdkPage];
    try {
      for (const v of [first, second]) {
        assert.ok('id' in (await v.start('demo')));
        await v.waitForState('active');
      }
      await Promise.all([first.videoPlays(), second.videoPlays()]);

      const waiting = await third.start('demo');
      assert.ok('id' in waiting, JSON.stringify(waiting));
      assert.equal(waiting.state, 'queued', 'both workers are busy');
      const queue = await third.waitForEvent('queue');
      assert.deepEqual(queue.data, {
        position: 1,
        queueLength: 1,
        estimatedWaitMs: queue.data.estimatedWaitMs,
      });
      await third.screenshot('playback-third-viewer-queued');

      const firstId = await first.sessionId();
      await first.leave();
      const left = await first.waitForEvent('ended');
      assert.deepEqual(left.data, { code: 1000, reason: 'completed', outcome: 'disconnected' });
      const ended = await t.waitForState(firstId, 'ended');
      assert.equal(ended.endCode, 1000);

      await third.waitForState('active');
      const played = await third.videoPlays();
      assert.equal(played.width, 640);
      assert.deepEqual(await third.states(), ['queued', 'connecting', 'active']);
      const seated = await t.session(waiting.id);
      assert.equal(seated.workerId, ended.workerId, "the third viewer is seated on the first one's worker");
      await third.screenshot('playback-third-viewer-seated');
      await second.screenshot('playback-second-viewer-still-playing');
      for (const v of [second, third]) await v.leave();
    } finally {
      await Promise.all(viewers.map((v) => v.close()));
    }
  });

  test('a connection dropped without a close frame (1006) resumes the same session, and the video plays again', async () => {
    await t.readyWorkers('demo', 2);
    const viewer = await SdkPage.open(chromium.browser, t.url);
    try {
      const started = await viewer.start('demo');
      assert.ok('id' in started);
      await viewer.waitForState('active');
      await viewer.videoPlays();

      // the connection breaks: its TCP connection goes without a WebSocket close frame (Chromium's offline
      // emulation leaves open WebSockets alone, so the server's end is cut)
      assert.equal(server.dropSessionSockets(started.id), 1);
      const reconnecting = await viewer.waitForEvent('reconnecting');
      assert.equal(reconnecting.data.code, 1006);

      const reconnected = await viewer.waitForEvent('reconnected');
      assert.equal(reconnected.data.sessionId, started.id, 'the same session');
      assert.equal(reconnected.data.fresh, false);
      assert.equal(await viewer.sessionId(), started.id);
      await viewer.waitForState('active');
      await viewer.waitForEvent('stream', {}, 2);
      await viewer.videoPlays();
      const session = await t.session(started.id);
      assert.equal(session.state, 'active', 'the session never ended on the server');
      assert.deepEqual(await viewer.events('ended'), []);
      await viewer.screenshot('playback-reconnected');
      await viewer.leave();
    } finally {
      await viewer.close();
    }
  });
});
