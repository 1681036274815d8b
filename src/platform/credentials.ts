/**
 * Salted hashes of the vendor's password, so that transfer files and the
 * database never hold it in clear. scrypt (N=2^14, r=8, p=1, 32 bytes) from
 * node:crypto: deliberately slow to guess, which is why the server caches
 * successful checks per Authorization header instead of hashing per request,
 * and hashes every check on a worker thread (verifyCredential).
 */
import { randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';

export interface CredentialHash {
  user: string;
  /** Hex, 16 random bytes. */
  salt: string;
  /** Hex scrypt output. */
  hash: string;
}

const SCRYPT = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const KEY_BYTES = 32;

export function hashCredential(user: string, password: string, salt = randomBytes(16).toString('hex')): CredentialHash {
  const hash = scryptSync(password, Buffer.from(salt, 'hex'), KEY_BYTES, SCRYPT).toString('hex');
  return { user, salt, hash };
}

/**
 * Checks a password against its hash on a worker thread: a served request must not hold the event
 * loop for a hash (~30 ms here), or guesses at the vendor's password stall every validate meanwhile.
 */
export function verifyCredential(stored: CredentialHash, user: string, password: string): Promise<boolean> {
  if (user !== stored.user) return Promise.resolve(false);
  const expected = Buffer.from(stored.hash, 'hex');
  return new Promise((resolve, reject) => {
    scrypt(password, Buffer.from(stored.salt, 'hex'), expected.length || KEY_BYTES, SCRYPT, (error, actual) => {
      if (error) reject(error);
      else resolve(expected.length === actual.length && timingSafeEqual(expected, actual));
    });
  });
}
