// A levelled logger interface and the console-backed default.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Writes `usher-worker <level> <message> {fields}` lines; debug/info to stdout, warn/error to stderr. */
export function createConsoleLogger(
  minLevel: LogLevel = 'info',
  sink: Pick<Console, LogLevel> = console,
): Logger {
  const at =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (RANK[level] < RANK[minLevel]) return;
      const tail = fields && Object.keys(fields).length > 0 ? ` ${safeJson(fields)}` : '';
      sink[level](`usher-worker ${level} ${message}${tail}`);
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Shortens text for logs, marking the cut. */
export function truncate(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}
