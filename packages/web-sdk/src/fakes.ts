// Test doubles for the SDK's tests: a timer queue driven by hand, fake WebSockets, fetch and RTCPeerConnection,
// a fake <video>, and a recorder of a session's events. Nothing here sleeps: tests move time and drain promises.
import type { SessionEvents } from './events.ts';
import type { CommonOptions } from './options.ts';
import type { FetchLike, PeerConnectionLike, SocketLike, Timers, VideoLike } from './platform.ts';
import type { UsherSession } from './session.ts';

/** Timers that fire only when the test moves time with advance(). */
export class FakeClock implements Timers {
  time = Date.parse('2026-01-01T00:00:00Z');
  #seq = 0;
  #timers = new Map<number, { at: number; callback: () => void }>();

  now = (): number => this.time;

  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.time + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** How many timers are armed: none is left once a session has ended. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing due timers in order (each at its own time). */
  advance(ms: number): void {
    const target = this.time + ms;
    for (;;) {
      let next: [number, { at: number; callback: () => void }] | null = null;
      for (const entry of this.#timers)
        if (entry[1].at <= target && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.time = next[1].at;
      next[1].callback();
    }
    this.time = target;
  }
}

export class FakeSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  readonly url: string;
  /** frames the SDK sent, parsed */
  readonly sent: Record<string, unknown>[] = [];
  closedWith: { code: number | undefined; reason: string | undefined } | null = null;
  /** the server answers each ping with a pong, as Usher's does; false: a server that has vanished */
  answersPings = true;

  constructor(url: string) {
    this.url = url;
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    const frame = JSON.parse(data) as Record<string, unknown>;
    this.sent.push(frame);
    if (frame.type === 'ping' && this.answersPings)
      this.receive({ type: 'pong', id: null, time: frame.time });
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // what the server does

  open(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }

  receive(message: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(message) } as MessageEvent);
  }

  /** The connection closes from the server's side (1006: it dropped). */
  serverClose(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 } as CloseEvent);
  }

  /** The server says the session ended (its status event, from `previous` by `cause`), then closes with its end. */
  serverEnded(
    previous: string,
    cause: string,
    end: { endCode: number; endReason: string; outcome: string },
  ): void {
    this.receive(status('ended', previous, cause, end));
    this.serverClose(end.endCode, end.endReason);
  }

  sentTypes(): unknown[] {
    return this.sent.map((m) => m.type);
  }
}

/** Every socket the SDK opened, newest last. */
export class FakeNetwork {
  readonly sockets: FakeSocket[] = [];
  readonly WebSocket = (() => {
    const sockets = this.sockets;
    return class extends FakeSocket {
      constructor(url: string) {
        super(url);
        sockets.push(this);
      }
    };
  })();

  get last(): FakeSocket {
    const s = this.sockets.at(-1);
    if (!s) throw new Error('no socket was opened');
    return s;
  }
}

export interface FetchCall {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

/** Answers like the server: POST /sessions creates s1, s2, … (queued); POST …/end answers 200. */
export class FakeHttp {
  readonly calls: FetchCall[] = [];
  #created = 0;
  /** replaces the answer to the next calls, in order */
  readonly next: Array<Response | Error> = [];

  readonly fetch: FetchLike = async (url, init) => {
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, key) => {
      headers[key] = value;
    });
    this.calls.push({
      url,
      method: String(init.method),
      headers,
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
    });
    const queued = this.next.shift();
    if (queued instanceof Error) throw queued;
    if (queued) return queued;
    if (url.endsWith('/sessions')) {
      const id = `s${++this.#created}`;
      return json(201, {
        id,
        state: 'queued',
        token: `token-${id}`,
        url: `ws://usher.test/sessions/${id}/ws`,
      });
    }
    return json(200, {});
  };
}

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

export class FakeChannel {
  readyState: RTCDataChannelState = 'open';
  binaryType = 'blob';
  onmessage: ((ev: MessageEvent) => void) | null = null;
  readonly sent: unknown[] = [];

  send(data: unknown): void {
    this.sent.push(data);
  }
}

export class FakePeer implements PeerConnectionLike {
  onicecandidate: ((ev: RTCPeerConnectionIceEvent) => void) | null = null;
  ontrack: ((ev: RTCTrackEvent) => void) | null = null;
  ondatachannel: ((ev: RTCDataChannelEvent) => void) | null = null;
  onconnectionstatechange: ((ev: Event) => void) | null = null;
  connectionState: RTCPeerConnectionState = 'new';
  readonly configuration: RTCConfiguration | undefined;
  /** every call, in order, e.g. ["setRemoteDescription:offer", "addIceCandidate:a"] */
  readonly calls: string[] = [];
  closed = false;

  constructor(configuration?: RTCConfiguration) {
    this.configuration = configuration;
  }

