// A worker thread that copies SQLite's write-ahead log back into the database file, on a connection of its
// own, so that the server's thread never stops for it. Left to the server's connection, a checkpoint runs
// inside whichever commit crosses the log's size limit and holds up every request for its writes and fsyncs
// (tens of milliseconds); a PASSIVE checkpoint here runs alongside the server's writes.
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

/** How often the log is copied back (real time). */
const INTERVAL_MS = 100;

const { path } = workerData as { path: string };
const db = new DatabaseSync(path);
db.exec('PRAGMA busy_timeout = 100');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

const timer = setInterval(() => {
  try {
    checkpoint.get();
  } catch {
    // busy (the server's own checkpoint is running): the next turn catches up
  }
}, INTERVAL_MS);

parentPort?.on('message', (m: unknown) => {
  if (m !== 'close') return;
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
