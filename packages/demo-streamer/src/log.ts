// The streamer's log: one line per event on stdout (errors on stderr), each prefixed with the time.

export interface Log {
  info(message: string): void;
  error(message: string): void;
}

export const consoleLog: Log = {
  info: (message) => console.log(`${new Date().toISOString()} demo-streamer: ${message}`),
  error: (message) => console.error(`${new Date().toISOString()} demo-streamer: error: ${message}`),
};

/** `text` cut to `max` characters, for logging what a peer sent. */
export function truncate(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}
