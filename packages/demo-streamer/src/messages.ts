// The messages a Pixel Streaming streamer receives from its signalling server (Epic's protocol 1.3.0, as Usher
// sends it; see docs/signalling.md), parsed from JSON into one discriminated union. What the streamer sends
// is typed by @usher/protocol's StreamerSignal.

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface IceCandidateInit {
  candidate: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
}

export type ServerSignal =
  | { type: 'config'; iceServers: IceServer[] }
  | { type: 'identify' }
  | { type: 'endpointIdConfirm'; committedId: string | null }
  /** Usher adds the viewer's session id (an extension stock streamers ignore) */
  | { type: 'playerConnected'; playerId: string; sessionId: string | null }
  | { type: 'playerDisconnected'; playerId: string }
  | { type: 'answer'; playerId: string; sdp: string }
  | { type: 'iceCandidate'; playerId: string; candidate: IceCandidateInit }
  | { type: 'ping'; time: number | null }
  | { type: 'error'; message: string }
  /** Known messages the demo has nothing to do with (pong, layerPreference, dataChannelRequest, …). */
  | { type: 'ignored'; original: string };

const IGNORED = new Set(['pong', 'layerPreference', 'dataChannelRequest', 'peerDataChannelsReady', 'stats']);

/** Parses one text frame; returns a problem (a string) when it is not a message the streamer understands. */
export function parseServerSignal(text: string): ServerSignal | string {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (!isRecord(m) || typeof m.type !== 'string') return 'not an object with a string "type"';
  const playerId =
    typeof m.playerId === 'string' || typeof m.playerId === 'number' ? String(m.playerId) : null;
  const needPlayer = `${m.type} without a playerId`;
  switch (m.type) {
    case 'config': {
      const options = isRecord(m.peerConnectionOptions) ? m.peerConnectionOptions : {};
      const servers = Array.isArray(options.iceServers) ? options.iceServers : [];
      return { type: 'config', iceServers: servers.filter(isIceServer) };
    }
    case 'identify':
      return { type: 'identify' };
    case 'endpointIdConfirm':
      return {
        type: 'endpointIdConfirm',
        committedId: typeof m.committedId === 'string' ? m.committedId : null,
      };
    case 'playerConnected':
      if (playerId === null) return needPlayer;
      return {
        type: 'playerConnected',
        playerId,
        sessionId: typeof m.sessionId === 'string' ? m.sessionId : null,
      };
    case 'playerDisconnected':
      if (playerId === null) return needPlayer;
      return { type: 'playerDisconnected', playerId };
    case 'answer':
      if (playerId === null) return needPlayer;
      if (typeof m.sdp !== 'string') return 'answer without an sdp';
      return { type: 'answer', playerId, sdp: m.sdp };
    case 'iceCandidate': {
      if (playerId === null) return needPlayer;
      const c = m.candidate;
      if (!isRecord(c) || typeof c.candidate !== 'string') return 'iceCandidate without a candidate';
      const candidate: IceCandidateInit = { candidate: c.candidate };
      if (typeof c.sdpMid === 'string') candidate.sdpMid = c.sdpMid;
      if (typeof c.sdpMLineIndex === 'number') candidate.sdpMLineIndex = c.sdpMLineIndex;
      return { type: 'iceCandidate', playerId, candidate };
    }
    case 'ping':
      return { type: 'ping', time: typeof m.time === 'number' ? m.time : null };
    case 'error':
      return { type: 'error', message: typeof m.message === 'string' ? m.message : text };
    default:
      return IGNORED.has(m.type) ? { type: 'ignored', original: m.type } : `unknown message type ${m.type}`;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIceServer(v: unknown): v is IceServer {
  if (!isRecord(v)) return false;
  const { urls } = v;
  return typeof urls === 'string' || (Array.isArray(urls) && urls.every((u) => typeof u === 'string'));
}
