// Parsing of incoming WebSocket frames: size, JSON (its nesting depth and NUL characters too) and schema checks,
// with a message for each failure; and how a socket whose set-up failed is closed.
import { SocketCloseCode, UsherError, type Validator } from '@usher/protocol';
import type { Static, TSchema } from 'typebox';
import type { RawData, WebSocket } from 'ws';
import { MAX_JSON_DEPTH, nulMessage, tooDeepMessage } from '../api/validation.ts';
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
  const text = buf.toString('utf8');
  const json = parseJsonText(text);
  if (!json.ok) return { ok: false, code: 'BAD_REQUEST', message: `${json.message}: ${truncate(text)}` };
  const result = v.parse(json.value);
  if (!result.ok)
    return { ok: false, code: 'BAD_REQUEST', message: `bad frame (${result.message}): ${truncate(text)}` };
  return { ok: true, value: result.value };
}

/**
 * A frame's text parsed as JSON, or why it cannot be taken: it is not JSON, it nests deeper than MAX_JSON_DEPTH,
 * or a string (or key) in it holds a NUL character (as HTTP bodies are refused). JSON.parse takes any nesting
 * (V8 parses without recursion); the parsed value is then walked without recursion either, which costs what it
 * holds rather than its length: a frame of long text costs one native search per string.
 */
export function parseJsonText(
  text: string,
  what = 'the frame',
): { ok: true; value: unknown } | { ok: false; message: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, message: `${what} is not valid JSON` };
  }
  const problem = inspectJson(value);
  if (problem === 'tooDeep') return { ok: false, message: tooDeepMessage(what) };
  if (problem === 'nul') return { ok: false, message: nulMessage(what) };
  return { ok: true, value };
}

/** What a parsed JSON value holds that is refused: nesting deeper than MAX_JSON_DEPTH, or a NUL character. */
function inspectJson(value: unknown): 'tooDeep' | 'nul' | null {
  if (typeof value === 'string') return value.includes('\0') ? 'nul' : null;
  if (typeof value !== 'object' || value === null) return null;
  const stack: [object, number][] = [[value, 1]];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [node, depth] = next;
    if (depth > MAX_JSON_DEPTH) return 'tooDeep';
    const isArray = Array.isArray(node);
    for (const key in node) {
      if (!isArray && key.includes('\0')) return 'nul';
      const v = (node as Record<string, unknown>)[key];
      if (typeof v === 'string') {
        if (v.includes('\0')) return 'nul';
      } else if (typeof v === 'object' && v !== null) stack.push([v, depth + 1]);
    }
  }
  return null;
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
