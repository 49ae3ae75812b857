// Reading a session's transcript: one page, paging back through every page, the whole transcript, and the
// parameters and answers the SDK refuses.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Envelope } from '@usher/protocol';
import { harness, json } from './fakes.ts';
import { historyQuery } from './history.ts';
import { UsherSession } from './session.ts';

/** n messages; every three share one time stamp, so that only the id tells them apart */
function messages(n: number, debugEvery = 0): Envelope[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `m${String(i).padStart(3, '0')}`,
    sessionId: 's1',
    type: debugEvery && i % debugEvery === 0 ? 'debug' : 'user_text',
    from: { identity: 'ana', kind: 'user' as const },
    at: `2026-01-01T00:00:${String(Math.floor(i / 3)).padStart(2, '0')}.000123Z`,
    data: { text: `#${i}` },
  }));
}

/** Answers GET …/messages like the server: newest `limit` before the cursor (at, then id), oldest first. */
function transcriptServer(all: Envelope[]) {
  const asked: URL[] = [];
  const fetch = async (url: string, init: RequestInit): Promise<Response> => {
    const u = new URL(url);
    asked.push(u);
    assert.equal(init.method, 'GET');
    assert.equal(new Headers(init.headers).get('authorization'), 'Bearer token-s1');
    const limit = Number(u.searchParams.get('limit') ?? 50);
    const before = u.searchParams.get('before');
    const beforeId = u.searchParams.get('before_id');
    const debug = u.searchParams.get('include_debug') === 'true';
    const older = all.filter(
      (m) =>
        (debug || m.type !== 'debug') &&
        (before === null || m.at < before || (m.at === before && beforeId !== null && m.id < beforeId)),
    );
    const page = older.slice(-limit);
    const hasMore = older.length > page.length;
    return json(200, {
      messages: page,
      hasMore,
      nextBefore: hasMore ? page[0]!.at : null,
      nextBeforeId: hasMore ? page[0]!.id : null,
    });
  };
  return { fetch, asked };
}

async function sessionWith(fetch: (url: string, init: RequestInit) => Promise<Response>) {
  const h = harness();
  const session = await UsherSession.join({
    ...h.options,
    fetch,
    url: 'ws://usher.test/sessions/s1/ws?token=token-s1',
  });
  return session;
}

describe('history', () => {
  test('one page: the query names every option, and the answer is typed as it came', async () => {
    const all = messages(7);
    const server = transcriptServer(all);
    const session = await sessionWith(server.fetch);
    const page = await session.history({ limit: 3, includeDebug: false });
    assert.deepEqual(
      page.messages.map((m) => m.id),
      ['m004', 'm005', 'm006'],
    );
    assert.equal(page.hasMore, true);
    assert.equal(page.nextBefore, all[4]!.at);
    assert.equal(page.nextBeforeId, 'm004');
    assert.equal(
      server.asked[0]!.toString(),
      'http://usher.test/sessions/s1/messages?limit=3&include_debug=false',
    );
    const older = await session.history({ limit: 3, before: page.nextBefore!, beforeId: page.nextBeforeId! });
    assert.deepEqual(
      older.messages.map((m) => m.id),
      ['m001', 'm002', 'm003'],
      'messages with the same time stamp as the cursor are neither skipped nor repeated',
    );
    assert.equal(server.asked[1]!.searchParams.get('before'), '2026-01-01T00:00:01.000123Z');
    assert.equal(server.asked[1]!.searchParams.get('before_id'), 'm004');
  });

  test('historyPages() pages back from the newest to the first message; transcript() returns them oldest first', async () => {
    const all = messages(10, 4);
    const server = transcriptServer(all);
    const session = await sessionWith(server.fetch);
    const pages: string[][] = [];
    for await (const page of session.historyPages({ limit: 3 })) pages.push(page.messages.map((m) => m.id));
    assert.deepEqual(pages, [['m006', 'm007', 'm009'], ['m002', 'm003', 'm005'], ['m001']]);
    const withDebug = await session.transcript({ includeDebug: true, pageSize: 4 });
    assert.deepEqual(
      withDebug.map((m) => m.id),
      all.map((m) => m.id),
    );
    const plain = await session.transcript();
    assert.deepEqual(
      plain.map((m) => m.id),
      all.filter((m) => m.type !== 'debug').map((m) => m.id),
    );
    assert.equal(server.asked.at(-1)!.searchParams.get('limit'), '100');
  });

  test('works after the session ended, with the same token', async () => {
    const server = transcriptServer(messages(2));
    const h = harness();
    const session = await UsherSession.join({
      ...h.options,
      fetch: server.fetch,
      url: 'ws://usher.test/sessions/s1/ws?token=token-s1',
    });
    h.net.last.open();
    session.leave();
    assert.equal(session.state, 'ended');
    assert.equal((await session.transcript()).length, 2);
  });

  test('bad options are refused before any request, naming the option', () => {
    assert.throws(() => historyQuery({ limit: 0 }), { code: 'BAD_OPTIONS', message: /`limit`.*1 to 100/ });
    assert.throws(() => historyQuery({ limit: 101 }), { code: 'BAD_OPTIONS' });
    assert.throws(() => historyQuery({ before: 'yesterday' }), { code: 'BAD_OPTIONS', message: /`before`/ });
    assert.throws(() => historyQuery({ beforeId: 'm1' }), { code: 'BAD_OPTIONS', message: /`beforeId`/ });
    assert.equal(
      historyQuery({ before: new Date('2026-01-01T00:00:00Z'), includeDebug: true }),
      '?before=2026-01-01T00%3A00%3A00.000Z&include_debug=true',
    );
    assert.equal(historyQuery({}), '');
  });

  test("the server's 400 rejects with its code and message; an answer that is not a page with BAD_RESPONSE", async () => {
    const answers = [
      json(400, { error: { code: 'BAD_PARAMETER', message: '`before` is not an ISO-8601 time' } }),
      json(200, { messages: [{ nope: true }], hasMore: false, nextBefore: null }),
      json(200, { messages: [], hasMore: true, nextBefore: null, nextBeforeId: null }),
    ];
    const session = await sessionWith(async () => answers.shift()!);
    await assert.rejects(session.history(), {
      name: 'UsherError',
      code: 'BAD_PARAMETER',
      status: 400,
      message: /`before`/,
    });
    await assert.rejects(session.history(), { code: 'BAD_RESPONSE' });
    await assert.rejects(session.transcript(), { code: 'BAD_RESPONSE', message: /nextBefore/ });
  });

  test('a server that repeats its cursor stops the paging instead of looping', async () => {
    const page = {
      messages: messages(1),
      hasMore: true,
      nextBefore: '2026-01-01T00:00:00.000123Z',
      nextBeforeId: 'm000',
    };
    const session = await sessionWith(async () => json(200, page));
    await assert.rejects(session.transcript(), { code: 'BAD_RESPONSE', message: /same page cursor/ });
  });
});
