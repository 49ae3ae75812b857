// The participant identity and role a session token carries (its `idn` and `role` claims). Read, not verified:
// the server verifies tokens; the SDK only wants to know which messages are its own, and whether leaving ends
// the session (only the viewer's does).

/** The identity in a session token, or null when the token is not one the SDK can read. */
export function tokenIdentity(token: string): string | null {
  return claim(token, 'idn');
}

/** The role in a session token (`viewer`, `user`, `observer`), or null when the token is not one the SDK can read. */
export function tokenRole(token: string): string | null {
  return claim(token, 'role');
}

function claim(token: string, name: string): string | null {
  const payload = token.split('.')[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const json = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    const value = (json as Record<string, unknown> | null)?.[name];
    return typeof value === 'string' && value !== '' ? value : null;
  } catch {
    return null;
  }
}
