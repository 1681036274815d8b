/**
 * Decides which validate answers are signed and with which key, as the
 * cloud does (netlicensing-api.md §5.1): XML answers to API-key callers whose
 * token carries a `privateKey`. An operator key (`--signing.key`) signs every
 * XML validate answer that has no token key of its own. Parsed token keys are
 * cached per token so the hot path does not re-parse PEM on every request.
 */
import type { KeyObject } from 'node:crypto';
import type { Envelope } from '../core/envelope.ts';
import { signResponse, signingKeyFromToken, TOKEN_PRIVATE_KEY, type SigningAlgorithm } from '../wire/xmldsig.ts';
import type { Principal } from './auth.ts';

export interface SignerOptions {
  operatorKey?: KeyObject;
  algorithm: SigningAlgorithm;
}

const TOKEN_KEY_CACHE_MAX = 256;

/**
 * The signer of a caller's XML validate answers, or undefined when they are not signed (no token
 * key, no operator key): the app reuses unsigned answers (answer-cache.ts), never signed ones.
 */
export type XmlSignerFor = (principal: Principal) => ((envelope: Envelope) => string) | undefined;

export function createSigner(options: SignerOptions): XmlSignerFor {
  const tokenKeys = new Map<string, KeyObject | undefined>();
  const keyOfToken = (principal: Principal): KeyObject | undefined => {
    if (principal.kind !== 'apiKey') return undefined;
    const pem = principal.token.props[TOKEN_PRIVATE_KEY];
    if (!pem) return undefined;
    // The cache key includes the key text: a re-import with a new key takes effect at once.
    const cacheKey = `${principal.token.number}\u001f${pem}`;
    if (!tokenKeys.has(cacheKey)) {
      if (tokenKeys.size >= TOKEN_KEY_CACHE_MAX) tokenKeys.clear();
      tokenKeys.set(cacheKey, signingKeyFromToken(principal.token.props));
    }
    return tokenKeys.get(cacheKey);
  };
  return (principal) => {
    const key = keyOfToken(principal) ?? options.operatorKey;
    return key ? (envelope) => signResponse(envelope, key, options.algorithm) : undefined;
  };
}
