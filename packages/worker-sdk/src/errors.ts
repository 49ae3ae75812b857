// Named errors of the worker SDK, each with a stable code and a retryable flag.
import { ERRORS, isErrorCode } from '@usher/protocol';

/** Codes raised by the SDK itself; errors relayed from the server keep the server's code. */
export const WORKER_ERRORS = {
  WORKER_CONFIG: {
    retryable: false,
    description: 'An option is missing or invalid; the message names the option and env var.',
  },
  WORKER_NO_SESSION: {
    retryable: false,
    description: 'The call needs an assigned session and the worker has none.',
  },
  WORKER_NOT_CONNECTED: {
    retryable: true,
    description: 'The call needs a registered connection and there is none right now.',
  },
  WORKER_BAD_ARGUMENT: {
    retryable: false,
    description: 'An argument has a bad value; the message names it.',
  },
  WORKER_REJECTED: {
    retryable: false,
    description: 'The server refused the worker (close code 1008 or 4100).',
  },
  WORKER_RECONNECT_FAILED: {
    retryable: true,
    description: 'Every connection attempt failed; the worker gave up.',
  },
  WORKER_CLOSED: { retryable: false, description: 'The worker was closed.' },
  WORKER_HISTORY_FAILED: {
    retryable: true,
    description: 'The chat history could not be read: the server did not answer, or answered with no JSON.',
  },
  WORKER_HOOK_FAILED: {
    retryable: false,
    description: 'A lifecycle hook or an event listener threw; the cause is attached.',
  },
  WORKER_OUTBOX_DROPPED: {
    retryable: false,
    description:
      'Frames buffered while reconnecting were dropped: the outbox was full, or the session was gone when the worker came back.',
  },
} as const satisfies Record<string, { retryable: boolean; description: string }>;

export type WorkerErrorCode = keyof typeof WORKER_ERRORS;

export class WorkerError extends Error {
  /** a WorkerErrorCode, or the server's code when `fromServer` */
  readonly code: string;
  readonly retryable: boolean;
  readonly fromServer: boolean;

  constructor(code: WorkerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WorkerError';
    this.code = code;
    this.retryable = WORKER_ERRORS[code].retryable;
    this.fromServer = false;
  }
}

/** An `error` frame sent by the server; `retryable` follows the protocol's error table when the code is known. */
export class WorkerServerError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly fromServer = true;

  constructor(code: string, message: string) {
    super(message);
    this.name = 'WorkerServerError';
    this.code = code;
    this.retryable = isErrorCode(code) ? ERRORS[code].retryable : false;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
