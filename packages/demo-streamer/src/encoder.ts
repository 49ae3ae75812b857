// One run of ffmpeg: raw yuv420p frames in on stdin at a fixed frame rate, VP8 out as RTP to a UDP socket on
// 127.0.0.1 that this class binds, every RTP packet handed to a callback.
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RtpPacket } from 'werift';
import type { Log } from './log.ts';

const FFMPEG_PACKAGE = '@ffmpeg-installer/linux-x64';
/** The payload type ffmpeg writes. werift's sender rewrites it to the one negotiated with each viewer. */
const FFMPEG_PAYLOAD_TYPE = 96;
/** RTP packets small enough to fit a 1500-byte MTU once SRTP, UDP and IP headers are added. */
const RTP_PACKET_BYTES = 1200;
/** How long ffmpeg may take to exit after SIGTERM before it gets SIGKILL. */
const STOP_GRACE_MS = 2_000;
const STDERR_TAIL_CHARS = 2_000;

/** The ffmpeg binary that `@ffmpeg-installer/linux-x64` ships inside its package. */
export function bundledFfmpegPath(): string {
  try {
    return join(dirname(fileURLToPath(import.meta.resolve(`${FFMPEG_PACKAGE}/package.json`))), 'ffmpeg');
  } catch {
    // reported when ffmpeg is first needed, so that signalling works without it
    return join(FFMPEG_PACKAGE, 'ffmpeg');
  }
}

export interface EncoderOptions {
  ffmpegPath: string;
  width: number;
  height: number;
  framesPerSecond: number;
  /** The next raw yuv420p frame; called once per frame period. */
  nextFrame: () => Buffer;
  onPacket: (packet: RtpPacket) => void;
  log: Log;
}

export class Encoder {
  readonly #o: EncoderOptions;
  readonly #exited = Promise.withResolvers<void>();
  #state: 'idle' | 'binding' | 'running' | 'exited' = 'idle';
  #stopping = false;
  #child: ChildProcess | null = null;
  #closeSocket: () => void = () => {};

  constructor(options: EncoderOptions) {
    this.#o = options;
  }

  /** Settles once ffmpeg has exited (or could not start) and the socket is closed. */
  get exited(): Promise<void> {
    return this.#exited.promise;
  }

  /** Binds the RTP socket, then starts ffmpeg. A failure to start is logged, and `exited` settles. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') return;
    this.#state = 'binding';
    const socket = createSocket('udp4');
    this.#closeSocket = () => socket.close();
    socket.on('message', (msg) => {
      // ffmpeg's RTCP comes here too (rtcpport is this port): keep only RTP of ffmpeg's payload type
      if (msg.length < 12 || msg[0]! >> 6 !== 2 || (msg[1]! & 0x7f) !== FFMPEG_PAYLOAD_TYPE) return;
      this.#o.onPacket(RtpPacket.deSerialize(msg));
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, '127.0.0.1', () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.#o.log.error(`could not bind a UDP port on 127.0.0.1 for ffmpeg's RTP: ${(err as Error).message}`);
      this.#closeSocket = () => {};
      return this.#finish();
    }
    socket.on('error', (err) => this.#o.log.error(`ffmpeg's RTP socket: ${err.message}`));
    if (this.#stopping) return this.#finish();
    this.#spawn(socket.address().port);
  }

  /** Stops ffmpeg (SIGTERM, then SIGKILL if it lingers) and waits for it to exit. */
  stop(): Promise<void> {
    this.#stopping = true;
    if (this.#state === 'idle') this.#finish();
    if (this.#state === 'running' && this.#child) {
      const child = this.#child;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS).unref();
    }
    return this.exited;
  }

  /** Kills ffmpeg at once, for the process's last moments (`process.on('exit')` cannot wait). */
  kill(): void {
    this.#child?.kill('SIGKILL');
  }

  #spawn(port: number): void {
    const { ffmpegPath, framesPerSecond, log } = this.#o;
    this.#state = 'running';
    const child = spawn(ffmpegPath, this.#args(port), { stdio: ['pipe', 'ignore', 'pipe'] });
    this.#child = child;
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
    });
    // EPIPE once ffmpeg has gone: its exit is what gets reported
    child.stdin?.on('error', () => {});

    let writing = false;
    const timer = setInterval(() => {
      // ffmpeg has not taken the last frame yet: drop this one rather than queue
      if (writing || !child.stdin?.writable) return;
      writing = true;
      child.stdin.write(this.#o.nextFrame(), () => {
        writing = false;
      });
    }, 1000 / framesPerSecond);

    const done = () => {
      clearInterval(timer);
      this.#finish();
    };
    child.on('error', (err) => {
      if (child.pid !== undefined) return log.error(`ffmpeg (pid ${child.pid}): ${err.message}`);
      log.error(
        `could not start ffmpeg at ${ffmpegPath}: ${err.message}. The stream has no video until it can; ` +
          `run \`npm install\` at the repository root (it installs ${FFMPEG_PACKAGE}, on Linux x64 only) ` +
          'and check that the file is executable',
      );
      done();
    });
    child.once('spawn', () => log.info(`ffmpeg started (pid ${child.pid}): VP8 as RTP to 127.0.0.1:${port}`));
    child.once('exit', (code, signal) => {
      if (this.#stopping) log.info(`ffmpeg stopped (pid ${child.pid})`);
      else log.error(`ffmpeg (pid ${child.pid}) exited with ${signal ?? `code ${code}`}: ${stderr.trim()}`);
      done();
    });
  }

  #finish(): void {
    if (this.#state === 'exited') return;
    this.#state = 'exited';
    this.#closeSocket();
    this.#exited.resolve();
  }

  #args(port: number): string[] {
    const { width, height, framesPerSecond: fps } = this.#o;
    // a key frame every quarter second: a viewer can only start decoding at one, and the first ones go out
    // before its WebRTC connection is up (this encoder does not answer a viewer's key frame requests)
    const keyFrameEvery = Math.max(1, Math.round(fps / 4));
    return [
      ...['-hide_banner', '-loglevel', 'error', '-nostats'],
      ...['-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${width}x${height}`, '-framerate', String(fps)],
      ...['-i', 'pipe:0', '-an'],
      ...[
        '-c:v',
        'libvpx',
        '-deadline',
        'realtime',
        '-cpu-used',
        '8',
        '-b:v',
        '1M',
        '-g',
        String(keyFrameEvery),
      ],
      ...['-auto-alt-ref', '0', '-lag-in-frames', '0', '-error-resilient', '1'],
      ...['-payload_type', String(FFMPEG_PAYLOAD_TYPE), '-f', 'rtp'],
      `rtp://127.0.0.1:${port}?pkt_size=${RTP_PACKET_BYTES}&rtcpport=${port}`,
    ];
  }
}
