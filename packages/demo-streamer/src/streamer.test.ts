// End to end: the streamer as a child process, a signalling relay in the test playing Usher's part, and a
// werift peer connection playing the viewer. Checks the handshake, the offer-before-candidates order, VP8
// video, the data channel echo, and that every way out leaves no ffmpeg behind.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  DtlsClient,
  type MediaStreamTrack,
  type RTCDataChannel,
  RTCPeerConnection,
  type RtpPacket,
} from 'werift';
import { type WebSocket, WebSocketServer } from 'ws';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

type Message = { type: string } & Record<string, unknown>;

/** DTLS handshake type (RFC 6347 4.3.2). */
const HELLO_VERIFY_REQUEST = 3;

// The viewers here are werift peer connections, and as the answering side they take the DTLS client role.
// werift's DTLS client fails its transport when a HelloVerifyRequest arrives twice, which is what happens on
// a loaded machine: the streamer's answer to the ClientHello takes longer than the client's first
// retransmission timeout (500 ms), the client sends its ClientHello again, the streamer rightly answers each
// one, and the client throws on the second answer. The handshake itself completes (the data channel works),
// but the viewer's DTLS transport stays `failed`, SRTP never starts and no video reaches the track. Browsers
// discard a duplicate handshake message (RFC 6347 4.2.2); the test's viewers do the same.
const connectDtls = DtlsClient.prototype.connect;
DtlsClient.prototype.connect = function (this: DtlsClient) {
  const handle = this.onHandleHandshakes;
  // past flight 1 the client has answered a HelloVerifyRequest already (the streamer's cookie does not change)
  this.onHandleHandshakes = (handshakes) =>
    handle(handshakes.filter((h) => h.msg_type !== HELLO_VERIFY_REQUEST || this.dtls.flight < 3));
  return connectDtls.call(this);
};

/** How long any one step may take before the test fails naming it. Generous: for failure reports only. */
const STEP_MS = 20_000;

/**
 * `promise`, or a failure saying which step did not happen if it has not settled within STEP_MS. Not a timing
 * assertion: it only turns a hang into a failure that names the step. `what` may be a function, to report
 * the progress made by the deadline.
 */
async function within<T>(promise: Promise<T>, what: string | (() => string)): Promise<T> {
  // made here, so that its stack shows the step that waits
  const failure = new Error('a step did not happen');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      failure.message = `${typeof what === 'string' ? what : what()} within ${STEP_MS / 1000} s`;
      reject(failure);
    }, STEP_MS);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The streamer's signalling socket as the relay sees it: every message kept in order, waited for by type. */
class StreamerLink {
  readonly received: Message[] = [];
  readonly #waiters: { match: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  readonly socket: WebSocket;

  constructor(socket: WebSocket) {
    this.socket = socket;
    socket.on('message', (data) => {
      const m = JSON.parse(data.toString()) as Message;
      this.received.push(m);
      for (const w of this.#waiters.filter((x) => x.match(m))) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(m);
      }
    });
  }

  send(m: Message): void {
    this.socket.send(JSON.stringify(m));
  }

  /** The first message of `type` (for `playerId`, if given) received at or after position `from`; no deadline. */
  next(type: string, playerId?: string, from = 0): Promise<Message> {
    const match = (m: Message) => m.type === type && (playerId === undefined || m.playerId === playerId);
    const found = this.received.slice(from).find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }
}

/** The streamer's output, line by line, with a way to wait for a line. */
class Output {
  readonly lines: string[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(child: ChildProcess) {
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        const parts = (partial + chunk).split('\n');
        partial = parts.pop() ?? '';
        this.lines.push(...parts);
        for (const wake of this.#waiters) wake();
      });
    }
  }

  /** The first line matching `pattern`, once the streamer has written it. */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray> {
    return within(this.#lineMatching(pattern), `streamer: no log line matching ${pattern}`);
  }

  async #lineMatching(pattern: RegExp): Promise<RegExpMatchArray> {
    for (;;) {
      for (const line of this.lines) {
        const match = line.match(pattern);
        if (match) return match;
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          resolve();
        };
        this.#waiters.add(wake);
      });
    }
  }
}

/** `passed` is Node's (since 21.7), not yet in @types/node. */
type After = Pick<TestContext, 'after' | 'diagnostic'> & { readonly passed?: boolean };

