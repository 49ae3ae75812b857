// SQLite specifics: a busy database file gets a checkpointer thread, and closing still leaves one complete
// file behind (the log copied back and removed); a new file, and its log, are readable by their owner only.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

test('a new database file and its log are readable and writable by their owner only: it holds the token secret', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'usher-mode-'));
  try {
    const path = join(dir, 'usher.db');
    const sqlite = new SqliteDb({ path });
    await sqlite.exec('CREATE TABLE t (v TEXT)');
    await sqlite.run('INSERT INTO t (v) VALUES (?)', ['x']);
    for (const file of [path, `${path}-wal`, `${path}-shm`])
      assert.equal((statSync(file).mode & 0o777).toString(8), '600', file);
    await sqlite.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
