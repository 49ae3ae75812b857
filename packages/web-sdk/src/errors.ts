// UsherError: what the SDK rejects with and reports. Server errors keep the server's stable code
// (docs/errors.md); the SDK's own codes are listed in WEB_ERRORS.
import { ERRORS, isErrorCode } from '@usher/protocol';

/** Codes raised by the SDK itself. */
export const WEB_ERRORS = {
  BAD_OPTIONS: { retryable: false, description: 'An option is missing or invalid; the message names it.' },
  NETWORK: { retryable: true, description: 'The server could not be reached (fetch failed).' },
  BAD_RESPONSE: { retryable: false, description: 'The server answered something the SDK cannot read.' },
  SUBSCRIBE_FAILED: { retryable: false, description: 'The server refused the stream subscription.' },
  WEBRTC_FAILED: {
    retryable: false,
    description:
      'The browser could not answer the stream offer, or the media connection failed (recoverable while the SDK asks for the stream again).',
  },
  NOT_CONNECTED: {
    retryable: true,
    description:
      'The session socket is not open (still opening, being replaced by a fresh session, or ended): nothing was sent. While the SDK reconnects to the same session, messages are held instead (OUTBOX_FULL, NOT_SENT).',
  },
  OUTBOX_FULL: {
    retryable: true,
    description:
      'The SDK is reconnecting and already holds 100 room messages (OUTBOX_LIMIT) to send when the socket is back: this one was not held, nothing was sent.',
  },
  NOT_SENT: {
    retryable: false,
    description:
      'A room message held while the SDK reconnected was never sent: the session ended, or a fresh session replaced the lost one (the new room never sees it).',
  },
  TOO_LARGE: {
    retryable: false,
    description:
      "A room message would make a frame over the server's limit (64 KiB), which would close the socket: nothing was sent.",
  },
  NO_ACK: {
    retryable: true,
    description:
      'The server did not acknowledge a message in time, or the connection closed first: it may or may not have arrived.',
  },
  REPLAY_INCOMPLETE: {
    retryable: false,
    description:
      'An `error` event after a reconnect: more room messages came while the socket was down than the server replays (1,000); the newest were delivered, the older ones are in history().',
  },
} as const satisfies Record<string, { retryable: boolean; description: string }>;
export type WebErrorCode = keyof typeof WEB_ERRORS;

export class UsherError extends Error {
  /** the server's error code (e.g. PROJECT_DISABLED) or one of WEB_ERRORS */
  readonly code: string;
  /** the HTTP status, when the error is an HTTP answer */
  readonly status: number | null;
  /** whether the same call may succeed later */
  readonly retryable: boolean;
  /** what the server added: a refused start carries the session's `closeCode` (4000, 4001, 4002) and `sessionId` */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: string,
    message: string,
    options: {
      status?: number | null;
      retryable?: boolean;
      cause?: unknown;
      details?: Record<string, unknown>;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UsherError';
    this.code = code;
    this.status = options.status ?? null;
    this.retryable = options.retryable ?? defaultRetryable(code);
    this.details = options.details ?? {};
  }
}

function defaultRetryable(code: string): boolean {
  if (isErrorCode(code)) return ERRORS[code].retryable;
  return Object.hasOwn(WEB_ERRORS, code) ? WEB_ERRORS[code as WebErrorCode].retryable : false;
}

/** What the `error` event carries: a `session.error` event, an `error` frame, or a failure of the SDK. */
export interface SessionErrorInfo {
  code: string;
  message: string;
  /** whether the session goes on despite the error */
  recoverable: boolean;
}
