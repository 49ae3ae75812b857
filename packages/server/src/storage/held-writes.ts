// Writes a transaction holds back and sends together: new sessions, changes to sessions and workers,
// transitions and timers. The repository writes them before anything reads (so every read sees every write
// made before it) and before the commit. Many admissions in one transaction then cost a few multi-row
// statements (one on PostgreSQL) rather than several statements each.
import type { SqlValue } from './db.ts';
import type { SessionRecord, TimerKind, WorkerRecord } from './records.ts';
import { type Columns, patchFields, SESSION_COLUMNS, WORKER_COLUMNS } from './tables.ts';

/** Rows of one table that change the same fields, each to its own values. */
export interface FieldGroup {
  fields: string[];
  rows: [id: string, patch: object][];
}

/** What a transaction held, ready to be written (no two parts touch the same row). */
export interface HeldRows {
  newSessions: SessionRecord[];
  sessionUpdates: FieldGroup[];
  workerUpdates: FieldGroup[];
  /** session_id, from_state, to_state, at, cause: in the order they were recorded */
  transitions: SqlValue[][];
  /** timers set: session_id, kind, due_at */
  timerUpserts: [string, TimerKind, number][];
  /** timers cleared one by one: session_id, kind */
  timerDeletes: [string, TimerKind][];
  /** sessions whose every timer goes, except the kinds set again (those are upserted) */
  timerClears: { sessionId: string; kept: TimerKind[] }[];
}

export class HeldWrites {
  /** sessions inserted in this transaction, with every change made to them since */
  readonly #newSessions = new Map<string, SessionRecord>();
  /** changes to sessions that were already stored, merged per session */
  readonly #sessionPatches = new Map<string, Partial<SessionRecord>>();
  /** changes to workers, merged per worker */
  readonly #workerPatches = new Map<string, Partial<WorkerRecord>>();
  #transitions: SqlValue[][] = [];
  /** per session, each timer kind's final due time, or null where it was cleared */
  readonly #timers = new Map<string, Map<TimerKind, number | null>>();
  /** sessions whose timers were all cleared (those set again afterwards excepted) */
  readonly #timersCleared = new Set<string>();

  get empty(): boolean {
    return (
      this.#newSessions.size === 0 &&
      this.#sessionPatches.size === 0 &&
      this.#workerPatches.size === 0 &&
      this.#transitions.length === 0 &&
      this.#timers.size === 0 &&
      this.#timersCleared.size === 0
    );
  }

  insertSession(s: SessionRecord): void {
    this.#newSessions.set(s.id, { ...s });
  }

  /** A session inserted in this transaction and not written yet, as it stands now. */
  newSession(id: string): SessionRecord | undefined {
    const s = this.#newSessions.get(id);
    return s && { ...s };
  }

  updateSession(id: string, patch: Partial<SessionRecord>): void {
    const created = this.#newSessions.get(id);
    if (created) Object.assign(created, pick(SESSION_COLUMNS, patch));
    else this.#sessionPatches.set(id, { ...this.#sessionPatches.get(id), ...pick(SESSION_COLUMNS, patch) });
  }

  updateWorker(id: string, patch: Partial<WorkerRecord>): void {
    this.#workerPatches.set(id, { ...this.#workerPatches.get(id), ...pick(WORKER_COLUMNS, patch) });
  }

  addTransition(row: SqlValue[]): void {
    this.#transitions.push(row);
  }

  setTimer(sessionId: string, kind: TimerKind, dueAt: number): void {
    this.#timersOf(sessionId).set(kind, dueAt);
  }

  /** Clears some timers of a session, or all of them without `kinds`. */
  clearTimers(sessionId: string, kinds?: readonly TimerKind[]): void {
    if (!kinds) {
      this.#timers.delete(sessionId);
      this.#timersCleared.add(sessionId);
      return;
    }
    const timers = this.#timersOf(sessionId);
    for (const k of kinds) timers.set(k, null);
  }

  #timersOf(sessionId: string): Map<TimerKind, number | null> {
    let t = this.#timers.get(sessionId);
    if (!t) {
      t = new Map();
      this.#timers.set(sessionId, t);
    }
    return t;
  }

  /** Everything held, and forgets it. */
  take(): HeldRows {
    const held: HeldRows = {
      newSessions: [...this.#newSessions.values()],
      sessionUpdates: groups(SESSION_COLUMNS, this.#sessionPatches),
      workerUpdates: groups(WORKER_COLUMNS, this.#workerPatches),
      transitions: this.#transitions,
      timerUpserts: [],
      timerDeletes: [],
      timerClears: [],
    };
    // a session created in this transaction has no stored timers, so none of its timers needs deleting
    for (const [sessionId, timers] of this.#timers) {
      const stored = !this.#newSessions.has(sessionId);
      for (const [kind, due] of timers) {
        if (due !== null) held.timerUpserts.push([sessionId, kind, due]);
        else if (stored && !this.#timersCleared.has(sessionId)) held.timerDeletes.push([sessionId, kind]);
      }
    }
    for (const sessionId of this.#timersCleared) {
      if (this.#newSessions.has(sessionId)) continue;
      const timers = [...(this.#timers.get(sessionId) ?? [])];
      held.timerClears.push({ sessionId, kept: timers.filter(([, due]) => due !== null).map(([k]) => k) });
    }
    this.#newSessions.clear();
    this.#sessionPatches.clear();
    this.#workerPatches.clear();
    this.#transitions = [];
    this.#timers.clear();
    this.#timersCleared.clear();
    return held;
  }
}

/** The patch's fields that are columns of the table, the id excepted (it is never written). */
function pick<T extends object>(columns: Columns, patch: T): Partial<T> {
  const out: Partial<T> = {};
  for (const k of Object.keys(patch) as (keyof T & string)[])
    if (k in columns && k !== 'id') out[k] = patch[k];
  return out;
}

/** Patches grouped by the fields they change. */
function groups(columns: Columns, patches: Map<string, object>): FieldGroup[] {
  const byFields = new Map<string, FieldGroup>();
  for (const [id, patch] of patches) {
    const fields = patchFields(columns, patch);
    if (fields.length === 0) continue;
    const key = fields.join(',');
    let g = byFields.get(key);
    if (!g) {
      g = { fields, rows: [] };
      byFields.set(key, g);
    }
    g.rows.push([id, patch]);
  }
  return [...byFields.values()];
}
