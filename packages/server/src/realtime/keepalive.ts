// Viewer keepalive: one sweep per interval pings every tracked socket and drops the ones that did not answer
// the previous ping. A dead connection (a laptop closed, a network gone without a FIN) then closes as 1006,
// which opens the session's reconnect window and, if nobody comes back, frees the seat.
import type { WebSocket } from 'ws';

export class Keepalive {
  readonly #sockets = new Map<WebSocket, { answered: boolean }>();
  readonly #timer: NodeJS.Timeout | null;

  /** intervalMs 0: no keepalive */
  constructor(intervalMs: number) {
    this.#timer = intervalMs > 0 ? setInterval(() => this.#sweep(), intervalMs) : null;
    this.#timer?.unref();
  }

  track(socket: WebSocket): void {
    const entry = { answered: true };
    this.#sockets.set(socket, entry);
    socket.on('pong', () => {
      entry.answered = true;
    });
    socket.once('close', () => this.#sockets.delete(socket));
  }

  #sweep(): void {
    for (const [socket, entry] of this.#sockets) {
      if (!entry.answered) {
        this.#sockets.delete(socket);
        socket.terminate();
        continue;
      }
      entry.answered = false;
      if (socket.readyState === socket.OPEN) socket.ping();
    }
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#sockets.clear();
  }
}
