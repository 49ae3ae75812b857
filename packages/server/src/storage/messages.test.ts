// The message log on SQLite and PostgreSQL: batched appends, pages newest first returned oldest first, cursors
// that neither skip nor repeat a message when many share a timestamp, debug hidden unless asked.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Envelope } from '@usher/protocol';
import { databaseKinds, useTestStore } from '@usher/testing';
import { isoToMicros, microsToIso, pageJson, type StoredMessage } from './messages.ts';

const T_US = Date.UTC(2026, 0, 1) * 1000;

function stored(sessionId: string, n: number, atUs: number, type = 'user_text'): StoredMessage {
  const message: Envelope = {
    id: `m_${String(n).padStart(6, '0')}`,
    sessionId,
    type,
    from: { identity: `u${n % 3}`, kind: n % 2 ? 'user' : 'agent' },
    at: microsToIso(atUs),
    data: { n, text: `message ${n}`, nested: [1, 'two', null] },
  };
  return { message, atUs };
}

describe('ISO-8601 timestamps to the microsecond', () => {
  test('round trip, fractions of any length, zones, dates', () => {
    assert.equal(microsToIso(T_US + 123_004), '2026-01-01T00:00:00.123004Z');
    // the text of a second is kept for the next call: a call in another second, and back, is still right
    assert.equal(microsToIso(T_US + 1_000_007), '2026-01-01T00:00:01.000007Z');
    assert.equal(microsToIso(T_US - 1), '2025-12-31T23:59:59.999999Z');
    assert.equal(microsToIso(T_US + 999_999), '2026-01-01T00:00:00.999999Z');
    assert.equal(isoToMicros('2026-01-01T00:00:00.123004Z'), T_US + 123_004);
    assert.equal(isoToMicros('2026-01-01T00:00:00.1Z'), T_US + 100_000);
    assert.equal(isoToMicros('2026-01-01T00:00:00.123456789Z'), T_US + 123_456);
    assert.equal(isoToMicros('2026-01-01T01:00:00+01:00'), T_US);
    assert.equal(isoToMicros('2026-01-01T01:00:00+0100'), T_US);
    assert.equal(isoToMicros('2026-01-01T00:00Z'), T_US);
    assert.equal(isoToMicros('2026-01-01T00:00:00'), T_US, 'no zone: UTC');
    assert.equal(isoToMicros('2026-01-01'), T_US);
    for (const bad of [
      '',
      'yesterday',
      '2026-13-01',
      '2026-01-01T25:00:00Z',
      '1767225600000',
      '2026-01-01Tnoon',
    ])
      assert.equal(isoToMicros(bad), null, bad);
  });
});

for (const kind of databaseKinds()) {
  describe(`message log (${kind})`, () => {
    const { store } = useTestStore(kind);

    test('a message comes back exactly as it was stored, with its envelope, sender and time', async () => {
      const m = stored('s-one', 1, T_US + 7);
      await store.messages.append([m]);
      const page = await store.messages.page({ sessionId: 's-one', limit: 50, includeDebug: false });
      assert.deepEqual(page, { messages: [m.message], hasMore: false, next: null });
      await store.messages.append([m]); // a retried write does not duplicate
      assert.equal(
        (await store.messages.page({ sessionId: 's-one', limit: 50, includeDebug: false })).messages.length,
        1,
      );
    });

    test("a page's JSON (as the API sends it) is the page itself, data and awkward text included", async () => {
      const odd: StoredMessage = stored('s-json', 1, T_US + 5);
      odd.message.from = { identity: 'quote " back\\ slash \u2028 é', kind: 'user' };
      odd.message.data = {
        text: 'line\nbreak "quoted" </script> 🚀',
        deep: { list: [1.5, true, null, 'x'] },
      };
      const batch = [odd, stored('s-json', 2, T_US + 6), stored('s-json', 3, T_US + 1_000_006)];
      await store.messages.append(batch);
      for (const limit of [2, 50]) {
        const q = { sessionId: 's-json', limit, includeDebug: false };
        const page = await store.messages.page(q);
        const body = JSON.parse(pageJson(await store.messages.pageRows(q)));
        assert.deepEqual(body, {
          messages: page.messages,
          hasMore: page.hasMore,
          nextBefore: page.next ? microsToIso(page.next.atUs) : null,
          nextBeforeId: page.next?.id ?? null,
        });
      }
      const all = await store.messages.page({ sessionId: 's-json', limit: 50, includeDebug: false });
      assert.deepEqual(
        all.messages,
        batch.map((m) => m.message),
      );
    });

    test('1,000 messages, 100 to a timestamp: paging back 7 at a time returns each once, in order', async () => {
      const all: StoredMessage[] = [];
      for (let i = 0; i < 1000; i++) all.push(stored('s-ties', i, T_US + Math.floor(i / 100)));
      // appended out of order and in batches of varied size: the order is the log's, not the arrival's
      const shuffled = [...all].sort(
        (a, b) => (a.message.id.endsWith('7') ? -1 : 0) - (b.message.id.endsWith('7') ? -1 : 0),
      );
      for (let i = 0; i < shuffled.length; ) {
        const n = 1 + (i % 250);
        await store.messages.append(shuffled.slice(i, i + n));
        i += n;
      }
      await store.messages.append([stored('s-other', 0, T_US)]); // another session's message never shows up
      const seen: Envelope[] = [];
      let cursor: { atUs: number; id: string } | null = null;
      let pages = 0;
      do {
        const page = await store.messages.page({
          sessionId: 's-ties',
          limit: 7,
          includeDebug: false,
          ...(cursor ? { beforeUs: cursor.atUs, beforeId: cursor.id } : {}),
        });
        assert.ok(page.messages.length <= 7);
        seen.unshift(...page.messages);
        cursor = page.next;
        pages++;
        assert.equal(page.hasMore, cursor !== null);
      } while (cursor);
      assert.equal(pages, Math.ceil(1000 / 7));
      assert.deepEqual(
        seen.map((m) => m.id),
        all.map((s) => s.message.id),
      );
    });

    test('a timestamp alone as the cursor returns what is strictly older', async () => {
      const rows = [0, 1, 1, 2].map((t, i) => stored('s-before', i, T_US + t));
      await store.messages.append(rows);
      const page = await store.messages.page({
        sessionId: 's-before',
        limit: 50,
        includeDebug: false,
        beforeUs: T_US + 1,
      });
      assert.deepEqual(
        page.messages.map((m) => m.id),
        ['m_000000'],
      );
    });

    test('debug messages are hidden unless asked for, and pages still fill', async () => {
      const rows = Array.from({ length: 30 }, (_, i) =>
        stored('s-debug', i, T_US + i, i % 3 ? 'debug' : 'agent_text'),
      );
      await store.messages.append(rows);
      const plain = await store.messages.page({ sessionId: 's-debug', limit: 5, includeDebug: false });
      assert.deepEqual(
        plain.messages.map((m) => m.type),
        Array(5).fill('agent_text'),
      );
      assert.equal(plain.hasMore, true);
      const rest = await store.messages.page({
        sessionId: 's-debug',
        limit: 100,
        includeDebug: false,
        beforeUs: plain.next!.atUs,
        beforeId: plain.next!.id,
      });
      assert.equal(rest.messages.length, 5);
      assert.equal(rest.hasMore, false);
      const everything = await store.messages.page({ sessionId: 's-debug', limit: 100, includeDebug: true });
      assert.equal(everything.messages.length, 30);
    });
  });
}
