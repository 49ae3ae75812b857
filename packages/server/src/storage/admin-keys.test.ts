// Admin keys on SQLite and PostgreSQL: stored as hashes, found by hash while not revoked (stamping their last
// use; a hash that matches nothing is only read), listed without secrets, revoked once; the last active key is
// kept when asked; a bootstrap key is made only while no key is active, by one of several servers starting at
// once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { databaseKinds, useTestStore } from '@usher/testing';
import { AdminKeys, generateAdminKey, hashAdminKey } from '../auth/admin-keys.ts';
import { AdminKeyStore } from './admin-keys.ts';
import type { Db } from './db.ts';

const T = Date.UTC(2026, 0, 1);

/** The database, recording the first word of every statement run on it; `verbs()` returns them and starts again. */
function recording(db: Db): { db: Db; verbs: () => string[] } {
  let seen: string[] = [];
  const spy = new Proxy(db, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (typeof args[0] === 'string') seen.push(args[0].trim().split(/\s/, 1)[0]!.toUpperCase());
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    db: spy,
    verbs: () => {
      const out = seen;
      seen = [];
      return out;
    },
  };
}

for (const kind of databaseKinds()) {
  describe(`admin keys (${kind})`, () => {
    const { store } = useTestStore(kind);
    const keys = () => new AdminKeyStore(store.db);
    const clear = () => store.db.run('DELETE FROM admin_keys');
    const active = async () => (await keys().list()).filter((k) => k.revokedAt === null).length;

    test('a key is stored as its SHA-256 hash and a short prefix, never in clear', async () => {
      await clear();
      const g = generateAdminKey();
      assert.match(g.key, /^usk_[\w-]{43}$/);
      assert.equal(g.hash, hashAdminKey(g.key).toString('hex'));
      assert.equal(g.prefix, g.key.slice(0, 8));
      const rec = await keys().insert({
        id: 'ak_1',
        name: 'ci',
        hash: g.hash,
        prefix: g.prefix,
        createdAt: T,
      });
      assert.deepEqual(rec, {
        id: 'ak_1',
        name: 'ci',
        prefix: g.prefix,
        createdAt: T,
        lastUsedAt: null,
        revokedAt: null,
      });
      const rows = await store.db.all<Record<string, unknown>>('SELECT * FROM admin_keys');
      assert.equal(rows.length, 1);
      const text = JSON.stringify(rows);
      assert.ok(!text.includes(g.key), 'the key itself is not in the table');
      assert.ok(!text.includes(g.key.slice(8)), 'nor its secret part');
      assert.equal(rows[0]!.hash, g.hash);
    });

    test('use() finds a live key by hash and stamps its last use; unknown and revoked keys are not found', async () => {
      await clear();
      const g = generateAdminKey();
      await keys().insert({ id: 'ak_u', name: 'u', hash: g.hash, prefix: g.prefix, createdAt: T });
      assert.deepEqual(await keys().use(g.hash, T + 5), { id: 'ak_u' });
      assert.equal((await keys().get('ak_u'))?.lastUsedAt, T + 5);
      assert.equal(await keys().use(generateAdminKey().hash, T + 6), undefined);
      await keys().insert({
        id: 'ak_v',
        name: 'v',
        hash: generateAdminKey().hash,
        prefix: 'usk_x',
        createdAt: T,
      });
      const revoked = await keys().revoke('ak_u', T + 7, true);
      assert.equal(typeof revoked === 'object' && revoked.revokedAt, T + 7);
      assert.equal(await keys().use(g.hash, T + 8), undefined, 'a revoked key is not found');
      assert.equal((await keys().get('ak_u'))?.lastUsedAt, T + 5, 'nor stamped');
    });

    test('use(): a hash that matches nothing costs one read and no write; a live key is read, then stamped', async () => {
      await clear();
      const g = generateAdminKey();
      await keys().insert({ id: 'ak_w', name: 'w', hash: g.hash, prefix: g.prefix, createdAt: T });
      const { db, verbs } = recording(store.db);
      const spied = new AdminKeyStore(db);
      for (let i = 0; i < 3; i++) assert.equal(await spied.use(generateAdminKey().hash, T + 1), undefined);
      assert.deepEqual(verbs(), ['SELECT', 'SELECT', 'SELECT'], 'bad keys are never written');
      assert.deepEqual(await spied.use(g.hash, T + 2), { id: 'ak_w' });
      assert.deepEqual(verbs(), ['SELECT', 'UPDATE']);
      assert.equal((await keys().get('ak_w'))?.lastUsedAt, T + 2);
    });

    test('list() returns every key oldest first, revoked ones included, with no hash', async () => {
      await clear();
      for (const [id, at] of [
        ['ak_b', T + 2],
        ['ak_a', T + 1],
        ['ak_c', T + 3],
      ] as const) {
        const g = generateAdminKey();
        await keys().insert({ id, name: id, hash: g.hash, prefix: g.prefix, createdAt: at });
      }
      await keys().revoke('ak_b', T + 10, true);
      const list = await keys().list();
      assert.deepEqual(
        list.map((k) => [k.id, k.revokedAt]),
        [
          ['ak_a', null],
          ['ak_b', T + 10],
          ['ak_c', null],
        ],
      );
      for (const k of list)
        assert.deepEqual(Object.keys(k).sort(), [
          'createdAt',
          'id',
          'lastUsedAt',
          'name',
          'prefix',
          'revokedAt',
        ]);
      assert.equal(await active(), 2);
    });

    test('revoke(): unknown is not_found; the last active key is kept when asked; revoking twice changes nothing', async () => {
      await clear();
      for (const id of ['ak_1', 'ak_2']) {
        const g = generateAdminKey();
        await keys().insert({ id, name: id, hash: g.hash, prefix: g.prefix, createdAt: T });
      }
      assert.equal(await keys().revoke('ak_nope', T, true), 'not_found');
      const first = await keys().revoke('ak_1', T + 1, true);
      assert.equal(typeof first === 'object' && first.revokedAt, T + 1);
      assert.equal(await keys().revoke('ak_2', T + 2, true), 'last_key');
      const again = await keys().revoke('ak_1', T + 3, true);
      assert.equal(typeof again === 'object' && again.revokedAt, T + 1, 'already revoked: kept as it was');
      const forced = await keys().revoke('ak_2', T + 4, false);
      assert.equal(
        typeof forced === 'object' && forced.revokedAt,
        T + 4,
        'without keepOne the last one goes',
      );
      assert.equal(await active(), 0);
    });

    test('two revocations at once cannot take away both of the last two keys', async () => {
      await clear();
      for (const id of ['ak_x', 'ak_y']) {
        const g = generateAdminKey();
        await keys().insert({ id, name: id, hash: g.hash, prefix: g.prefix, createdAt: T });
      }
      const results = await Promise.all([keys().revoke('ak_x', T, true), keys().revoke('ak_y', T, true)]);
      assert.equal(results.filter((r) => r === 'last_key').length, 1, JSON.stringify(results));
      assert.equal(await active(), 1);
    });

    test('a bootstrap key is made only while no key is active, once among servers starting together', async () => {
      await clear();
      const servers = [1, 2, 3].map(() => new AdminKeys([], { store: keys(), now: () => T }));
      const made = (await Promise.all(servers.map((s) => s.bootstrap()))).filter((k) => k !== null);
      assert.equal(made.length, 1, 'exactly one server made it');
      assert.equal(made[0]!.name, 'bootstrap');
      assert.deepEqual(
        await servers[2]!.verify(made[0]!.key),
        { keyId: made[0]!.id },
        'every server knows it',
      );
      assert.equal(await servers[0]!.bootstrap(), null, 'a later start makes none');
      const configured = new AdminKeys(['a-configured-key-0123456789'], { store: keys(), now: () => T });
      await clear();
      assert.equal(await configured.bootstrap(), null, 'none when a key is configured');
      assert.equal(await active(), 0);
    });
  });
}
