// Parsing of incoming WebSocket frames: size, JSON and schema checks, with a message for each failure; and how a
// socket whose set-up failed is closed.
import { SocketCloseCode, UsherError, type Validator } from '@usher/protocol';
import type { Static, TSchema } from 'typebox';
import type { RawData, WebSocket } from 'ws';
import { scrubSecrets } from '../util/redact.ts';

export type Parsed<T> =
  | { ok: true; value: T }
  | { ok: false; code: 'PAYLOAD_TOO_LARGE' | 'BAD_REQUEST'; message: string };

export function parseFrame<T extends TSchema>(
  raw: RawData,
  isBinary: boolean,
  v: Validator<T>,
  maxBytes: number,
): Parsed<Static<T>> {
  if (isBinary)
    return { ok: false, code: 'BAD_REQUEST', message: 'binary frames are not accepted; send JSON text' };
  const buf = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw as ArrayBuffer);
  if (buf.byteLength > maxBytes)
    return { ok: false, code: 'PAYLOAD_TOO_LARGE', message: `frames are limited to ${maxBytes} bytes` };
  let json: unknown;
  try {
    json = JSON.parse(buf.toString('utf8'));
  } catch {
    return {
      ok: false,
      code: 'BAD_REQUEST',
      message: `the frame is not valid JSON: ${truncate(buf.toString('utf8'))}`,
    };
  }
  const result = v.parse(json);
  if (!result.ok)
    return {
      ok: false,
      code: 'BAD_REQUEST',
      message: `bad frame (${result.message}): ${truncate(buf.toString('utf8'))}`,
    };
  return { ok: true, value: result.value };
}

/** The start of a frame's text, for messages and logs: what looks like a token in it is hidden. */
export function truncate(s: string, max = 200): string {
  const shown = scrubSecrets(s);
  return shown.length > max ? `${shown.slice(0, max)}…` : shown;
}

/**
 * Whether a socket's set-up failed on the server's side (its database away, say) rather than being refused:
 * worth another try.
 */
export function failedOnServer(err: unknown): boolean {
  return !(err instanceof UsherError) || err.code === 'INTERNAL';
}

/**
 * Ends a socket whose set-up failed on the server's side: an INTERNAL error frame, then 1011, which clients and
 * the SDKs try again after (a 1008 is a refusal they take as final).
 */
export function closeToRetry(
  socket: WebSocket,
  send: (frame: { type: 'error'; code: string; message: string }) => void,
  message: string,
): void {
  send({ type: 'error', code: 'INTERNAL', message });
  socket.close(SocketCloseCode.InternalError, truncate(message, 120));
}
