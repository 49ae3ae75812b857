// Bare `ws` ends of Pixel Streaming signalling, for load: a streamer that registers with a pool token and
// learns its players, and a viewer that opens its session socket and subscribes to its streamer. No SDK, so
// that the benchmark process costs little next to the server it loads.
import WebSocket from 'ws';
import type { HttpClient } from './harness.ts';

type Message = { type: string; [key: string]: unknown };

/** A pool token's signalling URL: external streamers of `projectId` register with it. */
export async function poolSignallingUrl(http: HttpClient, projectId: string): Promise<string> {
  const r = await http.call('POST', `/projects/${projectId}/pool-tokens`, {});
  if (r.status !== 201) throw new Error(`POST /projects/${projectId}/pool-tokens: ${r.status} ${r.body}`);
  return (JSON.parse(r.body) as { signallingUrl: string }).signallingUrl;
}

/** A streamer that is only a WebSocket: it identifies, then reports each player Usher connects to it. */
export class BareStreamer {
  readonly ws: WebSocket;
  /** the worker id Usher registered it under */
  readonly workerId: Promise<string>;
  onPlayer: (playerId: string) => void = () => {};

  constructor(signallingUrl: string, endpointId: string) {
    this.ws = new WebSocket(signallingUrl, { perMessageDeflate: false });
    this.workerId = new Promise((resolve, reject) => {
      this.ws.on('error', reject);
      this.ws.on('close', (code, reason) =>
        reject(new Error(`the streamer's socket closed with ${code} ${reason.toString()}`)),
      );
      this.ws.on('message', (data) => {
        const m = JSON.parse(data.toString()) as Message;
        if (m.type === 'identify')
          this.ws.send(JSON.stringify({ type: 'endpointId', id: endpointId, protocolVersion: '1.3.0' }));
        else if (m.type === 'endpointIdConfirm') resolve(String(m.committedId));
        else if (m.type === 'playerConnected') this.onPlayer(String(m.playerId));
      });
    });
  }
}

/** A viewer's session socket, open once its snapshot has arrived; `messages` keeps what it received. */
export interface BareViewer {
  ws: WebSocket;
  messages: Message[];
  /** the next message of this type (from those not yet taken) */
  next(type: string, timeoutMs?: number): Promise<Message>;
}

export function openViewer(serverUrl: string, session: { id: string; token: string }): Promise<BareViewer> {
  const url = `${serverUrl.replace(/^http/, 'ws')}/sessions/${session.id}/ws?token=${encodeURIComponent(session.token)}`;
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const messages: Message[] = [];
  const taken = new Set<Message>();
  const waiters: { type: string; resolve: (m: Message) => void }[] = [];
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as Message;
    messages.push(m);
    const i = waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) {
      taken.add(m);
      waiters.splice(i, 1)[0]!.resolve(m);
    }
  });
  const next = (type: string, timeoutMs = 10_000) => {
    const seen = messages.find((m) => m.type === type && !taken.has(m));
    if (seen) {
      taken.add(seen);
      return Promise.resolve(seen);
    }
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${type} on session ${session.id}'s socket within ${timeoutMs} ms`)),
        timeoutMs,
      );
      waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  };
  const viewer: BareViewer = { ws, messages, next };
  return new Promise((resolve, reject) => {
    ws.once('error', reject);
    next('session.status_changed').then(() => resolve(viewer), reject);
  });
}
