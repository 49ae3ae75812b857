// Fresh databases for tests: a SQLite file in a temp folder, or a schema of its own in PostgreSQL.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StorageOptions } from '@usher/server';
import pg from 'pg';

export type DatabaseKind = 'sqlite' | 'postgres';

export interface TestDatabase {
  kind: DatabaseKind;
  storage: StorageOptions;
  /** removes the database (file or schema) */
  drop(): Promise<void>;
}

/** PostgreSQL for tests: USHER_TEST_DATABASE_URL, default the machine's `test` database. */
export const TEST_POSTGRES_URL =
  process.env.USHER_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** The kinds the suite runs on: both, unless USHER_TEST_DATABASES says otherwise (e.g. "sqlite"). */
export function databaseKinds(): DatabaseKind[] {
  const only = process.env.USHER_TEST_DATABASES;
  if (!only) return ['sqlite', 'postgres'];
  return only.split(',').map((s) => s.trim()) as DatabaseKind[];
}

export async function createTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  if (kind === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'usher-test-'));
    return {
      kind,
      storage: { type: 'sqlite', path: join(dir, 'usher.db') },
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const schema = `t_${randomBytes(6).toString('hex')}`;
  return {
    kind,
    storage: { type: 'postgres', url: TEST_POSTGRES_URL, schema, poolSize: 4 },
    drop: async () => {
      const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
