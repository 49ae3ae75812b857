// The statements that write a transaction's held rows. On SQLite, one many-row statement per table and kind
// of change. On PostgreSQL, one statement in all (its parts joined in a WITH), each part reading its rows from
// arrays with unnest: a single round trip, whose text, and so its prepared plan, does not depend on how many
// rows there are.
import type { Dialect, SqlParam, SqlValue } from './db.ts';
import type { FieldGroup, HeldRows } from './held-writes.ts';
import {
  type Columns,
  chunked,
  insertRows,
  memo,
  SESSION_COLUMNS,
  type SqlType,
  type Statement,
  toSql,
  updateRows,
  WORKER_COLUMNS,
} from './tables.ts';

const TRANSITION_COLUMNS = 'session_id, from_state, to_state, at, cause';
const TRANSITION_TYPES: SqlType[] = ['TEXT', 'TEXT', 'TEXT', 'BIGINT', 'TEXT'];

export function heldStatements(held: HeldRows, dialect: Dialect): Statement[] {
  return dialect === 'postgres' ? postgres(held) : sqlite(held);
}

function sqlite(held: HeldRows): Statement[] {
  const out: Statement[] = [];
  if (held.newSessions.length > 0) out.push(...insertRows('sessions', SESSION_COLUMNS, held.newSessions));
  for (const g of held.sessionUpdates) out.push(...updateRows('sessions', SESSION_COLUMNS, g.fields, g.rows));
  for (const g of held.workerUpdates) out.push(...updateRows('workers', WORKER_COLUMNS, g.fields, g.rows));
  out.push(
    ...chunked(held.transitions, 5, (rows) => ({
      sql: memo(`transitions ${rows.length}`, () => {
        const values = rows.map(() => '(?, ?, ?, ?, ?)').join(', ');
        return `INSERT INTO transitions (${TRANSITION_COLUMNS}) VALUES ${values}`;
      }),
      params: rows.flat(),
    })),
  );
  out.push(
    ...chunked(held.timerDeletes, 2, (rows) => ({
      sql: memo(`timer deletes ${rows.length}`, () => {
        const pairs = rows.map(() => '(?, ?)').join(', ');
        return `DELETE FROM timers WHERE (session_id, kind) IN (VALUES ${pairs})`;
      }),
      params: rows.flat(),
    })),
  );
  // at most every timer kind kept, plus the session, per cleared session
  out.push(
    ...chunked(held.timerClears, 21, (rows) => {
      const kept = rows.flatMap((c) => c.kept.map((k) => [c.sessionId, k]));
      const ids = rows.map(() => '?').join(', ');
      const pairs = kept.map(() => '(?, ?)').join(', ');
      return {
        sql: `DELETE FROM timers WHERE session_id IN (${ids})${kept.length ? ` AND (session_id, kind) NOT IN (VALUES ${pairs})` : ''}`,
        params: [...rows.map((c) => c.sessionId), ...kept.flat()],
      };
    }),
  );
  out.push(
    ...chunked(held.timerUpserts, 3, (rows) => ({
      sql: memo(`timers ${rows.length}`, () => {
        const values = rows.map(() => '(?, ?, ?)').join(', ');
        return `INSERT INTO timers (session_id, kind, due_at) VALUES ${values} ON CONFLICT (session_id, kind) DO UPDATE SET due_at = excluded.due_at`;
      }),
      params: rows.flat(),
    })),
  );
  return out;
}

