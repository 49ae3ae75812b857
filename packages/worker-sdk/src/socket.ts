// The minimal WebSocket shape the worker needs, met by both `ws` and the WHATWG global WebSocket.
import WebSocket from 'ws';

export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: 'error', listener: (event: unknown) => void): void;
  /** `ws` only: sends a ping control frame, which the server answers with a pong */
  ping?(): void;
  /** `ws` only: ping and pong control frames from the server */
  on?(event: 'ping' | 'pong', listener: () => void): unknown;
  /** `ws` only: drops the connection at once, without the closing handshake */
  terminate?(): void;
}

export type SocketConstructor = new (url: string) => SocketLike;

/** readyState of an open socket, the same in every implementation */
export const SOCKET_OPEN = 1;

/** The default implementation: the `ws` package. */
export const DefaultWebSocket: SocketConstructor = WebSocket;

/** The text of a frame, or null when it is binary (the protocol is JSON text only). */
export function frameText(data: unknown): string | null {
  if (typeof data === 'string') return data;
  return null;
}
