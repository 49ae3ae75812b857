// Admin API keys: the ones given in configuration (held as hashes in memory, compared in constant time) and the
// ones made through the API (stored as hashes, revocable). A verified key is cached for a few seconds, so that
// checking one costs a hash and a map lookup on the hot path (POST /sessions); a revocation drops it from the
// cache of this server at once and of the others through the bus, and the cache's expiry is the backstop.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { UsherError } from '@usher/protocol';
import { newId } from '../engine/ids.ts';
import type { AdminKeyRecord, AdminKeyStore } from '../storage/admin-keys.ts';

/** How long a verified (or refused) stored key is believed without asking the database again. */
export const ADMIN_KEY_CACHE_MS = 10_000;
/** Keys made by Usher start with this. */
export const ADMIN_KEY_PREFIX = 'usk_';
/** How many characters of a made key are kept for display (the prefix and 4 of its 43 random ones). */
const DISPLAY_CHARS = ADMIN_KEY_PREFIX.length + 4;
/** At most this many hashes are cached (good and bad apart): the oldest entry goes first. */
const MAX_CACHED = 1_000;

/** Who an admin key is: a stored key's id, or null for a key given in configuration. */
export interface AdminIdentity {
  keyId: string | null;
}

export interface AdminKeysOptions {
  /** where keys made through the API live; without one, only configured keys exist */
  store?: AdminKeyStore;
  /** the clock of the cache and of the stored times (ms) */
  now?: () => number;
  cacheMs?: number;
  /** told of every key revoked here, to tell the other servers (the bus) */
  onRevoked?: (keyId: string) => void;
}

/** A key made by Usher, shown once to whoever asked for it. */
export interface NewKey extends AdminKeyRecord {
  key: string;
}

/**
 * SHA-256 rather than a slow password hash: the keys Usher makes carry 256 random bits, so trying keys against
 * a stolen hash is hopeless however fast the hash is, while a slow hash would cost milliseconds on every
 * request. Keys chosen by people (configuration) are never stored.
 */
export function hashAdminKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** A fresh random key, with what is stored of it. */
export function generateAdminKey(): { key: string; hash: string; prefix: string } {
  const key = `${ADMIN_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { key, hash: hashAdminKey(key).toString('hex'), prefix: key.slice(0, DISPLAY_CHARS) };
}

export class AdminKeys {
  readonly #configured: Buffer[];
  readonly #store: AdminKeyStore | null;
  readonly #now: () => number;
  readonly #cacheMs: number;
  readonly #onRevoked: (keyId: string) => void;
  /** hex hash → the stored key it belongs to, believed until `until` */
  readonly #good = new Map<string, { id: string; until: number }>();
  /** hex hash → not a key, believed until then (a flood of one bad key asks the database once a period) */
  readonly #bad = new Map<string, number>();
  /** lookups under way, so that concurrent requests with one key ask the database once */
  readonly #pending = new Map<string, Promise<string | null>>();
  /** counts revocations: a lookup that a revocation overtook is not cached */
  #revocations = 0;

  constructor(configured: readonly string[], options: AdminKeysOptions = {}) {
    this.#configured = configured.map(hashAdminKey);
    this.#store = options.store ?? null;
    this.#now = options.now ?? Date.now;
    this.#cacheMs = options.cacheMs ?? ADMIN_KEY_CACHE_MS;
    this.#onRevoked = options.onRevoked ?? (() => {});
  }

  get configuredCount(): number {
    return this.#configured.length;
  }

  /** A configured key matches (constant time: every configured hash is compared). */
  #matchConfigured(h: Buffer): boolean {
    let ok = false;
    for (const k of this.#configured) ok = timingSafeEqual(k, h) || ok;
    return ok;
  }

  /**
   * Who the key is, or null when it is no admin key (or a revoked one). A stored key is looked up by its hash:
   * what a lookup's timing could tell is about the hash, which gives nothing away about any key.
   */
  async verify(key: string): Promise<AdminIdentity | null> {
    const h = hashAdminKey(key);
    if (this.#matchConfigured(h)) return { keyId: null };
    if (!this.#store) return null;
    const hex = h.toString('hex');
    const now = this.#now();
    const good = this.#good.get(hex);
    if (good && good.until > now) return { keyId: good.id };
    const bad = this.#bad.get(hex);
    if (bad !== undefined && bad > now) return null;
    let pending = this.#pending.get(hex);
    if (!pending) {
      pending = this.#lookUp(hex, now);
      this.#pending.set(hex, pending);
      void pending.finally(() => this.#pending.delete(hex)).catch(() => {});
    }
    const id = await pending;
    return id === null ? null : { keyId: id };
  }

  async #lookUp(hex: string, now: number): Promise<string | null> {
    const revocations = this.#revocations;
    const found = await this.#store!.use(hex, now);
    const until = now + this.#cacheMs;
    if (found) {
      this.#bad.delete(hex);
      if (revocations === this.#revocations) remember(this.#good, hex, { id: found.id, until });
      return found.id;
    }
    this.#good.delete(hex);
    remember(this.#bad, hex, until);
    return null;
  }

  /** Drops a stored key from the cache: it was revoked here or on another server. */
  forget(keyId: string): void {
    this.#revocations++;
    for (const [hex, entry] of this.#good) if (entry.id === keyId) this.#good.delete(hex);
  }

  #stored(): AdminKeyStore {
    if (!this.#store) throw new Error('admin keys are only managed through the API when a store is given');
    return this.#store;
  }

  /** Makes a key: stored as a hash, returned once with its value. */
  async create(name: string): Promise<NewKey> {
    const { key, hash, prefix } = generateAdminKey();
    const now = this.#now();
    const rec = await this.#stored().insert({ id: newId('ak', now), name, hash, prefix, createdAt: now });
    return { ...rec, key };
  }

  list(): Promise<AdminKeyRecord[]> {
    return this.#stored().list();
  }

  /**
   * Revokes a stored key: refused for the last one when no key is configured (nobody could get in again).
   * From the next request on, on this server, the key is refused; other servers hear it through the bus.
   */
  async revoke(id: string): Promise<AdminKeyRecord> {
    const r = await this.#stored().revoke(id, this.#now(), this.#configured.length === 0);
    if (r === 'not_found')
      throw new UsherError('NOT_FOUND', `no admin key "${id}"; GET /admin-keys lists them`);
    if (r === 'last_key')
      throw new UsherError(
        'CONFLICT',
        `admin key "${id}" is the last one: revoking it would lock every admin out. Create another first (POST /admin-keys), switch to it, then revoke this one`,
      );
    this.forget(id);
    this.#onRevoked(id);
    return r;
  }

  /**
   * First start without any key (none configured, none active in the store): makes one named "bootstrap"
   * and returns it, for the one who started the server to see once. Null when there was a key already.
   */
  async bootstrap(): Promise<NewKey | null> {
    if (this.#configured.length > 0 || !this.#store) return null;
    const { key, hash, prefix } = generateAdminKey();
    const now = this.#now();
    const k = { id: newId('ak', now), name: 'bootstrap', hash, prefix, createdAt: now };
    if (!(await this.#store.insertIfNoneActive(k))) return null;
    return { id: k.id, name: k.name, prefix, createdAt: now, lastUsedAt: null, revokedAt: null, key };
  }
}

function remember<V>(cache: Map<string, V>, key: string, value: V): void {
  cache.delete(key);
  while (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value!);
  cache.set(key, value);
}
