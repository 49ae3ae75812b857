// The test reporter of `npm test`: Node's spec reporter, with the run's summary (ℹ tests/pass/fail …) moved
// after the list of failing tests, so the summary is always the last thing printed.
import { Readable } from 'node:stream';
import type { TestEvent } from 'node:test/reporters';
import { spec } from 'node:test/reporters';

const SUMMARY = /^(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) /;

/** The run's closing counts: top-level diagnostics that belong to no file. */
function isRunSummary(event: TestEvent): boolean {
  if (event.type !== 'test:diagnostic') return false;
  const data = event.data as { nesting: number; message: string; file?: string };
  return data.nesting === 0 && data.file === undefined && SUMMARY.test(data.message);
}

export default async function* usherReporter(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const held: TestEvent[] = [];
  async function* withoutSummary(): AsyncGenerator<TestEvent> {
    for await (const event of source) {
      if (isRunSummary(event)) held.push(event);
      else yield event;
    }
  }
  for await (const chunk of Readable.from(withoutSummary()).pipe(spec())) yield String(chunk);
  for await (const chunk of Readable.from(held).pipe(spec())) yield String(chunk);
}
