// A logger that completes the ids of its lines: one that names a session or a worker but not its project gets
// the project (and region) from what this server has in memory. Nothing is read for it.
import type { Logger } from '../util/logger.ts';

/** The pool of a session or worker, when it is in memory. */
export interface PoolLookup {
  session(sessionId: string): { projectId: string; region: string } | undefined;
  worker(workerId: string): { projectId: string; region: string } | undefined;
}

export function withProjectIds(log: Logger, lookup: PoolLookup): Logger {
  const complete = (obj: object): object => {
    const fields = obj as { sessionId?: unknown; workerId?: unknown; projectId?: unknown };
    if (fields.projectId !== undefined) return obj;
    const pool =
      (typeof fields.sessionId === 'string' ? lookup.session(fields.sessionId) : undefined) ??
      (typeof fields.workerId === 'string' ? lookup.worker(fields.workerId) : undefined);
    return pool ? { ...obj, projectId: pool.projectId, region: pool.region } : obj;
  };
  const level =
    (name: 'debug' | 'info' | 'warn' | 'error') =>
    (obj: object, msg?: string): void => {
      if (msg === undefined) log[name](complete(obj));
      else log[name](complete(obj), msg);
    };
  return {
    debug: level('debug'),
    info: level('info'),
    warn: level('warn'),
    error: level('error'),
    child: (bindings) => withProjectIds(log.child(bindings), lookup),
  };
}
