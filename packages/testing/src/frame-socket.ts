// A bare WebSocket in tests that records every JSON frame it gets (a hand-dialled worker, the operator's event
// feed, a browser as far as headers go) and lets a test wait for the frame it expects.
import WebSocket from 'ws';

export type Frame = Record<string, unknown> & { type: string };

export class FrameSocket {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  /** rejects if the upgrade fails (nobody has to wait for it) */
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];

  constructor(url: string, options: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, options);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    this.ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as Frame;
      this.frames.push(f);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(f)) return true;
        w.resolve(f);
        return false;
      });
    });
  }

  /** The first frame (already received or still to come) that matches. */
  waitFor(pred: (f: Frame) => boolean): Promise<Frame> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }

  /** Sends a frame: an object as JSON, a string as it is. */
  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close(1000);
    return this.closed;
  }
}
