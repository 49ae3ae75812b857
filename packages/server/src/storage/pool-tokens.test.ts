// Pool tokens on SQLite and PostgreSQL: kept by id, listed newest first, revoked once and only in their own
// project; those expired over a day ago are neither listed nor kept.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { databaseKinds, useTestStore } from '@usher/testing';

const T = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

for (const kind of databaseKinds()) {
  describe(`pool tokens (${kind})`, () => {
    const { store } = useTestStore(kind);

    test('listed newest first; revoked once, in their own project only; long expired ones go', async () => {
      const tokens = store.poolTokens;
      const made = (id: string, at: number, ttl: number, projectId = 'p') =>
        tokens.insert({ id, projectId, region: 'eu', createdAt: at, expiresAt: at + ttl });
      await made('pt_old', T, HOUR);
      await made('pt_a', T + 10, 30 * 24 * HOUR);
      await made('pt_other', T + 20, HOUR, 'q');
      assert.deepEqual(
        (await tokens.list('p', T + 30)).map((t) => t.id),
        ['pt_a', 'pt_old'],
      );
      assert.equal(await tokens.revoke('q', 'pt_a', T + 40), undefined, "another project's");
      assert.equal((await tokens.revoke('p', 'pt_a', T + 40))?.revokedAt, T + 40);
      assert.equal((await tokens.revoke('p', 'pt_a', T + 50))?.revokedAt, T + 40, 'revoked once');
      assert.equal(await tokens.revoke('p', 'pt_none', T + 50), undefined);
      // a day after pt_old expired it is no longer listed, and the next token made takes it away
      const later = T + HOUR + 24 * HOUR + 1;
      assert.deepEqual(
        (await tokens.list('p', later)).map((t) => t.id),
        ['pt_a'],
      );
      assert.ok(await tokens.get('pt_old'));
      await made('pt_b', later, HOUR);
      assert.equal(await tokens.get('pt_old'), undefined);
      assert.ok(await tokens.get('pt_a'), 'a revoked token not yet expired stays, to refuse it');
    });
  });
}
