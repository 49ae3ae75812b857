// Parsing of incoming WebSocket frames: size, JSON and schema checks, with a message for each failure.
import type { Validator } from '@usher/protocol';
import type { Static, TSchema } from 'typebox';
import type { RawData } from 'ws';
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
