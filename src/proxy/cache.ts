/**
 * The validation cache of run-agent: the last upstream answer per
 * (licensee, format, parameters), kept until the answer's own `ttl`, and
 * the credentials the upstream accepted (as salted scrypt hashes). It is
 * what lets an agent answer during an outage for a licensee whose assets it
 * does not hold yet, and lets several agents behind one load balancer
 * share what each of them learnt (`--cache.type=redis`).
 *
 * `local` keeps the entries in the agent's own database (run-agent records
 * of the store); `redis` is in redis-cache.ts. Cache failures never fail a
 * request: a read that fails is a miss, a write that fails is dropped.
 */
import type { Clock } from '../platform/clock.ts';
import type { AssetStore } from '../store/asset-store.ts';

export interface CachedAnswer {
  status: number;
  contentType: string;
  /** The upstream's body bytes, base64. */
  body: string;
}

/** A credential the upstream accepted: salted scrypt hash (src/platform/credentials.ts). */
export interface CredentialRecord {
  user: string;
  salt: string;
  hash: string;
  /** API keys only: licensees the upstream let this key validate. */
  licensees?: string[];
}

export interface ProxyCache {
  /** For the start-up log line. */
  readonly description: string;
  getAnswer(key: string): Promise<CachedAnswer | undefined>;
  putAnswer(key: string, answer: CachedAnswer, ttlMs: number): Promise<void>;
  getCredential(id: string): Promise<CredentialRecord | undefined>;
  /** `undefined` removes the record (the upstream refused the credential). */
  putCredential(id: string, record: CredentialRecord | undefined, ttlMs: number): Promise<void>;
  close(): Promise<void>;
}

/** How long a remembered credential may authenticate local answers without being seen upstream again. */
export const CREDENTIAL_TTL_MS = 7 * 86_400_000;

interface Expiring<T> {
  expiresAtMs: number;
  value: T;
}

const ANSWER = 'answer:';
const CREDENTIAL = 'credential:';

/** The cache inside the agent's database (default, `--cache.type=local`). */
export class LocalProxyCache implements ProxyCache {
  readonly description = 'local (the agent database)';

  constructor(
    private readonly store: AssetStore,
    private readonly clock: Clock,
  ) {}

  private read<T>(key: string): T | undefined {
    const entry = this.store.proxyValue(key) as Expiring<T> | undefined;
    if (entry === undefined || entry.expiresAtMs <= this.clock.nowMs()) return undefined;
    return entry.value;
  }

  private write<T>(key: string, value: T | undefined, ttlMs: number): Promise<void> {
    const entry: Expiring<T> | undefined = value === undefined ? undefined : { expiresAtMs: this.clock.nowMs() + ttlMs, value };
    return this.store.putProxyValue(key, entry);
  }

  async getAnswer(key: string): Promise<CachedAnswer | undefined> {
    return this.read<CachedAnswer>(ANSWER + key);
  }

  putAnswer(key: string, answer: CachedAnswer, ttlMs: number): Promise<void> {
    return this.write(ANSWER + key, answer, ttlMs);
  }

  async getCredential(id: string): Promise<CredentialRecord | undefined> {
    return this.read<CredentialRecord>(CREDENTIAL + id);
  }

  putCredential(id: string, record: CredentialRecord | undefined, ttlMs: number): Promise<void> {
    return this.write(CREDENTIAL + id, record, ttlMs);
  }

  /**
   * Removes expired entries (Redis expires its own); returns how many. A purge asked for while one
   * runs gets that one's result (the timer does not stack them up behind a slow disk).
   */
  purge(): Promise<number> {
    this.purging ??= this.purgeExpired().finally(() => {
      this.purging = undefined;
    });
    return this.purging;
  }

  private purging: Promise<number> | undefined;

  private async purgeExpired(): Promise<number> {
    const now = this.clock.nowMs();
    const expired: string[] = [];
    for (const prefix of [ANSWER, CREDENTIAL]) {
      for (const key of this.store.proxyValueKeys(prefix)) {
        const entry = this.store.proxyValue(key) as Expiring<unknown> | undefined;
        if (entry !== undefined && entry.expiresAtMs <= now) expired.push(key);
      }
    }
    // Checked again in the commit: an entry written anew meanwhile stays.
    return this.store.removeProxyValues(expired, (entry) => (entry as Expiring<unknown>).expiresAtMs <= now);
  }

  async close(): Promise<void> {}
}
