// Stable error codes. They travel in HTTP bodies ({error:{code,message}}) and WebSocket frames, and map
// back to UsherError in every SDK. docs/errors.md lists them; a test keeps the two in sync.

export const ERRORS = {
  BAD_REQUEST: {
    status: 400,
    retryable: false,
    description: 'The request is malformed: bad JSON, a wrong type, an unknown field.',
  },
  BAD_PARAMETER: {
    status: 400,
    retryable: false,
    description: 'A query parameter has a bad value; the message names it.',
  },
  UNAUTHORIZED: {
    status: 401,
    retryable: false,
    description: 'No credentials, or credentials that are invalid or expired.',
  },
  FORBIDDEN: {
    status: 403,
    retryable: false,
    description: 'The credentials are valid but do not allow this action or resource.',
  },
  NOT_FOUND: { status: 404, retryable: false, description: 'No resource with this id.' },
  ROUTE_NOT_FOUND: { status: 404, retryable: false, description: 'No such route.' },
  CONFLICT: { status: 409, retryable: false, description: 'The resource already exists.' },
  ILLEGAL_TRANSITION: {
    status: 409,
    retryable: false,
    description: 'The session cannot move to that state from its current state.',
  },
  PROJECT_DISABLED: {
    status: 403,
    retryable: false,
    description: 'The project is disabled (close code 4000).',
  },
  QUEUE_FULL: { status: 503, retryable: true, description: 'The queue is full (close code 4001).' },
  APP_NOT_FOUND: {
    status: 422,
    retryable: false,
    description: 'The project has no runnable app or agent type (close code 4002).',
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    retryable: false,
    description: 'The body or frame is larger than allowed.',
  },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false, description: 'The body is not JSON.' },
  RATE_LIMITED: {
    status: 429,
    retryable: true,
    description: 'Too many requests, or room messages on one connection; slow down.',
  },
  NOT_RECORDED: {
    status: 500,
    retryable: true,
    description:
      'A room message was relayed but could not be stored; send it again if it must be in the transcript.',
  },
  UNAVAILABLE: {
    status: 503,
    retryable: true,
    description: 'The server is starting, draining or shutting down.',
  },
  INTERNAL: { status: 500, retryable: true, description: 'An unexpected server error; it was logged.' },
} as const satisfies Record<string, { status: number; retryable: boolean; description: string }>;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; retryable?: boolean; details?: unknown };
}

/** An error with a stable code, an HTTP status and a retryable flag. */
export class UsherError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'UsherError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryable = ERRORS[code].retryable;
    this.details = details;
  }

  toBody(): ErrorBody {
    const error: ErrorBody['error'] = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }

  static fromBody(body: ErrorBody): UsherError {
    const code = (Object.hasOwn(ERRORS, body.error.code) ? body.error.code : 'INTERNAL') as ErrorCode;
    return new UsherError(code, body.error.message, body.error.details);
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}
