// AdminKeys: configured keys checked in memory; stored keys looked up once and cached for a while, revocation
// dropping them from the cache at once, and the cache's expiry as the backstop when a revocation is not heard.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AdminKeyRecord, AdminKeyStore, NewAdminKey } from '../storage/admin-keys.ts';
import { ADMIN_KEY_CACHE_MS, AdminKeys, generateAdminKey } from './admin-keys.ts';

/** An in-memory store that counts its lookups. */
function fakeStore() {
  const rows = new Map<string, NewAdminKey & { revokedAt: number | null }>();
  let release: (() => void) | null = null;
  const store = {
    lookups: 0,
    /** while set, lookups wait for release() */
    hold: false,
    release: () => release?.(),
    add(hash: string, id: string) {
      rows.set(id, { id, name: id, hash, prefix: 'usk_', createdAt: 0, revokedAt: null });
    },
    revokeNow(id: string) {
      rows.get(id)!.revokedAt = 1;
    },
    async use(hash: string) {
      store.lookups++;
      // the database reads, then its answer takes a while to arrive
      const row = [...rows.values()].find((r) => r.hash === hash && r.revokedAt === null);
      if (store.hold) await new Promise<void>((r) => (release = r));
      return row && { id: row.id };
    },
    async revoke(id: string, now: number): Promise<AdminKeyRecord | 'not_found'> {
      const row = rows.get(id);
      if (!row) return 'not_found';
      row.revokedAt = now;
      return { ...row, lastUsedAt: null };
    },
  };
  return store;
}

test('configured keys pass without a store; anything else is refused', async () => {
  const keys = new AdminKeys(['configured-key-0123456789']);
  assert.deepEqual(await keys.verify('configured-key-0123456789'), { keyId: null });
  assert.equal(await keys.verify('configured-key-012345678'), null);
  assert.equal(keys.configuredCount, 1);
});

test('a stored key is looked up once, then believed for the cache time; concurrent checks share a lookup', async () => {
  let now = 0;
  const store = fakeStore();
  const g = generateAdminKey();
  store.add(g.hash, 'ak_1');
  const keys = new AdminKeys([], { store: store as unknown as AdminKeyStore, now: () => now });
  const all = await Promise.all([keys.verify(g.key), keys.verify(g.key), keys.verify(g.key)]);
  assert.deepEqual(all, [{ keyId: 'ak_1' }, { keyId: 'ak_1' }, { keyId: 'ak_1' }]);
  assert.equal(store.lookups, 1);
  now += ADMIN_KEY_CACHE_MS - 1;
  await keys.verify(g.key);
  assert.equal(store.lookups, 1, 'still cached');
  now += 1;
  await keys.verify(g.key);
  assert.equal(store.lookups, 2, 'asked again once the cache time is over');
});

test('a bad key is remembered as bad for the cache time: a flood of it asks the database once', async () => {
  let now = 0;
  const store = fakeStore();
  const keys = new AdminKeys([], { store: store as unknown as AdminKeyStore, now: () => now });
  for (let i = 0; i < 50; i++) assert.equal(await keys.verify('usk_not-a-key-at-all'), null);
  assert.equal(store.lookups, 1);
  now += ADMIN_KEY_CACHE_MS;
  assert.equal(await keys.verify('usk_not-a-key-at-all'), null);
  assert.equal(store.lookups, 2);
});

test('revoking here refuses the key at once and tells the others; forget() is what the others do', async () => {
  const store = fakeStore();
  const a = generateAdminKey();
  const b = generateAdminKey();
  store.add(a.hash, 'ak_a');
  store.add(b.hash, 'ak_b');
  const told: string[] = [];
  const here = new AdminKeys([], {
    store: store as unknown as AdminKeyStore,
    now: () => 0,
    onRevoked: (id) => told.push(id),
  });
  const there = new AdminKeys([], { store: store as unknown as AdminKeyStore, now: () => 0 });
  assert.deepEqual(await here.verify(a.key), { keyId: 'ak_a' });
  assert.deepEqual(await there.verify(a.key), { keyId: 'ak_a' });
  await here.revoke('ak_a');
  assert.deepEqual(told, ['ak_a']);
  assert.equal(await here.verify(a.key), null, 'refused here at once');
  assert.deepEqual(await there.verify(a.key), { keyId: 'ak_a' }, 'the other still believes its cache…');
  there.forget('ak_a');
  assert.equal(await there.verify(a.key), null, '…until it hears of the revocation');
  assert.deepEqual(await there.verify(b.key), { keyId: 'ak_b' }, 'other keys are not affected');
});

test('without the news, the cache time is the backstop', async () => {
  let now = 0;
  const store = fakeStore();
  const g = generateAdminKey();
  store.add(g.hash, 'ak_1');
  const keys = new AdminKeys([], { store: store as unknown as AdminKeyStore, now: () => now });
  await keys.verify(g.key);
  store.revokeNow('ak_1'); // on another server, whose message was lost
  assert.deepEqual(await keys.verify(g.key), { keyId: 'ak_1' });
  now += ADMIN_KEY_CACHE_MS;
  assert.equal(await keys.verify(g.key), null);
});

test('a lookup overtaken by a revocation is not cached', async () => {
  const store = fakeStore();
  const g = generateAdminKey();
  store.add(g.hash, 'ak_1');
  const keys = new AdminKeys([], { store: store as unknown as AdminKeyStore, now: () => 0 });
  store.hold = true;
  const pending = keys.verify(g.key);
  await new Promise((r) => setImmediate(r));
  keys.forget('ak_1'); // the revocation is heard while the database answers
  store.revokeNow('ak_1');
  store.release();
  assert.deepEqual(await pending, { keyId: 'ak_1' }, 'the request that began before it passes');
  store.hold = false;
  assert.equal(await keys.verify(g.key), null, 'but the answer was not kept');
});
