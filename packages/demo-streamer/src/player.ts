// One viewer's WebRTC peer connection (werift): the shared VP8 video as a send-only track, a `cirrus` data
// channel that echoes every message back, the offer sent before any ICE candidate (Epic's frontend drops
// candidates that arrive before the offer), and the viewer's answer and candidates applied in order.
import type { StreamerSignal } from '@usher/protocol';
import { MediaStreamTrack, type RTCDataChannel, RTCPeerConnection } from 'werift';
import { type Log, truncate } from './log.ts';
import type { IceCandidateInit, IceServer } from './messages.ts';
import type { VideoSource } from './video.ts';

export const DATA_CHANNEL_LABEL = 'cirrus';

export interface PlayerOptions {
  playerId: string;
  iceServers: IceServer[];
  video: VideoSource;
  send: (message: StreamerSignal) => void;
  log: Log;
}

export class Player {
  readonly id: string;
  readonly #o: PlayerOptions;
  readonly #pc: RTCPeerConnection;
  /** Signalling steps run one after another: offer, then answer, then the viewer's candidates. */
  #steps: Promise<void> = Promise.resolve();
  #unsubscribeVideo: () => void = () => {};
  #closed = false;

  constructor(options: PlayerOptions) {
    this.#o = options;
    this.id = options.playerId;
    this.#pc = new RTCPeerConnection({ iceServers: options.iceServers });
  }

  /** Sends the offer, then trickles candidates; video flows once the viewer has connected. */
  start(): void {
    const { log, send } = this.#o;
    const pc = this.#pc;
    const track = new MediaStreamTrack({ kind: 'video' });
    pc.addTransceiver(track, { direction: 'sendonly' });
    this.#echo(pc.createDataChannel(DATA_CHANNEL_LABEL));
    pc.connectionStateChange.subscribe((state) => log.info(`player ${this.id}: peer connection ${state}`));

    let offerSent = false;
    const early: IceCandidateInit[] = [];
    const sendCandidate = (candidate: IceCandidateInit) =>
      send({ type: 'iceCandidate', playerId: this.id, candidate });
    pc.onIceCandidate.subscribe((c) => {
      if (!c) return; // end of gathering: Epic's protocol has no message for it
      const candidate = {
        candidate: c.candidate,
        sdpMid: c.sdpMid ?? null,
        sdpMLineIndex: c.sdpMLineIndex ?? null,
      };
      if (offerSent) sendCandidate(candidate);
      else early.push(candidate);
    });

    this.#unsubscribeVideo = this.#o.video.subscribe((packet) => track.writeRtp(packet));
    this.#step('offer', async () => {
      await pc.setLocalDescription(await pc.createOffer());
      const sdp = pc.localDescription?.sdp;
      if (!sdp) throw new Error('werift produced no local description');
      send({ type: 'offer', playerId: this.id, sdp });
      offerSent = true;
      for (const candidate of early.splice(0)) sendCandidate(candidate);
    });
  }

  answer(sdp: string): void {
    this.#step('answer', () => this.#pc.setRemoteDescription({ type: 'answer', sdp }));
  }

  addIceCandidate(candidate: IceCandidateInit): void {
    this.#step('ICE candidate', () => this.#pc.addIceCandidate(candidate));
  }

  /** Stops sending video and closes the peer connection (the data channel with it). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribeVideo();
    await this.#pc.close();
    this.#o.log.info(`player ${this.id}: closed`);
  }

  #echo(channel: RTCDataChannel): void {
    const { log } = this.#o;
    channel.stateChanged.subscribe((state) => log.info(`player ${this.id}: data channel ${state}`));
    channel.onMessage.subscribe((data) => {
      log.info(`player ${this.id}: data channel message ${describe(data)}, echoed back`);
      if (channel.readyState === 'open') channel.send(data);
    });
  }

  #step(what: string, run: () => Promise<unknown>): void {
    this.#steps = this.#steps
      .then(async () => {
        if (!this.#closed) await run();
      })
      .catch((err: unknown) =>
        this.#o.log.error(`player ${this.id}: ${what} failed: ${err instanceof Error ? err.message : err}`),
      );
  }
}

function describe(data: string | Buffer): string {
  if (typeof data === 'string') return `(text) ${JSON.stringify(truncate(data, 120))}`;
  return `(${data.length} bytes) ${truncate(data.toString('hex'), 64)}`;
}
