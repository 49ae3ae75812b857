// What a long-lived WebSocket keeps of the HTTP request that opened it. @fastify/websocket keeps the request
// and its response for the socket's whole life: its 'error' listener holds both, and the response stays
// assigned to the connection. That is about 2.5 KiB of heap per socket, which adds up over thousands of waiting
// viewers. Once the handler no longer needs the request, both are let go: the error listener is replaced by
// one that does what the plugin's default does (log the error, terminate the socket), and the response is
// detached from the connection, as Node does when a response ends.
import { ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';

/** Lets go of the upgrade's request and response; returns the request's logger, for the socket's handlers. */
export function releaseUpgrade(socket: WebSocket, req: FastifyRequest): FastifyBaseLogger {
  const log = req.log;
  socket.removeAllListeners('error');
  socket.on('error', (err) => {
    log.error({ err }, 'WebSocket error');
    socket.terminate();
  });
  // Node's own link from a connection to the response it is serving (http's _httpMessage)
  const connection = req.raw.socket as (typeof req.raw.socket & { _httpMessage?: unknown }) | null;
  const response = connection?._httpMessage;
  if (connection && response instanceof ServerResponse) response.detachSocket(connection);
  return log;
}
