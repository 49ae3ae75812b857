// A Pixel Streaming streamer for tests: a bare WebSocket that answers `identify` like a UE app and records
// every message, so a test can play the worker's half of the signalling by hand.
import WebSocket from 'ws';

type Message = Record<string, unknown> & { type: string };

export class TestStreamer {
  readonly ws: WebSocket;
  readonly received: Message[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  /** resolves with the worker id once Usher confirmed the endpoint id */
  readonly registered: Promise<string>;
  #taken = new Map<string, number>();
  #waiters: { type: string; resolve: (m: Message) => void }[] = [];

  /** `url` is the signalling URL with its token (USHER_SIGNALLING_URL, or a pool token's signallingUrl). */
  constructor(url: string, options: { endpointId?: string; identify?: boolean } = {}) {
    this.ws = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as Message;
      this.received.push(m);
      const i = this.#waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
      if (m.type === 'identify' && options.identify !== false)
        this.send({
          type: 'endpointId',
          id: options.endpointId ?? 'test-streamer',
          protocolVersion: '1.3.0',
        });
    });
    this.registered = this.next('endpointIdConfirm').then((m) => String(m.committedId));
  }

  /** The next message of this type: the first received since the last call for that type, or the next to come. */
  next(type: string): Promise<Message> {
    const taken = this.#taken.get(type) ?? 0;
    this.#taken.set(type, taken + 1);
    const seen = this.received.filter((m) => m.type === type);
    if (seen.length > taken) return Promise.resolve(seen[taken]!);
    return new Promise((resolve) => this.#waiters.push({ type, resolve }));
  }

  send(message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  close(code = 1000): Promise<{ code: number; reason: string }> {
    this.ws.close(code);
    return this.closed;
  }
}
