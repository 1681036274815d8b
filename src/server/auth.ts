/**
 * Authentication as the cloud does it: HTTP Basic with either the vendor's
 * username/password (checked against the salted hash an export carried) or
 * the literal user `apiKey` and an API key imported from the cloud.
 *
 * - No Authorization header: 401 with `WWW-Authenticate: Basic` (the C#
 *   client sends credentials only after this challenge), unless the operator
 *   explicitly allowed anonymous access.
 * - Wrong credentials: 401 as well (clients treat any 4xx alike).
 * - Valid credentials without the right: 403 (a licensee-scoped API key used
 *   for another licensee, or an ROLE_APIKEY_LICENSEE key reading entities).
 */
import type { Entity } from '../core/entities.ts';
import { isActive } from '../core/entities.ts';
import { verifyCredential, type CredentialHash } from '../platform/credentials.ts';

export type Principal =
  | { kind: 'vendor'; user: string }
  | { kind: 'apiKey'; token: Entity; role: string; licenseeNumber?: string }
  | { kind: 'anonymous' };

export type AuthResult = { ok: true; principal: Principal } | { ok: false; status: 401; message: string };

export interface CredentialSource {
  token(number: string): Entity | undefined;
  vendorCredentials(): CredentialHash | undefined;
}

/** Credentials as a database holds them: its API-key tokens and the vendor's credential hash. */
export function storeCredentialSource(store: {
  getEntity(kind: 'Token', number: string): Entity | undefined;
  meta(): { vendorCredentials?: CredentialHash };
}): CredentialSource {
  return { token: (number) => store.getEntity('Token', number), vendorCredentials: () => store.meta().vendorCredentials };
}

export const REALM = 'NetLicensing Agent';
/** Roles allowed to read entities (netlicensing-api.md §1.3); ROLE_APIKEY_LICENSEE may only validate. */
const READ_ROLES = new Set([
  'ROLE_APIKEY_ANALYTICS',
  'ROLE_APIKEY_OPERATION',
  'ROLE_APIKEY_MAINTENANCE',
  'ROLE_APIKEY_ADMIN',
]);
const VENDOR_CACHE_MAX = 1024;

export interface Authenticator {
  /** A promise only where a vendor password must be hashed (not for API keys, nor for a header that passed before). */
  authenticate(authorization: string | undefined | null): AuthResult | Promise<AuthResult>;
}

export interface AuthenticatorOptions {
  allowAnonymous: boolean;
  /** How a vendor password is checked against its hash (tests hold it open); default verifyCredential. */
  verify?: (stored: CredentialHash, user: string, password: string) => Promise<boolean>;
}

export function createAuthenticator(source: CredentialSource, options: AuthenticatorOptions): Authenticator {
  const verify = options.verify ?? verifyCredential;
  // scrypt is deliberately slow; remember headers that passed, keyed by the stored hash
  // so that a re-import with new credentials invalidates them.
  let cacheFor = '';
  const vendorCache = new Set<string>();
  // One hash at a time, on a worker thread: guesses sent in bulk take at most one core, and never
  // the event loop (synchronous, 40 guesses held a validate sent before them for 1.3 s).
  let hashing: Promise<unknown> = Promise.resolve();

  const checkVendor = (user: string, password: string, header: string): boolean | Promise<boolean> => {
    const stored = source.vendorCredentials();
    if (!stored || user !== stored.user) return false;
    if (cacheFor !== stored.hash) {
      vendorCache.clear();
      cacheFor = stored.hash;
    }
    if (vendorCache.has(header)) return true;
    // A check that fails to run (scrypt's memory) rejects: the request gets a 500, and nothing is
    // remembered for the header, which a refusal would have been until the next import.
    const checked = hashing.then(() => verify(stored, user, password));
    hashing = checked.catch(() => undefined);
    return checked.then((ok) => {
      if (ok && cacheFor === stored.hash) {
        if (vendorCache.size >= VENDOR_CACHE_MAX) vendorCache.clear();
        vendorCache.add(header);
      }
      return ok;
    });
  };

  return {
    authenticate(authorization) {
      if (!authorization) {
        return options.allowAnonymous
          ? { ok: true, principal: { kind: 'anonymous' } }
          : { ok: false, status: 401, message: 'Authentication is required: use HTTP Basic with apiKey:<key> or vendor credentials' };
      }
      const match = /^\s*Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(authorization);
      if (!match) return { ok: false, status: 401, message: 'Unsupported authorization scheme: use HTTP Basic' };
      const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon === -1) return { ok: false, status: 401, message: 'Malformed Basic credentials' };
      const user = decoded.slice(0, colon);
      const password = decoded.slice(colon + 1);
      if (user === 'apiKey') {
        const token = source.token(password);
        if (!token || !isActive(token) || token.props['tokenType'] !== 'APIKEY') {
          return { ok: false, status: 401, message: 'Invalid API key' };
        }
        const licenseeNumber = token.props['licenseeNumber'];
        return {
          ok: true,
          principal: {
            kind: 'apiKey',
            token,
            role: token.props['apiKeyRole'] ?? 'ROLE_APIKEY_LICENSEE',
            ...(licenseeNumber ? { licenseeNumber } : {}),
          },
        };
      }
      const vendor = checkVendor(user, password, match[1]!);
      const outcome = (ok: boolean): AuthResult => (ok ? { ok: true, principal: { kind: 'vendor', user } } : { ok: false, status: 401, message: 'Bad credentials' });
      return typeof vendor === 'boolean' ? outcome(vendor) : vendor.then(outcome);
    },
  };
}

/** The refusal's text when a licensee-scoped API key asks for another licensee (403). */
export function validateDeniedMessage(licenseeNumber: string): string {
  return `This API key may not validate licensee '${licenseeNumber}'`;
}

/** May this principal validate the given licensee? */
export function mayValidate(principal: Principal, licenseeNumber: string): boolean {
  if (principal.kind !== 'apiKey') return true;
  return principal.licenseeNumber === undefined || principal.licenseeNumber === licenseeNumber;
}

/** Who may read entities (mayRead), in words: the admin listener's 401 and log line beyond loopback. */
export const STORE_ADMIN_CREDENTIALS = "the vendor's credentials or an API key that may read entities";

/** The 401's text for a read without credentials: the entities include the imported API keys, live credentials for the cloud. */
export const ANONYMOUS_READ_REFUSED = 'Reading entities needs credentials: anonymous access covers validate only';

/** May this principal read entities (GET calls other than validate)? Anonymous access (--allow-anonymous) covers validate only. */
export function mayRead(principal: Principal): boolean {
  if (principal.kind === 'apiKey') return principal.licenseeNumber === undefined && READ_ROLES.has(principal.role);
  return principal.kind === 'vendor';
}
