// The streamer's settings, resolved once at start-up from its command line and environment.
import { randomBytes } from 'node:crypto';

export interface StreamerOptions {
  /** The signalling server's WebSocket URL (Usher's `/workers/signalling?token=…`). */
  signallingUrl: string;
  /** The id the streamer gives in `endpointId`. */
  endpointId: string;
  /** The session id the picture shows, when the launcher says it. */
  sessionId: string | null;
}

const URL_FLAGS = ['--signalling-url=', '-PixelStreamingSignallingURL='];

/**
 * `--signalling-url=<ws url>` (or UE's `-PixelStreamingSignallingURL=<ws url>`), else `USHER_SIGNALLING_URL`;
 * `USHER_WORKER_ID` for the endpoint id (else a random one); `USHER_SESSION_ID` for the label.
 */
export function resolveOptions(argv: readonly string[], env: NodeJS.ProcessEnv): Readonly<StreamerOptions> {
  let fromArgs: string | undefined;
  for (const arg of argv) {
    const flag = URL_FLAGS.find((f) => arg.startsWith(f));
    if (flag) fromArgs = arg.slice(flag.length);
    else throw new Error(`unknown argument ${arg}: the only one is --signalling-url=<ws url>`);
  }
  const signallingUrl = fromArgs || env.USHER_SIGNALLING_URL;
  if (!signallingUrl) {
    throw new Error(
      'no signalling URL: pass --signalling-url=ws://host:port/workers/signalling?token=… ' +
        '(or -PixelStreamingSignallingURL=…), or set USHER_SIGNALLING_URL',
    );
  }
  if (!/^wss?:\/\//.test(signallingUrl) || !URL.canParse(signallingUrl)) {
    throw new Error(`the signalling URL must be a ws:// or wss:// URL, got ${signallingUrl.slice(0, 40)}`);
  }
  return Object.freeze({
    signallingUrl,
    endpointId: env.USHER_WORKER_ID || `demo-streamer-${randomBytes(4).toString('hex')}`,
    sessionId: env.USHER_SESSION_ID || null,
  });
}
