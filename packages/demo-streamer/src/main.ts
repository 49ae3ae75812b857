#!/usr/bin/env node
// Usher's demo Pixel Streaming streamer: stands in for a UE app with the Pixel Streaming plugin. It connects
// to the signalling URL, and for every player Usher seats on it opens a WebRTC connection that shows a live
// test pattern (the session id and a clock) and echoes back whatever arrives on the `cirrus` data channel.
//
//   node src/main.ts --signalling-url=ws://127.0.0.1:8080/workers/signalling?token=…
//
// Exits when the signalling socket closes (0 if closed with 1000, else 1), and on SIGTERM or SIGINT.
import { bundledFfmpegPath } from './encoder.ts';
import { consoleLog as log } from './log.ts';
import { resolveOptions, type StreamerOptions } from './options.ts';
import { Player } from './player.ts';
import { SignallingClient } from './signalling.ts';
import { VideoSource } from './video.ts';

/** The longest a clean exit may take before the process exits anyway. */
const EXIT_WITHIN_MS = 5_000;

let options: Readonly<StreamerOptions>;
try {
  options = resolveOptions(process.argv.slice(2), process.env);
} catch (err) {
  log.error((err as Error).message);
  process.exit(2);
}

const players = new Map<string, Player>();
/** what the picture names: the session of the latest viewer, else its player id */
let lastViewer: string | null = null;

const video = new VideoSource({
  ffmpegPath: bundledFfmpegPath(),
  scene: () => ({
    label: lastViewer ?? options.sessionId ?? signalling.committedId ?? options.endpointId,
    now: new Date(),
  }),
  log,
});
// whatever the way out, no ffmpeg outlives the streamer
process.on('exit', () => video.killNow());

const signalling: SignallingClient = new SignallingClient({
  url: options.signallingUrl,
  endpointId: options.endpointId,
  log,
  handlers: {
    playerConnected(playerId, sessionId) {
      log.info(`player ${playerId} connected`);
      void players.get(playerId)?.close();
      const player = new Player({
        playerId,
        iceServers: signalling.iceServers,
        video,
        send: (m) => signalling.send(m),
        log,
      });
      players.set(playerId, player);
      lastViewer = sessionId ?? playerId;
      player.start();
    },
    answer(playerId, sdp) {
      const player = players.get(playerId);
      if (player) player.answer(sdp);
      else log.error(`answer for unknown player ${playerId}`);
    },
    iceCandidate(playerId, candidate) {
      const player = players.get(playerId);
      if (player) player.addIceCandidate(candidate);
      else log.error(`ICE candidate for unknown player ${playerId}`);
    },
    playerDisconnected(playerId) {
      log.info(`player ${playerId} disconnected`);
      const player = players.get(playerId);
      players.delete(playerId);
      void player?.close();
    },
    closed(code, reason) {
      void exit(code === 1000 ? 0 : 1, `signalling closed with ${code}${reason ? ` (${reason})` : ''}`);
    },
  },
});

let exiting = false;
async function exit(code: number, why: string): Promise<void> {
  if (exiting) return;
  exiting = true;
  log.info(`exiting: ${why}`);
  setTimeout(() => {
    log.error(`clean exit took longer than ${EXIT_WITHIN_MS} ms: exiting anyway`);
    process.exit(code);
  }, EXIT_WITHIN_MS).unref();
  const closing = [...players.values()].map((p) => p.close());
  players.clear();
  await Promise.all([...closing, video.close(), signalling.close(1000, 'streamer exiting')]);
  process.exit(code);
}

process.once('SIGTERM', () => void exit(0, 'SIGTERM'));
process.once('SIGINT', () => void exit(0, 'SIGINT'));
signalling.connect();
