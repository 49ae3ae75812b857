// The demo's test pattern: raw yuv420p frames (colour bars, a box that moves with the clock, the session id
// and the time as HH:MM:SS.mmm) drawn in memory with the built-in bitmap font, ready to pipe to an encoder.
import { GLYPH_HEIGHT, GLYPH_WIDTH, glyphPixel } from './font.ts';

export const FRAME_WIDTH = 640;
export const FRAME_HEIGHT = 360;

/** A colour in BT.601 limited-range YUV. */
export interface Yuv {
  y: number;
  u: number;
  v: number;
}

const WHITE: Yuv = { y: 235, u: 128, v: 128 };
const BLACK: Yuv = { y: 16, u: 128, v: 128 };
const BARS: readonly Yuv[] = [
  WHITE,
  { y: 210, u: 16, v: 146 }, // yellow
  { y: 170, u: 166, v: 16 }, // cyan
  { y: 145, u: 54, v: 34 }, // green
  { y: 106, u: 202, v: 222 }, // magenta
  { y: 81, u: 90, v: 240 }, // red
  { y: 41, u: 240, v: 110 }, // blue
];

const BARS_HEIGHT = 240;
const BOX_SIZE = 48;
const BOX_TOP = 96;
const BOX_PERIOD_MS = 4_000;
const MARGIN = 8;

/** What a frame shows besides the fixed pattern. */
export interface Scene {
  /** The session id (or whatever identifies the stream), written under the bars. */
  label: string;
  /** The time the frame shows; the moving box's position follows it too. */
  now: Date;
}

/** A yuv420p picture: the Y plane, then the U and V planes at half resolution. Width and height are even. */
export class Frame {
  readonly width: number;
  readonly height: number;
  readonly data: Buffer;

  constructor(width: number, height: number, data?: Buffer) {
    if (width % 2 !== 0 || height % 2 !== 0)
      throw new Error(`frame size must be even, got ${width}x${height}`);
    this.width = width;
    this.height = height;
    this.data = data ?? Buffer.alloc(frameBytes(width, height));
  }

  /** Paints a rectangle, clipped to the frame. Even coordinates and sizes keep the colour exact at edges. */
  fillRect(x: number, y: number, w: number, h: number, c: Yuv): void {
    const x0 = Math.max(0, Math.floor(x));
    const y0 = Math.max(0, Math.floor(y));
    const x1 = Math.min(this.width, Math.floor(x + w));
    const y1 = Math.min(this.height, Math.floor(y + h));
    if (x0 >= x1 || y0 >= y1) return;
    for (let row = y0; row < y1; row++) this.data.fill(c.y, row * this.width + x0, row * this.width + x1);
    const cw = this.width / 2;
    const uStart = this.width * this.height;
    const vStart = uStart + cw * (this.height / 2);
    const cx0 = x0 >> 1;
    const cx1 = (x1 + 1) >> 1;
    for (let row = y0 >> 1; row < (y1 + 1) >> 1; row++) {
      this.data.fill(c.u, uStart + row * cw + cx0, uStart + row * cw + cx1);
      this.data.fill(c.v, vStart + row * cw + cx0, vStart + row * cw + cx1);
    }
  }

  /** Writes `text` with its top-left corner at (x, y), each font pixel `scale` pixels wide; clipped at the edge. */
  drawText(text: string, x: number, y: number, scale: number, c: Yuv): void {
    const advance = (GLYPH_WIDTH + 1) * scale;
    for (const [i, char] of [...text].entries()) {
      const left = x + i * advance;
      if (left + GLYPH_WIDTH * scale > this.width) return;
      for (let gy = 0; gy < GLYPH_HEIGHT; gy++) {
        for (let gx = 0; gx < GLYPH_WIDTH; gx++) {
          if (glyphPixel(char, gx, gy)) this.fillRect(left + gx * scale, y + gy * scale, scale, scale, c);
        }
      }
    }
  }
}

/** Bytes in one yuv420p frame. */
export function frameBytes(width: number, height: number): number {
  return width * height * 1.5;
}

/** The time of day as HH:MM:SS.mmm, in the machine's time zone. */
export function formatClock(now: Date): string {
  const pad = (n: number, digits = 2) => String(n).padStart(digits, '0');
  return `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}.${pad(now.getMilliseconds(), 3)}`;
}

/** Draws frames of the test pattern. The fixed part is drawn once and copied into every frame. */
export class TestPattern {
  readonly #background: Frame;

  constructor() {
    this.#background = new Frame(FRAME_WIDTH, FRAME_HEIGHT);
    const bg = this.#background;
    bg.fillRect(0, 0, FRAME_WIDTH, FRAME_HEIGHT, BLACK);
    for (const [i, colour] of BARS.entries()) {
      const left = evenFloor((i * FRAME_WIDTH) / BARS.length);
      const right = evenFloor(((i + 1) * FRAME_WIDTH) / BARS.length);
      bg.fillRect(left, 0, right - left, BARS_HEIGHT, colour);
    }
    bg.drawText('USHER DEMO STREAMER', MARGIN, BARS_HEIGHT + MARGIN, 2, WHITE);
  }

  /** A new frame (its own buffer, so it may be handed to a stream while the next one is drawn). */
  render(scene: Scene): Frame {
    const frame = new Frame(FRAME_WIDTH, FRAME_HEIGHT, Buffer.from(this.#background.data));
    // the box bounces from edge to edge once every BOX_PERIOD_MS
    const phase = (scene.now.getTime() % BOX_PERIOD_MS) / BOX_PERIOD_MS;
    const travel = FRAME_WIDTH - BOX_SIZE;
    const x = evenFloor(travel * (phase < 0.5 ? phase * 2 : 2 - phase * 2));
    frame.fillRect(x, BOX_TOP, BOX_SIZE, BOX_SIZE, BLACK);
    frame.fillRect(x + 8, BOX_TOP + 8, BOX_SIZE - 16, BOX_SIZE - 16, WHITE);
    frame.drawText(`SESSION ${scene.label}`, MARGIN, BARS_HEIGHT + MARGIN + 22, 2, WHITE);
    frame.drawText(formatClock(scene.now), MARGIN, BARS_HEIGHT + MARGIN + 50, 8, WHITE);
    return frame;
  }
}

function evenFloor(n: number): number {
  return Math.floor(n / 2) * 2;
}