/** A streamer process connected to the test's relay, past the handshake. */
async function startStreamer(t: After) {
  const relay = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await within(once(relay, 'listening'), 'relay: not listening');
  const { port } = relay.address() as AddressInfo;
  const child = spawn(
    process.execPath,
    [MAIN, `--signalling-url=ws://127.0.0.1:${port}/workers/signalling?token=x`],
    {
      env: { ...process.env, USHER_WORKER_ID: 'worker-7', USHER_SESSION_ID: 'ses-e2e' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const output = new Output(child);
  t.after(() => {
    // what the streamer logged, to tell where a failure happened on its side
    if (t.passed === false) t.diagnostic(`streamer output:\n${output.lines.join('\n') || '(none)'}`);
    child.kill('SIGKILL');
    relay.close();
  });

  const [socket] = (await within(once(relay, 'connection'), 'streamer: no connection to the relay')) as [
    WebSocket,
  ];
  const link = new StreamerLink(socket);
  link.send({ type: 'config', peerConnectionOptions: {}, protocolVersion: '1.3.0' });
  link.send({ type: 'identify' });
  const endpoint = await within(link.next('endpointId'), 'streamer: no endpointId after identify');
  assert.deepEqual(endpoint, { type: 'endpointId', id: 'worker-7', protocolVersion: '1.3.0' });
  link.send({ type: 'endpointIdConfirm', committedId: 'worker-7' });
  link.send({ type: 'ping', time: 123 });
  assert.deepEqual(await within(link.next('pong'), 'streamer: no pong'), { type: 'pong', time: 123 });
  return { link, child, exited, output };
}

type Streamer = Awaited<ReturnType<typeof startStreamer>>;

/** A viewer as failure reports name it: who, and how far its connection got. */
interface Named {
  who: string;
  state: () => string;
}

/** A viewer (a werift peer connection) seated on the streamer as `playerId`, connecting over WebRTC. */
async function connectViewer(s: Streamer, playerId: string, t: After) {
  const { link } = s;
  const who = `viewer ${playerId}`;
  const viewer = new RTCPeerConnection();
  t.after(() => within(viewer.close(), `${who}: peer connection not closed`));
  link.send({ type: 'playerConnected', playerId, dataChannel: true, sfu: false, sendOffer: true });
  const offer = await within(link.next('offer', playerId), `${who}: no offer from the streamer`);
  const offerAt = link.received.indexOf(offer);

  const track = new Promise<MediaStreamTrack>((resolve) => viewer.onTrack.subscribe(resolve));
  const channel = new Promise<RTCDataChannel>((resolve) => viewer.onDataChannel.subscribe(resolve));
  viewer.onIceCandidate.subscribe((c) => {
    if (c) link.send({ type: 'iceCandidate', playerId, candidate: c.toJSON() });
  });
  await within(
    (async () => {
      await viewer.setRemoteDescription({ type: 'offer', sdp: String(offer.sdp) });
      await viewer.setLocalDescription(await viewer.createAnswer());
    })(),
    `${who}: offer not applied or answer not made`,
  );
  link.send({ type: 'answer', playerId, sdp: viewer.localDescription!.sdp });
  // the streamer's candidates for this viewer, each one as it comes
  void (async () => {
    for (let from = offerAt + 1; ; ) {
      const m = await link.next('iceCandidate', playerId, from);
      from = link.received.indexOf(m) + 1;
      await viewer.addIceCandidate(m.candidate as { candidate: string });
    }
  })();

  /** Whether the streamer sent candidates for this viewer, and none before the offer. */
  const candidatesAfterOffer = () =>
    link.received.findIndex((m) => m.type === 'iceCandidate' && m.playerId === playerId) > offerAt;
  /** The connection as the viewer sees it (ICE connected but the connection failed: DTLS failed). */
  const state = () => `ICE ${viewer.iceConnectionState}, connection ${viewer.connectionState}`;
  return {
    who,
    state,
    offerSdp: String(offer.sdp),
    track: () => within(track, () => `${who}: no video track (${state()})`),
    channel: () => within(channel, () => `${who}: no data channel (${state()})`),
    candidatesAfterOffer,
  };
}

/** Resolves with `count` RTP packets of the track, once it has them. */
function rtpPackets(track: MediaStreamTrack, count: number, v: Named): Promise<RtpPacket[]> {
  const packets: RtpPacket[] = [];
  let unSubscribe = () => {};
  const all = new Promise<RtpPacket[]>((resolve) => {
    ({ unSubscribe } = track.onReceiveRtp.subscribe((packet) => {
      packets.push(packet);
      if (packets.length < count) return;
      unSubscribe();
      resolve(packets);
    }));
  });
  const what = () => `${v.who}: only ${packets.length} of ${count} RTP packets (${v.state()})`;
  return within(all, what).finally(unSubscribe);
}

/** Resolves with the picture size of the first VP8 key frame the track receives (RFC 7741 payload). */
function vp8KeyFrameSize(track: MediaStreamTrack, v: Named): Promise<{ width: number; height: number }> {
  let seen = 0;
  let unSubscribe = () => {};
  const size = new Promise<{ width: number; height: number }>((resolve) => {
    ({ unSubscribe } = track.onReceiveRtp.subscribe(({ payload: p }) => {
      seen++;
      let at = 1;
      const startOfPartition0 = (p[0]! & 0x10) !== 0 && (p[0]! & 0x07) === 0;
      if (p[0]! & 0x80) {
        const x = p[1]!;
        at = 2;
        if (x & 0x80) at += p[at]! & 0x80 ? 2 : 1; // picture id
        if (x & 0x40) at += 1; // TL0PICIDX
        if (x & 0x30) at += 1; // TID / KEYIDX
      }
      const keyFrame = (p[at]! & 0x01) === 0;
      const startCode = p[at + 3] === 0x9d && p[at + 4] === 0x01 && p[at + 5] === 0x2a;
      if (!startOfPartition0 || !keyFrame || !startCode) return;
      resolve({ width: p.readUInt16LE(at + 6) & 0x3fff, height: p.readUInt16LE(at + 8) & 0x3fff });
    }));
  });
  const what = () => `${v.who}: no VP8 key frame in ${seen} RTP packets (${v.state()})`;
  return within(size, what).finally(unSubscribe);
}

/** The first message the channel receives after sending `sent`. */
function echoOf(channel: RTCDataChannel, sent: string | Buffer, v: Named): Promise<string | Buffer> {
  let unSubscribe = () => {};
  const echo = new Promise<string | Buffer>((resolve) => {
    ({ unSubscribe } = channel.onMessage.subscribe(resolve));
    channel.send(sent);
  });
  const what = () =>
    `${v.who}: no echo of ${JSON.stringify(sent)} (data channel ${channel.readyState}, ${v.state()})`;
  return within(echo, what).finally(unSubscribe);
}

function reaches(channel: RTCDataChannel, wanted: 'open' | 'closed', v: Named): Promise<void> {
  if (channel.readyState === wanted) return Promise.resolve();
  let unSubscribe = () => {};
  const reached = new Promise<void>((resolve) => {
    ({ unSubscribe } = channel.stateChanged.subscribe((state) => {
      if (state === wanted) resolve();
    }));
  });
  const what = () => `${v.who}: data channel not ${wanted} (still ${channel.readyState}, ${v.state()})`;
  return within(reached, what).finally(unSubscribe);
}

const opened = (channel: RTCDataChannel, v: Named) => reaches(channel, 'open', v);
const closed = (channel: RTCDataChannel, v: Named) => reaches(channel, 'closed', v);

/** The streamer's exit code and signal, once it has exited. */
const exitOf = (s: Streamer, after: string) => within(s.exited, `streamer: did not exit after ${after}`);

/** Whether process `pid` still runs (a zombie, dead but not yet reaped by its new parent, does not). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const ffmpegPidOf = async (s: Streamer) =>
  Number((await s.output.waitFor(/ffmpeg started \(pid (\d+)\)/))[1]);

test('a viewer gets VP8 video and its data channel echoed; the streamer exits 0 when the relay closes with 1000', {
  timeout: 60_000,
}, async (t) => {
  const s = await startStreamer(t);
  const v = await connectViewer(s, 'player-1', t);
  const vp8 = Number(v.offerSdp.match(/a=rtpmap:(\d+) VP8\/90000/)?.[1]);
  assert.ok(vp8 > 0, 'the offer has VP8');

  const track = await v.track();
  const [packets, keyFrame] = await Promise.all([rtpPackets(track, 10, v), vp8KeyFrameSize(track, v)]);
  for (const packet of packets) assert.equal(packet.header.payloadType, vp8, 'the negotiated payload type');
  assert.deepEqual(keyFrame, { width: 640, height: 360 });
  assert.ok(v.candidatesAfterOffer(), 'the streamer trickles candidates, and only after its offer');

  const channel = await v.channel();
  assert.equal(channel.label, 'cirrus');
  await opened(channel, v);
  assert.equal(await echoOf(channel, 'hello from the viewer', v), 'hello from the viewer');
  const input = Buffer.from([0x4b, 0x01, 0x02, 0x00, 0xff]);
  assert.deepEqual(await echoOf(channel, input, v), input);

  const ffmpegPid = await ffmpegPidOf(s);
  const closedByStreamer = closed(channel, v);
  s.link.send({ type: 'playerDisconnected', playerId: 'player-1' });
  await closedByStreamer;
  await s.output.waitFor(new RegExp(`ffmpeg stopped \\(pid ${ffmpegPid}\\)`));
  assert.equal(isRunning(ffmpegPid), false, 'ffmpeg stops with the last player');

  s.link.socket.close(1000, 'worker stopped');
  const [code, signal] = await exitOf(s, 'the relay closed with 1000');
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
  const errors = s.output.lines.filter((l) => l.includes('error:'));
  assert.deepEqual(errors, [], 'no error logged');
});

test('two viewers at once share one ffmpeg; one leaving does not stop the other', {
  timeout: 60_000,
}, async (t) => {
  const s = await startStreamer(t);
  const [a, b] = await Promise.all([connectViewer(s, 'p-a', t), connectViewer(s, 'p-b', t)]);
  const [trackA, trackB, channelA, channelB] = await Promise.all([
    a.track(),
    b.track(),
    a.channel(),
    b.channel(),
  ]);
  await Promise.all([
    rtpPackets(trackA, 10, a),
    rtpPackets(trackB, 10, b),
    opened(channelA, a),
    opened(channelB, b),
  ]);
  assert.ok(a.candidatesAfterOffer() && b.candidatesAfterOffer());
  assert.equal(await echoOf(channelB, 'to b', b), 'to b');
  const ffmpegPid = await ffmpegPidOf(s);

  const closedA = closed(channelA, a);
  s.link.send({ type: 'playerDisconnected', playerId: 'p-a' });
  await closedA;
  await rtpPackets(trackB, 10, b);
  assert.equal(await echoOf(channelB, 'still here', b), 'still here');
  assert.equal(isRunning(ffmpegPid), true, 'the remaining viewer keeps ffmpeg');
  assert.equal(s.output.lines.filter((l) => l.includes('ffmpeg started')).length, 1, 'one ffmpeg for both');

  s.link.socket.close(1000);
  assert.deepEqual(await exitOf(s, 'the relay closed with 1000'), [0, null]);
  assert.equal(isRunning(ffmpegPid), false, 'no ffmpeg outlives the streamer');
});

test('SIGTERM mid-stream closes the socket with 1000, stops ffmpeg and exits 0', {
  timeout: 60_000,
}, async (t) => {
  const s = await startStreamer(t);
  const v = await connectViewer(s, 'player-1', t);
  await rtpPackets(await v.track(), 1, v);
  const ffmpegPid = await ffmpegPidOf(s);
  assert.equal(isRunning(ffmpegPid), true);

  const socketClosed = once(s.link.socket, 'close') as Promise<[number, Buffer]>;
  s.child.kill('SIGTERM');
  const [[closeCode], [code, signal]] = await Promise.all([
    within(socketClosed, 'streamer: signalling socket not closed after SIGTERM'),
    exitOf(s, 'SIGTERM'),
  ]);
  assert.equal(closeCode, 1000);
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
  assert.equal(isRunning(ffmpegPid), false, 'no ffmpeg outlives the streamer');
});

test('the streamer exits 1 when the signalling socket closes abnormally', { timeout: 60_000 }, async (t) => {
  const s = await startStreamer(t);
  const v = await connectViewer(s, 'player-1', t);
  await rtpPackets(await v.track(), 1, v);
  const ffmpegPid = await ffmpegPidOf(s);
  s.link.socket.terminate();
  const [code] = await exitOf(s, 'the relay dropped the socket');
  assert.equal(code, 1);
  assert.equal(isRunning(ffmpegPid), false, 'no ffmpeg outlives the streamer');
});
