// Preloaded into every test file's process by `npm test`: once the file's tests are done, a process that is
// still alive 10 s later (a failed test left a server, a socket or a child process behind) exits with the
// run's exit code, so that one such file cannot hold the whole run until CI's limit. The timer does not keep
// the process alive: a file that ends cleanly exits at once, as it would without this.
// (Node's own --test-force-exit exits at once, and with several files at a time it can lose test results
// that are still on their way to the runner: nodejs/node#64833.)
import { after } from 'node:test';

const GRACE_MS = 10_000;

after(() => {
  setTimeout(() => {
    process.stderr.write(
      `a test left work running: this file's process exits ${GRACE_MS / 1000} s after its tests\n`,
    );
    process.exit(process.exitCode ?? 1);
  }, GRACE_MS).unref();
});
