// Turns what the LiveKit SDK throws (transport failures, Twirp errors) into UsherErrors that say what to check.
import { UsherError } from '@usher/protocol';
import { ServerError } from 'livekit-server-sdk';

/**
 * `action` completes "LiveKit could not …", e.g. `create room "s_1"`; `apiUrl` is the http(s) URL the SDK
 * called.
 */
export function fromLiveKitError(err: unknown, action: string, apiUrl: string): UsherError {
  if (err instanceof UsherError) return err;
  if (err instanceof ServerError) {
    // older LiveKit servers echo the refused token in the message: never pass a token on
    const message = err.message.replace(/eyJ[\w-]*\.[\w-]*\.[\w-]*/g, '<token>');
    const said = message ? ` (LiveKit said: ${message})` : '';
    if (err.status === 401 && err.code === 'unauthenticated')
      // Twirp's answer when the token verified but lacks a grant: the SDK signs the grants itself, so the key
      // is accepted but not for this call
      return new UsherError(
        'INTERNAL',
        `LiveKit did not allow this API key to ${action}${said}: check that livekit.apiKey is an API key of that server with admin rights`,
      );
    if (err.status === 401 || err.status === 403)
      return new UsherError(
        'INTERNAL',
        `LiveKit refused the API key: check livekit.apiKey/apiSecret (while trying to ${action}${message ? `; LiveKit said: ${message}` : ''})`,
      );
    if (err.status === 404 && err.code === 'not_found')
      return new UsherError('NOT_FOUND', `LiveKit could not ${action}: ${message}`);
    if (err.status === 404)
      return new UsherError(
        'INTERNAL',
        `LiveKit at ${apiUrl} has no RoomService API (HTTP 404): check that livekit.url points at a LiveKit server`,
      );
    if (err.status >= 500)
      return new UsherError('UNAVAILABLE', `LiveKit failed to ${action} (HTTP ${err.status})${said}`);
    return new UsherError('INTERNAL', `LiveKit refused to ${action} (HTTP ${err.status})${said}`);
  }
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError')
    return new UsherError(
      'UNAVAILABLE',
      `LiveKit at ${apiUrl} did not answer in time while trying to ${action}: check livekit.url and the LiveKit server`,
    );
  if (e?.name === 'TypeError' && e.cause) {
    const why = e.cause.code ?? e.cause.message ?? 'network error';
    return new UsherError(
      'UNAVAILABLE',
      `LiveKit at ${apiUrl} is unreachable (${why}) while trying to ${action}: check livekit.url and that the LiveKit server is running`,
    );
  }
  return new UsherError('INTERNAL', `LiveKit could not ${action}: ${e?.message ?? String(err)}`);
}

/** The http(s) URL the RoomService API lives at, from the ws(s) URL of the settings (the SDK does the same). */
export function apiUrlOf(url: string): string {
  return url.replace(/^ws/, 'http');
}
