// The participant identity a session token carries (its `idn` claim). Read, not verified: the server verifies
// tokens; the SDK only wants to know which messages are its own.

/** The identity in a session token, or null when the token is not one the SDK can read. */
export function tokenIdentity(token: string): string | null {
  const payload = token.split('.')[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const json = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    const idn = (json as { idn?: unknown } | null)?.idn;
    return typeof idn === 'string' && idn !== '' ? idn : null;
  } catch {
    return null;
  }
}
