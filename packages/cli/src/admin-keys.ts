// `usher admin-keys create|list|revoke`: the admin keys kept in the database, managed without a running server
// (the way back in for an operator who has lost every key). Servers stop taking a revoked key within their
// cache's expiry; revoking through the API (DELETE /admin-keys/{id}) tells them at once.
import { UsherError } from '@usher/protocol';
import { ADMIN_KEY_CACHE_MS, AdminKeyStore, AdminKeys, openStore } from '@usher/server';
import type { ResolvedConfig } from './config.ts';

/** `missingDatabase`: the SQLite file the configuration names does not exist (main.ts looks once). */
export async function adminKeysCommand(
  config: ResolvedConfig,
  args: string[],
  help: string,
  missingDatabase: string | null,
): Promise<number> {
  const [action, arg, ...extra] = args;
  const usage = (message: string) => {
    console.error(`usher admin-keys: ${message}\n\n${help}`);
    return 2;
  };
  if (extra.length > 0) return usage(`unexpected "${extra.join(' ')}"`);
  if (action !== 'create' && action !== 'list' && action !== 'revoke')
    return usage(action ? `unknown action "${action}"` : 'say create, list or revoke');
  if (action !== 'list' && !arg)
    return usage(action === 'create' ? 'give the new key a name' : 'give the id of the key to revoke');
  if (action === 'list' && arg) return usage(`list takes no argument, not "${arg}"`);
  // keys written to a mistyped path would be kept where no server looks
  if (missingDatabase !== null) {
    console.error(
      `usher admin-keys: there is no database at ${missingDatabase}: check --database, USHER_DATABASE_URL or storage.sqlite.path; to make a new one, run usher migrate with the same option (a server also makes its database when it first starts)`,
    );
    return 2;
  }

  const store = await openStore(config.storage);
  try {
    const keys = new AdminKeys(config.adminKeys, { store: new AdminKeyStore(store.db) });
    if (action === 'create') {
      const k = await keys.create(arg!);
      console.log(
        `Admin key "${k.name}" (${k.id}), shown this once, stored only as a hash:\n\n  ${k.key}\n\nSend it as "Authorization: Bearer <key>".`,
      );
    } else if (action === 'list') {
      const list = await keys.list();
      if (list.length === 0) console.log('No admin keys in the database (configured keys are not listed).');
      for (const k of list) {
        const state = k.revokedAt
          ? `revoked ${iso(k.revokedAt)}`
          : `last used ${k.lastUsedAt ? iso(k.lastUsedAt) : 'never'}`;
        console.log(`${k.id}  ${k.prefix}…  ${k.name}  created ${iso(k.createdAt)}  ${state}`);
      }
    } else {
      const k = await keys.revoke(arg!);
      console.log(
        `Revoked admin key "${k.name}" (${k.id}); running servers refuse it within ${ADMIN_KEY_CACHE_MS / 1000} s.`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof UsherError) {
      console.error(`usher admin-keys: ${err.message}`);
      return 1;
    }
    throw err;
  } finally {
    await store.close();
  }
}

const iso = (ms: number) => new Date(ms).toISOString();
