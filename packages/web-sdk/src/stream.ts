// The WebRTC half of a stream session (docs/signalling.md): asks for the seated worker, subscribes, answers its
// offer, trickles ICE both ways, attaches the media to the <video>, and keeps the data channel the worker opens.
import type { SessionErrorInfo } from './errors.ts';
import type { PeerConnectionConstructor, PeerConnectionLike, VideoLike } from './platform.ts';

export interface StreamHooks {
  /** sends a signalling message on the session socket */
  send(message: Record<string, unknown>): void;
  onStream(stream: MediaStream): void;
  onDataChannelMessage(data: string | ArrayBuffer): void;
  onError(error: SessionErrorInfo): void;
}

/** Media connections that fail in a row before the SDK stops asking for the stream again. */
export const MAX_MEDIA_RETRIES = 3;

export class StreamConnection {
  readonly #RTCPeerConnection: PeerConnectionConstructor | null;
  readonly #video: VideoLike | null;
  readonly #hooks: StreamHooks;
  #configuration: RTCConfiguration = {};
  #pc: PeerConnectionLike | null = null;
  /** signalling steps run one after the other: a candidate waits for the offer before it */
  #steps: Promise<void> = Promise.resolve();
  #stream: MediaStream | null = null;
  #channel: RTCDataChannel | null = null;
  /** media connections that failed since the last one that connected */
  #failures = 0;

  constructor(
    RTCPeerConnection: PeerConnectionConstructor | null,
    video: VideoLike | null,
    hooks: StreamHooks,
  ) {
    this.#RTCPeerConnection = RTCPeerConnection;
    this.#video = video;
    this.#hooks = hooks;
  }

  get stream(): MediaStream | null {
    return this.#stream;
  }

  get dataChannel(): RTCDataChannel | null {
    return this.#channel;
  }

  /** The server's `config` message. */
  configure(peerConnectionOptions: unknown): void {
    this.#configuration =
      typeof peerConnectionOptions === 'object' && peerConnectionOptions !== null
        ? (peerConnectionOptions as RTCConfiguration)
        : {};
  }

  /** Asks for the worker; the server answers once the session is seated on one. */
  requestStreamer(): void {
    this.#hooks.send({ type: 'listStreamers' });
  }

  /** Handles a signalling message from the worker or the server; other messages are ignored. */
  handle(message: { type: string; [key: string]: unknown }): void {
    switch (message.type) {
      case 'streamerList': {
        const ids = Array.isArray(message.ids) ? message.ids : [];
        // the server holds its answer until a worker is seated, so the list is never empty in practice
        if (typeof ids[0] === 'string') this.#hooks.send({ type: 'subscribe', streamerId: ids[0] });
        return;
      }
      case 'subscribeFailed':
        this.#hooks.onError({
          code: 'SUBSCRIBE_FAILED',
          message: `the server refused the stream subscription: ${String(message.message ?? 'no reason given')}`,
          recoverable: false,
        });
        return;
      case 'offer':
        this.#answer(String(message.sdp ?? ''));
        return;
      case 'iceCandidate': {
        const pc = this.#pc;
        const candidate = message.candidate as RTCIceCandidateInit | undefined;
        if (pc && candidate)
          this.#run(() =>
            // a candidate the browser rejects is not fatal: the others may still connect
            pc.addIceCandidate(candidate).catch(() => {}),
          );
      }
    }
  }

  /** Sends on the data channel; false when there is no open channel. */
  send(data: string | ArrayBuffer): boolean {
    const channel = this.#channel;
    if (channel?.readyState !== 'open') return false;
    if (typeof data === 'string') channel.send(data);
    else channel.send(data);
    return true;
  }

  /** Closes the peer connection (the socket closed, or the worker sent a new offer). */
  close(): void {
    const pc = this.#pc;
    this.#pc = null;
    this.#channel = null;
    this.#steps = Promise.resolve();
    if (pc) {
      pc.onicecandidate = null;
      pc.ontrack = null;
      pc.ondatachannel = null;
      pc.close();
    }
  }

  /** Stops showing the stream (the session ended). */
  detach(): void {
    this.close();
    this.#stream = null;
    if (this.#video) this.#video.srcObject = null;
  }

  #answer(sdp: string): void {
    if (!this.#RTCPeerConnection) {
      this.#hooks.onError({
        code: 'WEBRTC_FAILED',
        message: 'no RTCPeerConnection in this environment: pass the `RTCPeerConnection` option',
        recoverable: false,
      });
      return;
    }
    this.close();
    const pc = new this.#RTCPeerConnection(this.#configuration);
    this.#pc = pc;
    pc.onicecandidate = (ev) => {
      if (ev.candidate) this.#hooks.send({ type: 'iceCandidate', candidate: ev.candidate.toJSON() });
    };
    pc.ontrack = (ev) => this.#attach(ev.streams[0] ?? new MediaStream([ev.track]));
    pc.onconnectionstatechange = () => {
      if (this.#pc !== pc) return;
      if (pc.connectionState === 'connected') this.#failures = 0;
      else if (pc.connectionState === 'failed') this.#mediaFailed();
    };
    pc.ondatachannel = (ev) => {
      const channel = ev.channel;
      channel.binaryType = 'arraybuffer';
      channel.onmessage = (m: MessageEvent) => this.#hooks.onDataChannelMessage(m.data);
      this.#channel = channel;
    };
    this.#run(async () => {
      try {
        await pc.setRemoteDescription({ type: 'offer', sdp });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        if (this.#pc === pc) this.#hooks.send({ type: 'answer', sdp: answer.sdp });
      } catch (err) {
        if (this.#pc === pc)
          this.#hooks.onError({
            code: 'WEBRTC_FAILED',
            message: `could not answer the stream offer: ${(err as Error)?.message ?? err}`,
            recoverable: false,
          });
      }
    });
  }

  /**
   * ICE found no path to the worker, or lost it for good. The stream is asked for again (a new subscription
   * brings a new offer), up to MAX_MEDIA_RETRIES times in a row; then the error says so and stays.
   */
  #mediaFailed(): void {
    this.close();
    this.#failures++;
    const retry = this.#failures <= MAX_MEDIA_RETRIES;
    this.#hooks.onError({
      code: 'WEBRTC_FAILED',
      message: retry
        ? `the media connection to the worker failed; asking for the stream again (${this.#failures} of ${MAX_MEDIA_RETRIES})`
        : `the media connection to the worker failed ${this.#failures} times in a row: the network between this browser and the worker lets no media through (a firewall, or no TURN server in the ICE servers)`,
      recoverable: retry,
    });
    if (retry) this.requestStreamer();
  }

  #attach(stream: MediaStream): void {
    if (stream === this.#stream) return;
    this.#stream = stream;
    const video = this.#video;
    if (video) {
      video.muted = true;
      video.playsInline = true;
      video.srcObject = stream;
      // browsers may refuse to autoplay; the page can call play() on a click
      video.play()?.catch(() => {});
    }
    this.#hooks.onStream(stream);
  }

  #run(step: () => Promise<void>): void {
    this.#steps = this.#steps.then(step);
  }
}