  async setRemoteDescription(d: RTCSessionDescriptionInit): Promise<void> {
    await Promise.resolve();
    this.calls.push(`setRemoteDescription:${d.type}:${d.sdp}`);
  }
  async createAnswer(): Promise<RTCSessionDescriptionInit> {
    this.calls.push('createAnswer');
    return { type: 'answer', sdp: 'answer-sdp' };
  }
  async setLocalDescription(d: RTCSessionDescriptionInit): Promise<void> {
    this.calls.push(`setLocalDescription:${d.type}`);
  }
  async addIceCandidate(c: RTCIceCandidateInit): Promise<void> {
    this.calls.push(`addIceCandidate:${c.candidate}`);
  }
  close(): void {
    this.closed = true;
  }

  // what the browser does

  localCandidate(init: RTCIceCandidateInit): void {
    this.onicecandidate?.({ candidate: { toJSON: () => init } } as RTCPeerConnectionIceEvent);
  }
  remoteTrack(stream: MediaStream): void {
    this.ontrack?.({ streams: [stream], track: {} } as unknown as RTCTrackEvent);
  }
  dataChannel(channel: FakeChannel): void {
    this.ondatachannel?.({ channel } as unknown as RTCDataChannelEvent);
  }
}

export class FakeRtc {
  readonly peers: FakePeer[] = [];
  readonly RTCPeerConnection = (() => {
    const peers = this.peers;
    return class extends FakePeer {
      constructor(configuration?: RTCConfiguration) {
        super(configuration);
        peers.push(this);
      }
    };
  })();
}

/** A document: an EventTarget that counts its listeners. */
export class FakePage extends EventTarget {
  listeners = 0;

  override addEventListener(...args: Parameters<EventTarget['addEventListener']>): void {
    this.listeners++;
    super.addEventListener(...args);
  }

  override removeEventListener(...args: Parameters<EventTarget['removeEventListener']>): void {
    this.listeners--;
    super.removeEventListener(...args);
  }
}

export interface FakeVideo extends VideoLike {
  plays: number;
  /** where the SDK listens for input: dispatch events on it */
  readonly page: FakePage;
}

/** A <video> whose play() is refused, as autoplay often is. */
export function fakeVideo(): FakeVideo {
  const page = new FakePage();
  return {
    srcObject: null,
    muted: false,
    playsInline: false,
    plays: 0,
    page,
    ownerDocument: page as unknown as VideoLike['ownerDocument'],
    play() {
      this.plays++;
      return Promise.reject(new Error('NotAllowedError: autoplay'));
    },
  };
}

export function fakeStream(id: string): MediaStream {
  return { id } as MediaStream;
}

/** Everything a test needs; `random` returns the numbers in `randoms`, then 0.5. */
export function harness() {
  const clock = new FakeClock();
  const net = new FakeNetwork();
  const http = new FakeHttp();
  const rtc = new FakeRtc();
  const randoms: number[] = [];
  const options = {
    fetch: http.fetch,
    WebSocket: net.WebSocket,
    RTCPeerConnection: rtc.RTCPeerConnection,
    timers: clock,
    now: clock.now,
    random: () => randoms.shift() ?? 0.5,
  } satisfies CommonOptions;
  return { clock, net, http, rtc, randoms, options };
}

const EVENT_NAMES: (keyof SessionEvents)[] = [
  'state',
  'queue',
  'afkWarning',
  'afkCountdown',
  'afkDismissed',
  'ended',
  'error',
  'message',
  'participantJoined',
  'participantLeft',
  'reconnecting',
  'reconnected',
  'reconnectFailed',
  'stream',
  'dataChannelMessage',
];

export type Recorded = { [K in keyof SessionEvents]: [K, SessionEvents[K]] }[keyof SessionEvents];

/** Records every event of a session, in order. */
export function record(session: UsherSession): {
  all: Recorded[];
  of<K extends keyof SessionEvents>(name: K): SessionEvents[K][];
} {
  const all: Recorded[] = [];
  for (const name of EVENT_NAMES) session.on(name, (payload) => all.push([name, payload] as Recorded));
  return {
    all,
    of: <K extends keyof SessionEvents>(name: K) =>
      all.filter((e) => e[0] === name).map((e) => e[1] as SessionEvents[K]),
  };
}

/** Lets pending promises (fetch, WebRTC steps) settle. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Whether a promise has settled once every pending promise step has run. */
export async function settledYet(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await settle();
  return done;
}

/** A status_changed event as the server sends it. */
export function status(
  state: string,
  previous: string | null,
  cause: string,
  end?: { endCode: number; endReason: string; outcome: string },
): Record<string, unknown> {
  return {
    type: 'session.status_changed',
    sessionId: 's1',
    at: '2026-01-01T00:00:00.000Z',
    status: state,
    previous,
    cause,
    ...end,
  };
}
