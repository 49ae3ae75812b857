// Keeps a worker alive when the pipes of its stdout and stderr break (the server that started it died).

let guarded = false;

/**
 * The process driver reads a worker's output through pipes. When that server is killed, the pipes break and
 * Node would die of EPIPE on the next log line, although the worker could re-attach to the restarted server.
 * Ignores EPIPE on stdout and stderr, once per process; any other error on them still throws.
 */
export function surviveBrokenStdio(): void {
  if (guarded || typeof process === 'undefined' || !process.stdout) return;
  guarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
}
