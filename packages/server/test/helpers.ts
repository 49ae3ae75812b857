// Assertions and waits shared by the integration suites that check the API's answers from the outside.
import assert from 'node:assert/strict';
import { ERRORS, isErrorCode } from '@usher/protocol';
import type { ApiResult, TestSocket } from '@usher/testing';

export interface ErrorBody {
  error: { code: string; message: string; retryable?: boolean; details?: Record<string, unknown> };
}

/** An error response: the status, and a body that is exactly {error:{code,message,...}} with a known code. */
export function assertError(r: ApiResult<unknown>, status: number, code: string): ErrorBody['error'] {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status} ${JSON.stringify(r.body)}`);
  const body = r.body as ErrorBody;
  assert.deepEqual(Object.keys(body), ['error'], `error body has only "error": ${JSON.stringify(body)}`);
  const { error } = body;
  assert.equal(error.code, code, error.message);
  assert.ok(isErrorCode(error.code), `${error.code} is one of ERRORS`);
  assert.equal(ERRORS[error.code as keyof typeof ERRORS].status, status, "the status is the code's status");
  assert.equal(typeof error.message, 'string');
  assert.ok(error.message.length > 0, 'the message is not empty');
  for (const key of Object.keys(error))
    assert.ok(['code', 'message', 'retryable', 'details'].includes(key), `unexpected field error.${key}`);
  if (error.retryable !== undefined)
    assert.equal(error.retryable, ERRORS[error.code as keyof typeof ERRORS].retryable);
  return error;
}

/** The next non-event frame (pong, error) received after the first `from` ones. */
export function nextFrame(
  s: TestSocket,
  pred: (f: Record<string, unknown>) => boolean,
  from = 0,
): Promise<Record<string, unknown>> {
  const find = () => s.other.slice(from).find(pred);
  const seen = find();
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const on = () => {
      const f = find();
      if (f) {
        s.ws.off('message', on);
        resolve(f);
      }
    };
    s.ws.on('message', on);
  });
}

/**
 * Polls a condition that another server (or process) makes true through the database or the network, where no
 * event of this process's can be waited on; fails when `what` has not held after about `withinMs` of checks.
 */
export async function waitUntil(
  check: () => Promise<boolean>,
  what = 'the condition',
  withinMs = 5_000,
): Promise<void> {
  for (let i = 0; i < withinMs / 10; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${what} never held`);
}
