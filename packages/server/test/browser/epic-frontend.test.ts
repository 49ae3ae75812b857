// Epic's stock Pixel Streaming frontend library (@epicgames-ps/lib-pixelstreamingfrontend-ue5.5), with no
// Usher code, pointed at an Usher session socket in Chromium: it finds the seated streamer, negotiates WebRTC
// through Usher's relay and plays the demo streamer's video (SPEC §6: Epic's frontend pointed at Usher gets a
// stream).
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { CreatedSession } from '@usher/testing';
import { useChromium } from './chromium.ts';
import { bundleEpicPlayer, EpicPage } from './pages/epic-page.ts';
import { demoProject, useStreamingServer } from './streaming.ts';

describe("Epic's frontend library on Usher in Chromium", () => {
  let script = '';
  before(async () => {
    script = await bundleEpicPlayer();
  });
  const { t } = useStreamingServer([demoProject('epic')]);
  const chromium = useChromium();

  test('the library connects to the seated streamer through Usher and its video plays', async () => {
    const session: CreatedSession = await t.createSession('epic');
    assert.equal(session.state, 'connecting', 'seated on a warm worker');
    const page = await EpicPage.open(chromium.browser, t.url, script);
    try {
      await page.connect(`${session.url}?token=${encodeURIComponent(session.token)}`);

      const list = (await page.event('streamerListMessage')) as {
        ids: string[];
        autoSelectedStreamerId: string;
      };
      assert.deepEqual(list, { ids: [session.workerId], autoSelectedStreamerId: session.workerId });
      await page.event('webRtcConnected');
      await page.event('dataChannelOpen');
      await page.event('videoInitialized');
      const played = await page.videoPlays();
      assert.deepEqual([played.width, played.height], [640, 360]);
      assert.equal((await t.session(session.id)).state, 'active');

      const signals = await page.signals();
      for (const expected of [
        'in config',
        'out listStreamers',
        'in streamerList',
        'out subscribe',
        'in offer',
        'out answer',
      ])
        assert.ok(signals.includes(expected), `${expected} in ${signals.join(', ')}`);
      assert.ok(
        signals.indexOf('in offer') < signals.indexOf('in iceCandidate'),
        "the streamer's candidates reach the library after its offer",
      );
      const failures = (await page.eventNames()).filter((n) => /Failed|Rejected|Error|Disconnected/.test(n));
      assert.deepEqual(failures, []);
      await page.screenshot('epic-frontend-plays');

      // the session ends: Usher closes the library's socket with the session's close code
      const ended = await t.api('POST', `/sessions/${session.id}/end`);
      assert.equal(ended.status, 200);
      const disconnected = await page.event('webRtcDisconnected');
      assert.ok(disconnected !== undefined);
    } finally {
      await page.close();
    }
  });
});
