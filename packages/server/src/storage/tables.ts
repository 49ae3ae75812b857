// The sessions and workers tables as the repository writes them: each record field's column and SQL type,
// how a field's value is stored, and the INSERT and UPDATE statements for one row or many.
import type { SqlParam, SqlValue } from './db.ts';
import type { SessionRecord, WorkerRecord } from './records.ts';

export type SqlType = 'TEXT' | 'BIGINT' | 'INTEGER';

/** A record field's column and its SQL type (many-row updates cast their values to it). */
export interface Column {
  name: string;
  type: SqlType;
}

/** One statement and its values, `?` placeholders in both dialects. */
export interface Statement {
  sql: string;
  params: SqlParam[];
}

const text = (name: string): Column => ({ name, type: 'TEXT' });
const bigint = (name: string): Column => ({ name, type: 'BIGINT' });
const integer = (name: string): Column => ({ name, type: 'INTEGER' });

export const SESSION_COLUMNS: Record<keyof SessionRecord, Column> = {
  id: text('id'),
  projectId: text('project_id'),
  region: text('region'),
  agentType: text('agent_type'),
  config: text('config'),
  state: text('state'),
  workerId: text('worker_id'),
  queuedAt: bigint('queued_at'),
  restarts: integer('restarts'),
  savedState: text('saved_state'),
  viewerAttached: integer('viewer_attached'),
  viewerServer: text('viewer_server'),
  workerStarted: integer('worker_started'),
  pendingEnd: text('pending_end'),
  createdAt: bigint('created_at'),
  updatedAt: bigint('updated_at'),
  activeAt: bigint('active_at'),
  endedAt: bigint('ended_at'),
  endCode: integer('end_code'),
  endReason: text('end_reason'),
  outcome: text('outcome'),
};

export const WORKER_COLUMNS: Record<keyof WorkerRecord, Column> = {
  id: text('id'),
  projectId: text('project_id'),
  region: text('region'),
  driver: text('driver'),
  state: text('state'),
  sessionId: text('session_id'),
  handle: text('handle'),
  serverId: text('server_id'),
  attachedTo: text('attached_to'),
  draining: integer('draining'),
  createdAt: bigint('created_at'),
  readyAt: bigint('ready_at'),
  updatedAt: bigint('updated_at'),
  stoppedAt: bigint('stopped_at'),
};

export type Columns = Record<string, Column>;

/**
 * The most values one statement carries: below SQLite's limit (32,766) and PostgreSQL's (65,535), so rows
 * beyond it go into a further statement.
 */
export const MAX_PARAMS = 30_000;

const JSON_FIELDS = new Set(['config', 'savedState', 'pendingEnd']);

export function toSql(field: string, value: unknown): SqlValue {
  if (JSON_FIELDS.has(field)) return value === null || value === undefined ? null : JSON.stringify(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  return (value ?? null) as SqlValue;
}

/** The fields of a patch that are columns of the table (the id excepted), in a stable order. */
export function patchFields(columns: Columns, patch: object): string[] {
  return Object.keys(patch)
    .filter((k) => k in columns && k !== 'id')
    .sort();
}

/** INSERT of whole records, as few statements as the parameter limit allows. */
export function insertRows(table: string, columns: Columns, records: readonly object[]): Statement[] {
  const fields = Object.keys(columns);
  return chunked(records, fields.length, (chunk) => ({
    sql: memo(`insert ${table} ${chunk.length}`, () => {
      const row = `(${fields.map(() => '?').join(', ')})`;
      const names = fields.map((f) => columns[f]!.name).join(', ');
      return `INSERT INTO ${table} (${names}) VALUES ${chunk.map(() => row).join(', ')}`;
    }),
    params: chunk.flatMap((r) => fields.map((f) => toSql(f, (r as Record<string, unknown>)[f]))),
  }));
}

/** UPDATE of one row by id. */
export function updateRow(table: string, columns: Columns, id: string, patch: object): Statement {
  const fields = patchFields(columns, patch);
  return {
    sql: `UPDATE ${table} SET ${fields.map((f) => `${columns[f]!.name} = ?`).join(', ')} WHERE id = ?`,
    params: [...fields.map((f) => toSql(f, (patch as Record<string, unknown>)[f])), id],
  };
}

/**
 * UPDATE of many rows by id that change the same fields, each to its own values: the table joined to a
 * VALUES list (`UPDATE … FROM`, in both SQLite and PostgreSQL). Values are cast to their column's type, since
 * PostgreSQL would otherwise take untyped parameters in a VALUES list for text.
 */
export function updateRows(
  table: string,
  columns: Columns,
  fields: readonly string[],
  rows: readonly (readonly [id: string, patch: object])[],
): Statement[] {
  if (fields.length === 0) return [];
  return chunked(rows, fields.length + 1, (chunk) => ({
    sql: memo(`update ${table} ${fields.join(',')} ${chunk.length}`, () => {
      // VALUES columns are named column1, column2, … in both dialects; column1 is the id
      const set = fields.map((f, i) => `${columns[f]!.name} = v.column${i + 2}`).join(', ');
      const row = `(CAST(? AS TEXT), ${fields.map((f) => `CAST(? AS ${columns[f]!.type})`).join(', ')})`;
      return `UPDATE ${table} SET ${set} FROM (VALUES ${chunk.map(() => row).join(', ')}) AS v WHERE ${table}.id = v.column1`;
    }),
    params: chunk.flatMap(([id, patch]) => [
      id,
      ...fields.map((f) => toSql(f, (patch as Record<string, unknown>)[f])),
    ]),
  }));
}

/**
 * The text of a statement built from its shape, built once: the same string then keys the prepared statement
 * caches without being hashed again.
 */
export function memo(shape: string, build: () => string): string {
  let sql = SHAPES.get(shape);
  if (sql === undefined) {
    if (SHAPES.size >= MAX_SHAPES) SHAPES.delete(SHAPES.keys().next().value!);
    sql = build();
    SHAPES.set(shape, sql);
  }
  return sql;
}

const SHAPES = new Map<string, string>();
const MAX_SHAPES = 1000;

/** Splits rows into statements of at most MAX_PARAMS values. */
export function chunked<T>(
  rows: readonly T[],
  perRow: number,
  statement: (chunk: readonly T[]) => Statement,
): Statement[] {
  const size = Math.max(1, Math.floor(MAX_PARAMS / perRow));
  const out: Statement[] = [];
  for (let i = 0; i < rows.length; i += size) out.push(statement(rows.slice(i, i + size)));
  return out;
}
