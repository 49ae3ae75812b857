// The shared video source: RTP from the bundled ffmpeg to every subscriber, and a missing ffmpeg reported
// with its path while the streamer carries on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RtpPacket } from 'werift';
import { bundledFfmpegPath } from './encoder.ts';
import type { Log } from './log.ts';
import { VideoSource } from './video.ts';

/** A log that keeps its lines and lets a test wait for one. */
function recordingLog() {
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const add = (line: string) => {
    lines.push(line);
    for (const w of waiters.filter((x) => x.pattern.test(line))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  };
  const log: Log = { info: (m) => add(`info: ${m}`), error: (m) => add(`error: ${m}`) };
  const next = (pattern: RegExp) => new Promise<string>((resolve) => waiters.push({ pattern, resolve }));
  return { log, lines, next };
}

const scene = () => ({ label: 'test', now: new Date() });

test('every subscriber gets the same RTP packets; ffmpeg stops with the last one', {
  timeout: 60_000,
}, async () => {
  const { log, next } = recordingLog();
  const video = new VideoSource({ ffmpegPath: bundledFfmpegPath(), scene, log });
  const started = next(/ffmpeg started/);
  const collect = (count: number) => {
    const packets: RtpPacket[] = [];
    let unsubscribe = () => {};
    const done = new Promise<RtpPacket[]>((resolve) => {
      unsubscribe = video.subscribe((p) => {
        packets.push(p);
        if (packets.length === count) resolve(packets);
      });
    });
    return { done, unsubscribe: () => unsubscribe() };
  };
  const a = collect(5);
  const b = collect(5);
  const [fromA, fromB] = await Promise.all([a.done, b.done]);
  assert.deepEqual(
    fromA.map((p) => p.header.sequenceNumber),
    fromB.map((p) => p.header.sequenceNumber),
  );
  assert.equal(fromA[0]!.header.payloadType, 96, 'what ffmpeg sends, before werift rewrites it');
  await started;

  const stopped = next(/ffmpeg stopped/);
  a.unsubscribe();
  b.unsubscribe();
  await stopped;
  await video.close();
});

test('an ffmpeg that cannot start is reported with its path; the next subscriber tries again', async () => {
  const { log, next } = recordingLog();
  const video = new VideoSource({ ffmpegPath: '/nonexistent/ffmpeg', scene, log });
  const first = next(/could not start ffmpeg/);
  video.subscribe(() => {});
  assert.match(await first, /at \/nonexistent\/ffmpeg: .*ENOENT.*npm install/);
  // the failed encoder is gone once close() returns; a new subscriber starts another
  await video.close();
  const second = next(/could not start ffmpeg/);
  video.subscribe(() => {});
  await second;
  await video.close();
});
