// Keeps docs/*.md in step with the protocol: the generated tables match the code, and every state, code,
// reason, error, frame and setting appears in its document.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import {
  begin,
  DOCS,
  end,
  fill,
  ROOT,
  renderDocs,
  SEED_TIMEOUTS,
  TIMEOUT_DOCS,
} from '../../../scripts/docs.ts';
import { CLOSE_CODES, END_REASONS, SocketCloseCode } from './close-codes.ts';
import { ERRORS } from './errors.ts';
import { applyProjectInput, DEFAULT_TIMEOUTS, Timeouts } from './project.ts';
import { SESSION_STATES, TRANSITIONS } from './states.ts';
import { ServerToWorkerFrame, WORKER_ENV, WorkerFrame } from './worker.ts';

const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const frameTypes = (union: { anyOf: unknown[] }) =>
  (union.anyOf as { properties: { type: { const: string } } }[]).map((m) => m.properties.type.const);

for (const doc of renderDocs()) {
  test(`${doc.file} matches the code (run \`npm run docs\` to update it)`, () => {
    assert.equal(doc.current, doc.expected, `${doc.file} is out of date: run \`npm run docs\``);
  });
}

/** The cells of every table row in a generated block of a doc, trimmed, with `\\|` unescaped. */
function tableRows(file: string, blockName: string): string[][] {
  const text = read(file);
  const from = text.indexOf(begin(blockName));
  const to = text.indexOf(end(blockName));
  assert.ok(from >= 0 && to > from, `${file} has no block ${blockName}`);
  return text
    .slice(from, to)
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .map((l) =>
      l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim().replaceAll('\\|', '|')),
    );
}

function assertMentions(file: string, what: string, names: readonly (string | number)[]): void {
  const text = read(file);
  const missing = names.filter((n) => !text.includes(`\`${n}\``));
  assert.deepEqual(missing, [], `${file} does not mention these ${what}: ${missing.join(', ')}`);
}

test('docs/states.md names every state and every legal transition', () => {
  assertMentions('docs/states.md', 'states', SESSION_STATES);
  const rows = tableRows('docs/states.md', 'transitions');
  for (const from of SESSION_STATES) {
    const row = rows.find((r) => r[0] === `\`${from}\``);
    assert.ok(row, `docs/states.md has no transitions row for ${from}`);
    const listed = [...row[1]!.matchAll(/`([a-z]+)`/g)].map((m) => m[1]);
    assert.deepEqual(listed, [...TRANSITIONS[from]], `docs/states.md: transitions from ${from}`);
  }
});

test('docs/close-codes.md lists every close code and every end reason with its code', () => {
  assertMentions('docs/close-codes.md', 'close codes', Object.keys(CLOSE_CODES));
  assertMentions('docs/close-codes.md', 'end reasons', Object.keys(END_REASONS));
  const rows = tableRows('docs/close-codes.md', 'end-reasons');
  for (const [reason, { code }] of Object.entries(END_REASONS)) {
    assert.ok(
      rows.some((r) => r[0] === `\`${reason}\`` && r[1] === `\`${code}\``),
      `docs/close-codes.md does not give ${reason} the code ${code}`,
    );
  }
});

test('docs/errors.md lists every error code with its status', () => {
  assertMentions('docs/errors.md', 'error codes', Object.keys(ERRORS));
  const rows = tableRows('docs/errors.md', 'errors');
  for (const [code, e] of Object.entries(ERRORS)) {
    assert.ok(
      rows.some(
        (r) => r[0] === `\`${code}\`` && r[1] === String(e.status) && r[2] === (e.retryable ? 'yes' : 'no'),
      ),
      `docs/errors.md does not give ${code} the status ${e.status} and retryable ${e.retryable}`,
    );
  }
});

test('docs/worker-protocol.md lists every frame, socket close code and environment variable', () => {
  assertMentions('docs/worker-protocol.md', 'worker frames', frameTypes(WorkerFrame));
  assertMentions('docs/worker-protocol.md', 'server frames', frameTypes(ServerToWorkerFrame));
  assertMentions('docs/worker-protocol.md', 'socket close codes', Object.values(SocketCloseCode));
  assertMentions('docs/worker-protocol.md', 'environment variables', Object.values(WORKER_ENV));
});

test('docs/timeouts.md lists every timeout with its default and the seed keys', () => {
  assertMentions('docs/timeouts.md', 'timeouts', Object.keys(DEFAULT_TIMEOUTS));
  assertMentions('docs/timeouts.md', 'defaults', Object.values(DEFAULT_TIMEOUTS));
  assertMentions('docs/timeouts.md', 'seed keys', Object.keys(SEED_TIMEOUTS));
});

test('the timeout table agrees with the Timeouts schema about what each expiry ends with', () => {
  for (const [key, d] of Object.entries(TIMEOUT_DOCS)) {
    const description = (Timeouts.properties as Record<string, { description?: string }>)[key]?.description;
    assert.ok(description !== undefined, `Timeouts has no setting ${key}`);
    if (d.reason) {
      const code = END_REASONS[d.reason].code;
      assert.ok(
        description.includes(`${code} ${d.reason}`),
        `${key}: the docs say ${code} ${d.reason}, the schema says "${description}"`,
      );
    } else {
      assert.doesNotMatch(description, /on expiry \d{4}/, `${key}: the docs say its expiry ends nothing`);
    }
  }
});

test('each seed YAML key sets the documented setting, converting seconds to milliseconds', () => {
  for (const [seedKey, setting] of Object.entries(SEED_TIMEOUTS)) {
    const project = applyProjectInput(null, { id: 'p', session: { timeouts: { [seedKey]: 7.5 } } });
    assert.equal(project.timeouts[setting], 7500, `session.timeouts.${seedKey} should set ${setting}`);
    for (const other of Object.keys(DEFAULT_TIMEOUTS) as (keyof Timeouts)[]) {
      if (other !== setting) assert.equal(project.timeouts[other], DEFAULT_TIMEOUTS[other]);
    }
  }
});

test('a stale or unmarked doc is caught', () => {
  const doc = DOCS.find((d) => d.file === 'docs/states.md')!;
  const current = read(doc.file);
  // a transition the code does not have, slipped into the generated table
  const edited = current.replace('— (terminal)', '`active`    ');
  assert.notEqual(edited, current);
  assert.notEqual(fill(edited, doc.blocks, doc.file), edited);
  assert.equal(TRANSITIONS.ended.length, 0);
  // a missing marker is an error naming the marker
  const unmarked = current.replace(end('transitions'), '');
  assert.throws(
    () => fill(unmarked, doc.blocks, doc.file),
    (err: Error) => err.message.includes(begin('transitions')),
  );
});
