// The browser APIs the SDK uses, as narrow interfaces: the browser's own classes fit them, and tests (or another
// runtime) can pass their own through the options.

/** What the SDK needs of a WebSocket; the browser's `WebSocket` fits. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type SocketConstructor = new (url: string) => SocketLike;

/** `readyState` of an open socket (WebSocket.OPEN). */
export const SOCKET_OPEN = 1;

/** What the SDK needs of an RTCPeerConnection; the browser's fits. */
export interface PeerConnectionLike {
  onicecandidate: ((ev: RTCPeerConnectionIceEvent) => void) | null;
  ontrack: ((ev: RTCTrackEvent) => void) | null;
  ondatachannel: ((ev: RTCDataChannelEvent) => void) | null;
  /** 'failed' when ICE found no path to the worker (or lost it for good) */
  readonly connectionState?: RTCPeerConnectionState;
  onconnectionstatechange?: ((ev: Event) => void) | null;
  setRemoteDescription(description: RTCSessionDescriptionInit): Promise<void>;
  createAnswer(): Promise<RTCSessionDescriptionInit>;
  setLocalDescription(description: RTCSessionDescriptionInit): Promise<void>;
  addIceCandidate(candidate: RTCIceCandidateInit): Promise<void>;
  close(): void;
}
export type PeerConnectionConstructor = new (configuration?: RTCConfiguration) => PeerConnectionLike;

/** What the SDK needs of a `<video>` element; an HTMLVideoElement fits. */
export interface VideoLike {
  srcObject: MediaProvider | null;
  muted: boolean;
  playsInline: boolean;
  play(): Promise<void>;
  /** where keyboard, mouse, touch and wheel input is watched */
  readonly ownerDocument: Pick<Document, 'addEventListener' | 'removeEventListener'>;
}

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/** Timer functions; injectable so tests can drive time. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}
