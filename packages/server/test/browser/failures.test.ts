// How a stream session fails, as a viewer in Chromium sees it: the demo streamer killed mid-stream (4006
// worker_crashed, after a session.error AGENT_CRASHED), and the project disabled while a viewer watches (4000;
// the next start is refused with PROJECT_DISABLED).
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { gone } from '../fixtures/processes.ts';
import { useChromium } from './chromium.ts';
import { ensureSdkBuilt, SdkPage } from './pages/sdk-page.ts';
import { demoProject, ffmpegOf, useStreamingServer } from './streaming.ts';

describe('stream session failures in Chromium', () => {
  before(() => ensureSdkBuilt());
  const { t, driver } = useStreamingServer([demoProject('fragile')]);
  const chromium = useChromium();

  const watching = async (): Promise<{ viewer: SdkPage; id: string }> => {
    await t.readyWorkers('fragile', 2);
    const viewer = await SdkPage.open(chromium.browser, t.url);
    const started = await viewer.start('fragile');
    assert.ok('id' in started, JSON.stringify(started));
    await viewer.waitForState('active');
    await viewer.videoPlays();
    return { viewer, id: started.id };
  };

  test('the streamer killed mid-stream: session.error AGENT_CRASHED reaches the page, then 4006 worker_crashed', async () => {
    const { viewer, id } = await watching();
    try {
      const { workerId } = await t.session(id);
      const pid = driver.pid(String(workerId));
      const ffmpeg = ffmpegOf(pid);
      assert.ok(ffmpeg !== null, 'the streamer encodes the video with ffmpeg while the viewer watches');

      process.kill(pid, 'SIGKILL');
      const ended = await viewer.waitForEvent('ended');
      assert.deepEqual(ended.data, { code: 4006, reason: 'worker_crashed', outcome: 'failed' });
      const errors = await viewer.events('error');
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.equal(errors[0]!.data.code, 'AGENT_CRASHED');
      assert.equal(errors[0]!.data.recoverable, false);
      assert.match(String(errors[0]!.data.message), /SIGKILL/);
      const names = (await viewer.events()).map((e) => e.name);
      assert.ok(names.indexOf('error') < names.indexOf('ended'), 'the error comes before the end');
      assert.equal(await gone(ffmpeg), true, "the streamer's ffmpeg went with it");
      await viewer.screenshot('failures-worker-crashed');
    } finally {
      await viewer.close();
    }
  });

  test('the project disabled while a viewer watches: 4000 project_disabled; a new start is refused', async () => {
    const { viewer, id } = await watching();
    try {
      const r = await t.api('POST', '/projects/fragile/disable');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const ended = await viewer.waitForEvent('ended');
      assert.deepEqual(ended.data, { code: 4000, reason: 'project_disabled', outcome: 'disconnected' });
      assert.equal((await t.session(id)).endCode, 4000);
      await viewer.screenshot('failures-project-disabled');

      const again = await SdkPage.open(chromium.browser, t.url);
      try {
        const refused = await again.start('fragile');
        assert.ok('error' in refused, JSON.stringify(refused));
        assert.equal(refused.error.code, 'PROJECT_DISABLED');
        assert.equal(refused.error.status, 403);
        await again.screenshot('failures-start-refused');
      } finally {
        await again.close();
      }
      // the refused request is a session that ended at admission with the project-disabled close code
      const direct = await t.api<{ error: { details: Record<string, unknown> } }>(
        'POST',
        '/sessions',
        { projectId: 'fragile' },
        null,
      );
      assert.equal(direct.status, 403);
      const details = direct.body.error.details;
      assert.equal(details.closeCode, 4000);
      const refusedSession = await t.session(String(details.sessionId));
      assert.equal(refusedSession.endCode, 4000);
      assert.equal(refusedSession.endReason, 'project_disabled');
    } finally {
      await viewer.close();
    }
  });
});
