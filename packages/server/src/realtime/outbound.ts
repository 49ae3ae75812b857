// Outgoing WebSocket frames, cheaply: an event is turned into JSON once for all the sockets that get it, and a
// socket's frames of one event-loop turn leave in one write (one system call) instead of one write each.
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';

/** The last event encoded and its JSON: the hub hands one event to every socket of its session in a row. */
let lastEvent: object | null = null;
let lastJson = '';

/**
 * The JSON of a hub event, made once however many sockets send it in a row. Events are never changed once
 * published, so the object itself is the key.
 */
function encodeEvent(event: object): string {
  if (event !== lastEvent) {
    lastJson = JSON.stringify(event);
    lastEvent = event;
  }
  return lastJson;
}

/** Sockets corked in this turn, uncorked together once its I/O is handled. */
const corked: Socket[] = [];
let flushing = false;

function uncorkAll(): void {
  flushing = false;
  for (const s of corked.splice(0)) s.uncork();
}

/**
 * Sends a JSON text frame to an open socket. The first frame of a turn corks the socket's TCP stream; the
 * frames after it join that write, which goes out in the same turn (setImmediate, after the poll phase's I/O)
 * in the order the frames were sent.
 */
export function sendFrame(socket: WebSocket, frame: object): void {
  if (socket.readyState === socket.OPEN) send(socket, JSON.stringify(frame));
}

/** Sends an event the hub published (see sendFrame); its JSON is made once for all the sockets that get it. */
export function sendEvent(socket: WebSocket, event: object): void {
  if (socket.readyState === socket.OPEN) send(socket, encodeEvent(event));
}

function send(socket: WebSocket, json: string): void {
  const raw = (socket as unknown as { _socket?: Socket })._socket;
  if (raw && !raw.destroyed && raw.writableCorked === 0) {
    raw.cork();
    corked.push(raw);
    if (!flushing) {
      flushing = true;
      setImmediate(uncorkAll);
    }
  }
  socket.send(json);
}
