// The server's size limits on a worker's frames, checked before sending so that nothing over them is lost silently.
import { MAX_CLIENT_FRAME_BYTES } from '@usher/protocol';

export { MAX_WORKER_FRAME_BYTES } from '@usher/protocol';

/** The largest `message` frame the server relays, in bytes: a participant's limit; a larger one is dropped. */
export const MAX_MESSAGE_FRAME_BYTES = MAX_CLIENT_FRAME_BYTES;

/** The size of a text frame on the wire (UTF-8), as the server measures it. */
export function frameBytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}
