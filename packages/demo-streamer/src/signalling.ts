// The streamer half of Epic's Pixel Streaming signalling (1.3.0) over one WebSocket: answers `identify` with
// `endpointId`, answers and sends pings, and hands the player messages to the streamer's handlers.
import { SIGNALLING_PROTOCOL_VERSION, type StreamerSignal } from '@usher/protocol';
import WebSocket from 'ws';
import { type Log, truncate } from './log.ts';
import type { IceCandidateInit, IceServer } from './messages.ts';
import { parseServerSignal } from './messages.ts';

const PING_INTERVAL_MS = 10_000;
/** How long close() waits for the server to acknowledge the close before dropping the connection. */
const CLOSE_WAIT_MS = 2_000;

export interface SignallingHandlers {
  /** sessionId: the viewer's Usher session, when the signalling server says (null otherwise) */
  playerConnected(playerId: string, sessionId: string | null): void;
  answer(playerId: string, sdp: string): void;
  iceCandidate(playerId: string, candidate: IceCandidateInit): void;
  playerDisconnected(playerId: string): void;
  /** The socket has closed (or could not open: code 1006). */
  closed(code: number, reason: string): void;
}

export interface SignallingOptions {
  url: string;
  /** The id the streamer gives in `endpointId`. */
  endpointId: string;
  handlers: SignallingHandlers;
  log: Log;
}

export class SignallingClient {
  readonly #o: SignallingOptions;
  #socket: WebSocket | null = null;
  #pinger: NodeJS.Timeout | undefined;
  /** The ICE servers of the last `config`; players created from then on use them. */
  iceServers: IceServer[] = [];
  /** The id the server registered the streamer under (`endpointIdConfirm`), once it has. */
  committedId: string | null = null;

  constructor(options: SignallingOptions) {
    this.#o = options;
  }

  connect(): void {
    const { log, handlers } = this.#o;
    const where = redactToken(this.#o.url);
    log.info(`connecting to ${where}`);
    const socket = new WebSocket(this.#o.url);
    this.#socket = socket;
    socket.on('open', () => {
      log.info('signalling connected');
      this.#pinger = setInterval(
        () => this.send({ type: 'ping', time: Math.floor(Date.now() / 1000) }),
        PING_INTERVAL_MS,
      );
    });
    socket.on('message', (data, isBinary) => {
      if (isBinary) log.error('ignored a binary signalling frame: the protocol is JSON text');
      else this.#onMessage(data.toString());
    });
    socket.on('error', (err) => log.error(`signalling socket (${where}): ${err.message}`));
    socket.on('close', (code, reason) => {
      clearInterval(this.#pinger);
      handlers.closed(code, reason.toString());
    });
  }

  send(message: StreamerSignal): void {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  /** Closes the socket with `code` and waits for it to close. */
  close(code: number, reason: string): Promise<void> {
    const socket = this.#socket;
    if (!socket || socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const dropAfter = setTimeout(() => socket.terminate(), CLOSE_WAIT_MS);
      socket.once('close', () => {
        clearTimeout(dropAfter);
        resolve();
      });
      socket.close(code, reason);
    });
  }

  #onMessage(text: string): void {
    const { log, handlers } = this.#o;
    const m = parseServerSignal(text);
    if (typeof m === 'string') {
      log.error(`ignored a signalling message (${m}): ${truncate(text)}`);
      return;
    }
    switch (m.type) {
      case 'config':
        this.iceServers = m.iceServers;
        log.info(`config received (${m.iceServers.length} ICE servers)`);
        break;
      case 'identify':
        this.send({
          type: 'endpointId',
          id: this.#o.endpointId,
          protocolVersion: SIGNALLING_PROTOCOL_VERSION,
        });
        break;
      case 'endpointIdConfirm':
        this.committedId = m.committedId;
        log.info(`registered as ${m.committedId ?? this.#o.endpointId}`);
        break;
      case 'ping':
        this.send({ type: 'pong', time: m.time ?? Math.floor(Date.now() / 1000) });
        break;
      case 'error':
        log.error(`signalling server: ${m.message}`);
        break;
      case 'ignored':
        break;
      case 'playerConnected':
        handlers.playerConnected(m.playerId, m.sessionId);
        break;
      case 'answer':
        handlers.answer(m.playerId, m.sdp);
        break;
      case 'iceCandidate':
        handlers.iceCandidate(m.playerId, m.candidate);
        break;
      case 'playerDisconnected':
        handlers.playerDisconnected(m.playerId);
        break;
    }
  }
}

/** The URL without the value of its `token` parameter, for logs. */
export function redactToken(url: string): string {
  return url.replace(/([?&]token=)[^&]*/, '$1***');
}
