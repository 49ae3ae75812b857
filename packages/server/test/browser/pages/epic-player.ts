// Browser code of the Epic frontend test page (bundled by epic-page.ts with esbuild): Epic's stock
// Pixel Streaming frontend library, pointed at an Usher session socket, with no Usher code at all. It records
// the library's events and every signalling message on its socket in window.epicTest.
import { Config, PixelStreaming } from '@epicgames-ps/lib-pixelstreamingfrontend-ue5.5';

interface Seen {
  /** the library's events in order: { name, data } */
  events: { name: string; data: unknown }[];
  /** the signalling messages on the socket: `in <type>` from Usher, `out <type>` from the library */
  signals: string[];
  /** Creates the library's player on #player, connected to `ss` (the session socket URL with its token). */
  connect(ss: string): void;
}

const EVENTS = [
  'webRtcConnecting',
  'webRtcConnected',
  'webRtcFailed',
  'webRtcDisconnected',
  'dataChannelOpen',
  'dataChannelClose',
  'videoInitialized',
  'streamerListMessage',
  'subscribeFailed',
  'playStream',
  'playStreamRejected',
  'playStreamError',
] as const;

/** Records the socket's traffic by wrapping the WebSocket the library creates. */
class RecordingWebSocket extends WebSocket {
  constructor(url: string | URL, protocols?: string | string[]) {
    super(url, protocols);
    this.addEventListener('message', (e) => seen.signals.push(`in ${typeOf(e.data)}`));
  }

  override send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    seen.signals.push(`out ${typeOf(data)}`);
    super.send(data);
  }
}

function typeOf(data: unknown): string {
  try {
    return String((JSON.parse(String(data)) as { type?: unknown }).type);
  } catch {
    return '(not JSON)';
  }
}

/** A JSON-safe summary of an event's data. */
function summary(name: string, data: Record<string, unknown> | undefined): unknown {
  if (name === 'streamerListMessage') {
    const list = data?.messageStreamerList as { ids?: unknown } | undefined;
    return { ids: list?.ids, autoSelectedStreamerId: data?.autoSelectedStreamerId };
  }
  if (name === 'subscribeFailed' || name === 'webRtcDisconnected') return data;
  return null;
}

const seen: Seen = {
  events: [],
  signals: [],
  connect(ss) {
    window.WebSocket = RecordingWebSocket;
    const config = new Config({
      useUrlParams: false,
      initialSettings: {
        ss,
        AutoConnect: true,
        AutoPlayVideo: true,
        StartVideoMuted: true,
        // Usher enforces AFK and reconnects; the library's own would only blur what the test sees
        TimeoutIfIdle: false,
        MaxReconnectAttempts: 0,
        MatchViewportRes: false,
      },
    });
    const player = new PixelStreaming(config, { videoElementParent: document.getElementById('player')! });
    for (const name of EVENTS)
      player.addEventListener(name, (e: Event & { data?: Record<string, unknown> }) =>
        seen.events.push({ name, data: summary(name, e.data) }),
      );
  },
};

(window as unknown as { epicTest: Seen }).epicTest = seen;
