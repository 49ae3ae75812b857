// The demo's one video source, shared by every player: the test pattern encoded by a single ffmpeg, each RTP
// packet handed to every subscriber. ffmpeg starts with the first subscriber and stops with the last.
import type { RtpPacket } from 'werift';
import { Encoder } from './encoder.ts';
import type { Log } from './log.ts';
import { FRAME_HEIGHT, FRAME_WIDTH, type Scene, TestPattern } from './pattern.ts';

export interface VideoSourceOptions {
  ffmpegPath: string;
  /** What the next frame shows (the label and the time). */
  scene: () => Scene;
  log: Log;
  framesPerSecond?: number;
}

export type RtpListener = (packet: RtpPacket) => void;

export class VideoSource {
  readonly #o: VideoSourceOptions;
  readonly #pattern = new TestPattern();
  readonly #listeners = new Set<RtpListener>();
  /** Every encoder that has not exited yet: the current one and any still stopping. */
  readonly #encoders = new Set<Encoder>();
  #current: Encoder | null = null;

  constructor(options: VideoSourceOptions) {
    this.#o = options;
  }

  /** Receives every RTP packet from now on, until the returned function is called. */
  subscribe(listener: RtpListener): () => void {
    this.#listeners.add(listener);
    if (!this.#current) this.#current = this.#startEncoder();
    return () => {
      if (this.#listeners.delete(listener) && this.#listeners.size === 0) this.#stopEncoder();
    };
  }

  /** Stops ffmpeg and waits until every ffmpeg has exited. */
  async close(): Promise<void> {
    this.#listeners.clear();
    this.#stopEncoder();
    await Promise.all([...this.#encoders].map((e) => e.exited));
  }

  /** Kills every ffmpeg at once, for the process's last moments (`process.on('exit')` cannot wait). */
  killNow(): void {
    for (const encoder of this.#encoders) encoder.kill();
  }

  #startEncoder(): Encoder {
    const encoder = new Encoder({
      ffmpegPath: this.#o.ffmpegPath,
      width: FRAME_WIDTH,
      height: FRAME_HEIGHT,
      framesPerSecond: this.#o.framesPerSecond ?? 30,
      nextFrame: () => this.#pattern.render(this.#o.scene()).data,
      onPacket: (packet) => {
        for (const listener of this.#listeners) listener(packet);
      },
      log: this.#o.log,
    });
    this.#encoders.add(encoder);
    void encoder.exited.then(() => {
      this.#encoders.delete(encoder);
      // ffmpeg died or never started: the next subscriber tries again
      if (this.#current === encoder) this.#current = null;
    });
    void encoder.start();
    return encoder;
  }

  #stopEncoder(): void {
    void this.#current?.stop();
    this.#current = null;
  }
}
