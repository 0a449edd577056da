// The admin's credential, kept in this tab only (sessionStorage: gone when the tab closes,
// never sent anywhere but as the bearer of API calls; never in a URL or a cookie).

const KEY = 'sts-broker.console.token';

let who = null;

/** The bearer token, or null. */
export function token() {
  return sessionStorage.getItem(KEY);
}

/** `{name, access}` of the signed-in admin, or null. */
export function current() {
  return who;
}

/** Whether the signed-in admin may change things (`admin:write` or the bootstrap token). */
export function canWrite() {
  return who !== null && who.access === 'write';
}

/**
 * Checks `candidate` with the broker and keeps it when it is an admin credential. Resolves
 * to `{name, access}`; rejects with a sentence when the broker refuses it.
 */
export async function signIn(candidate) {
  const response = await fetch('v1/whoami', {
    headers: { Authorization: `Bearer ${candidate}`, Accept: 'application/json' },
    cache: 'no-store',
    credentials: 'omit',
  }).catch(() => null);
  if (response === null) throw new Error('The broker did not answer.');
  if (response.status === 401) throw new Error('The broker does not accept this token as an admin credential.');
  if (response.status === 403) throw new Error('This token has neither admin:read nor admin:write.');
  if (!response.ok) throw new Error(`The broker answered ${response.status}.`);
  who = await response.json();
  sessionStorage.setItem(KEY, candidate);
  return who;
}

/** Signs in again with the kept token, if any; null when there is none or it is refused. */
export async function resume() {
  const kept = token();
  if (!kept) return null;
  try {
    return await signIn(kept);
  } catch {
    signOut();
    return null;
  }
}

/** Forgets the token. */
export function signOut() {
  who = null;
  sessionStorage.removeItem(KEY);
}
