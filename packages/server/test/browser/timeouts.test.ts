// The server's AFK and max-runtime limits as a viewer in Chromium lives them, with the server's clock moved by
// hand: the AFK warning and its countdown show in the page and the session ends 4004 afk_timeout; a viewer
// who answers the warning still ends at max runtime (4004 max_runtime).
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { useChromium } from './chromium.ts';
import { ensureSdkBuilt, SdkPage } from './pages/sdk-page.ts';
import { demoProject, useStreamingServer } from './streaming.ts';

const AFK_WARNING_MS = 60_000;
const AFK_DISCONNECT_MS = 30_000;
const MAX_RUNTIME_MS = 100_000;

describe('AFK and max runtime in Chromium', () => {
  before(() => ensureSdkBuilt());
  const { t } = useStreamingServer([
    demoProject('limits', {
      timeouts: {
        afkWarningMs: AFK_WARNING_MS,
        afkDisconnectMs: AFK_DISCONNECT_MS,
        maxRuntimeMs: MAX_RUNTIME_MS,
      },
    }),
  ]);
  const chromium = useChromium();

  /** A viewer whose video plays; the manual clock has not moved since the session went active. */
  const watching = async (): Promise<{ viewer: SdkPage; id: string }> => {
    await t.readyWorkers('limits', 2);
    const viewer = await SdkPage.open(chromium.browser, t.url);
    const started = await viewer.start('limits');
    assert.ok('id' in started, JSON.stringify(started));
    await viewer.waitForState('active');
    await viewer.videoPlays();
    return { viewer, id: started.id };
  };

  test('no input: the AFK warning and its countdown show, then the session ends 4004 afk_timeout', async () => {
    const { viewer, id } = await watching();
    try {
      await t.advance(AFK_WARNING_MS - 1);
      assert.equal((await t.session(id)).state, 'active', 'no warning before the threshold');
      await t.advance(1);
      const warning = await viewer.waitForEvent('afkWarning');
      assert.equal(warning.data.remainingMs, AFK_DISCONNECT_MS);
      await viewer.waitForState('idle');
      // the SDK counts down every second in the page's own time
      const tick = await viewer.waitForEvent('afkCountdown');
      assert.ok(Number(tick.data.remainingMs) < AFK_DISCONNECT_MS);
      await viewer.screenshot('timeouts-afk-warning');

      await t.advance(AFK_DISCONNECT_MS);
      const ended = await viewer.waitForEvent('ended');
      assert.deepEqual(ended.data, { code: 4004, reason: 'afk_timeout', outcome: 'disconnected' });
      assert.deepEqual((await viewer.states()).slice(-4), ['active', 'idle', 'ending', 'ended']);
      const s = await t.session(id);
      assert.equal(s.endCode, 4004);
      assert.equal(s.endReason, 'afk_timeout');
      await viewer.screenshot('timeouts-afk-ended');
    } finally {
      await viewer.close();
    }
  });

  test('a viewer who answers the AFK warning plays on, and is stopped at max runtime with 4004 max_runtime', async () => {
    const { viewer, id } = await watching();
    try {
      await t.advance(AFK_WARNING_MS);
      await viewer.waitForEvent('afkWarning');
      await viewer.waitForState('idle');
      await viewer.markActive();
      assert.deepEqual((await viewer.waitForEvent('afkDismissed')).data, { by: 'input' });
      // the server heard the input: the session is active again, and the next warning is a minute away
      await viewer.waitForState('active');
      await viewer.videoPlays();

      await t.advance(MAX_RUNTIME_MS - AFK_WARNING_MS - 1);
      assert.equal((await t.session(id)).state, 'active', 'not before max runtime');
      await t.advance(1);
      const ended = await viewer.waitForEvent('ended');
      assert.deepEqual(ended.data, { code: 4004, reason: 'max_runtime', outcome: 'disconnected' });
      assert.equal((await viewer.events('afkWarning')).length, 1, 'one warning only');
      const s = await t.session(id);
      assert.equal(s.endReason, 'max_runtime');
      await viewer.screenshot('timeouts-max-runtime');
    } finally {
      await viewer.close();
    }
  });
});
