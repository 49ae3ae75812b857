// SQLite specifics: a busy database file gets a checkpointer thread, and closing still leaves one complete
// file behind (the log copied back and removed).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { createTestDatabase } from '@usher/testing';
import { SqliteDb } from './sqlite.ts';

test('a database busy enough for a checkpointer thread closes cleanly, its log copied back and removed', async () => {
  const db = await createTestDatabase('sqlite');
  const path = db.storage.type === 'sqlite' ? db.storage.path : '';
  try {
    const sqlite = new SqliteDb({ path });
    await sqlite.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
    // more commits than it takes to start the checkpointer
    for (let i = 0; i < 1_500; i++)
      await sqlite.tx((q) => q.run('INSERT INTO t (v) VALUES (?)', [`row ${i}`]));
    assert.ok(existsSync(`${path}-wal`), 'the log is in use while the database is open');
    await sqlite.close();
    assert.equal(existsSync(`${path}-wal`), false, 'the last connection to close removed the log');

    const again = new SqliteDb({ path });
    const row = await again.get<object>('SELECT COUNT(*) AS n, MAX(v) AS last FROM t');
    assert.deepEqual({ ...row }, { n: 1_500, last: 'row 999' });
    await again.close();
  } finally {
    await db.drop();
  }
});
