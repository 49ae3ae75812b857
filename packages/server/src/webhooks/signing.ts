// Standard Webhooks signatures (https://www.standardwebhooks.com): an HMAC-SHA256 of "id.timestamp.body",
// sent as `webhook-signature: v1,<base64>` beside `webhook-id` and `webhook-timestamp`.
import { createHmac } from 'node:crypto';

/** `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, timestamp in whole seconds since the epoch. */
export function sign(key: Buffer, id: string, timestampSec: number, body: string): string {
  const mac = createHmac('sha256', key)
    .update(`${id}.${timestampSec}.`)
    .update(body, 'utf8')
    .digest('base64');
  return `v1,${mac}`;
}

/** The headers of one signed POST. */
export function signedHeaders(
  key: Buffer,
  id: string,
  timestampSec: number,
  body: string,
): Record<string, string> {
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(timestampSec),
    'webhook-signature': sign(key, id, timestampSec, body),
  };
}