function postgres(held: HeldRows): Statement[] {
  const parts: Statement[] = [];
  if (held.newSessions.length > 0) {
    const fields = Object.keys(SESSION_COLUMNS) as (keyof typeof SESSION_COLUMNS)[];
    const from = unnest(
      fields.map((f) => SESSION_COLUMNS[f].type),
      held.newSessions.map((s) => fields.map((f) => toSql(f, s[f]))),
    );
    const names = fields.map((f) => SESSION_COLUMNS[f].name).join(', ');
    parts.push({ sql: `INSERT INTO sessions (${names}) SELECT * FROM ${from.sql}`, params: from.params });
  }
  for (const g of held.sessionUpdates) parts.push(update('sessions', SESSION_COLUMNS, g));
  for (const g of held.workerUpdates) parts.push(update('workers', WORKER_COLUMNS, g));
  if (held.transitions.length > 0) {
    // in the order recorded, so that their ids (and the timeline) follow it
    const from = unnest(TRANSITION_TYPES, held.transitions);
    parts.push({
      sql: `INSERT INTO transitions (${TRANSITION_COLUMNS}) SELECT ${TRANSITION_COLUMNS} FROM ${from.sql} WITH ORDINALITY AS t(${TRANSITION_COLUMNS}, n) ORDER BY n`,
      params: from.params,
    });
  }
  if (held.timerDeletes.length > 0) {
    const from = unnest(['TEXT', 'TEXT'], held.timerDeletes);
    parts.push({
      sql: `DELETE FROM timers USING ${from.sql} AS d(session_id, kind) WHERE timers.session_id = d.session_id AND timers.kind = d.kind AND timers.session_id = ANY(CAST(? AS TEXT[]))`,
      params: [...from.params, from.params[0]!],
    });
  }
  if (held.timerClears.length > 0) {
    const kept = unnest(
      ['TEXT', 'TEXT'],
      held.timerClears.flatMap((c) => c.kept.map((k) => [c.sessionId, k])),
    );
    parts.push({
      sql: `DELETE FROM timers WHERE session_id = ANY(CAST(? AS TEXT[])) AND NOT EXISTS (SELECT 1 FROM ${kept.sql} AS k(session_id, kind) WHERE k.session_id = timers.session_id AND k.kind = timers.kind)`,
      params: [held.timerClears.map((c) => c.sessionId), ...kept.params],
    });
  }
  if (held.timerUpserts.length > 0) {
    const from = unnest(['TEXT', 'TEXT', 'BIGINT'], held.timerUpserts);
    parts.push({
      sql: `INSERT INTO timers (session_id, kind, due_at) SELECT * FROM ${from.sql} ON CONFLICT (session_id, kind) DO UPDATE SET due_at = excluded.due_at`,
      params: from.params,
    });
  }
  if (parts.length <= 1) return parts;
  // the parts touch different rows, so they can run as one statement
  const last = parts.at(-1)!;
  const ctes = parts.slice(0, -1).map((p, i) => `s${i} AS (${p.sql})`);
  return [{ sql: `WITH ${ctes.join(', ')} ${last.sql}`, params: parts.flatMap((p) => p.params) }];
}

/**
 * UPDATE of a group of rows, their new values joined by id from arrays. The ids are also given as
 * `id = ANY(…)`, which the planner reads through the primary key whatever it believes of the table's size
 * (a join on unnest alone is planned as a scan of the whole table while the table is young).
 */
function update(table: string, columns: Columns, g: FieldGroup): Statement {
  const names = g.fields.map((f) => columns[f]!.name);
  const from = unnest(
    ['TEXT', ...g.fields.map((f) => columns[f]!.type)],
    g.rows.map(([id, patch]) => [
      id,
      ...g.fields.map((f) => toSql(f, (patch as Record<string, unknown>)[f])),
    ]),
  );
  return {
    sql: `UPDATE ${table} SET ${names.map((n) => `${n} = u.${n}`).join(', ')} FROM ${from.sql} AS u(id, ${names.join(', ')}) WHERE ${table}.id = u.id AND ${table}.id = ANY(CAST(? AS TEXT[]))`,
    params: [...from.params, from.params[0]!],
  };
}

/** `unnest(CAST(? AS T[]), …)` over rows of values, and its parameters: one array per column. */
function unnest(types: readonly SqlType[], rows: readonly (readonly SqlValue[])[]): Statement {
  return {
    sql: `unnest(${types.map((t) => `CAST(? AS ${t}[])`).join(', ')})`,
    params: types.map((_, i): SqlParam => rows.map((r) => r[i] ?? null)),
  };
}
