// The server-level LiveKit settings (`livekit:` in the config file), validated once with messages that name
// the key to fix, then frozen.

export interface LiveKitSettings {
  /** where clients, workers and the recorder connect: ws:// or wss:// (the RoomService API is the same host) */
  url: string;
  apiKey: string;
  apiSecret: string;
  /** how long LiveKit keeps a room that nobody has joined yet; LiveKit's default (300 s) when absent */
  roomEmptyTimeoutS?: number;
}

export class LiveKitConfigError extends Error {
  override name = 'LiveKitConfigError';
}

const KEYS = ['url', 'apiKey', 'apiSecret', 'roomEmptyTimeoutS'];

/**
 * Checks raw settings (parsed YAML, flags) and returns them frozen. `key` is the path to name in messages,
 * `livekit` by default.
 */
export function parseLiveKitSettings(input: unknown, key = 'livekit'): Readonly<LiveKitSettings> {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new LiveKitConfigError(`${key} must be an object with url, apiKey and apiSecret`);
  const raw = input as Record<string, unknown>;
  for (const k of Object.keys(raw)) {
    if (!KEYS.includes(k))
      throw new LiveKitConfigError(`${key}.${k} is not a LiveKit setting (known: ${KEYS.join(', ')})`);
  }

  const url = requiredString(raw, 'url', key).trim();
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new LiveKitConfigError(`${key}.url is not a URL: "${url}" (e.g. wss://livekit.example.com)`);
  }
  if (protocol !== 'ws:' && protocol !== 'wss:')
    throw new LiveKitConfigError(`${key}.url must be ws:// or wss:// (got "${url}")`);

  const settings: LiveKitSettings = {
    url: url.replace(/\/+$/, ''),
    apiKey: requiredString(raw, 'apiKey', key),
    apiSecret: requiredString(raw, 'apiSecret', key),
  };
  const timeout = raw.roomEmptyTimeoutS;
  if (timeout !== undefined) {
    if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1)
      throw new LiveKitConfigError(
        `${key}.roomEmptyTimeoutS must be a whole number of seconds, at least 1 (got ${JSON.stringify(timeout)})`,
      );
    settings.roomEmptyTimeoutS = timeout;
  }
  return Object.freeze(settings);
}

function requiredString(raw: Record<string, unknown>, name: string, key: string): string {
  const value = raw[name];
  if (value === undefined || value === null) throw new LiveKitConfigError(`${key}.${name} is required`);
  if (typeof value !== 'string')
    throw new LiveKitConfigError(`${key}.${name} must be a string (got ${typeof value})`);
  if (value.trim() === '') throw new LiveKitConfigError(`${key}.${name} is empty`);
  return value;
}
