/**
 * The only file that talks to Redis: the shared validation cache of
 * run-agent (`--cache.type=redis`). Uses Bun's built-in RedisClient, so no
 * dependency is added. Keys are `<--cache.key-prefix>answer:<sha256>` and
 * `<--cache.key-prefix>credential:<id>`, values JSON, expiry by Redis TTL
 * (PX) as the original agent does ("entry expiry uses Redis TTL").
 *
 * Every command has its own deadline and the offline queue is off: while
 * Redis is unreachable a read is a miss and a write is dropped at once, so
 * the cache can never make a client wait. Failures are logged at most once
 * per minute.
 */
import { RedisClient } from 'bun';
import { systemClock, type Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/log.ts';
import type { CachedAnswer, CredentialRecord, ProxyCache } from './cache.ts';

export interface RedisCacheOptions {
  host: string;
  port: number;
  password?: string;
  database: number;
  keyPrefix: string;
  ssl: boolean;
  /** Deadline per command and for connecting. */
  timeoutMs?: number;
  log: Logger;
  /** For spacing failure log lines; default the system clock. */
  clock?: Clock;
}

export const DEFAULT_REDIS_TIMEOUT_MS = 1_000;
const FAILURE_LOG_INTERVAL_MS = 60_000;

export function redisUrl(options: Pick<RedisCacheOptions, 'host' | 'port' | 'password' | 'database' | 'ssl'>): string {
  const host = options.host.includes(':') && !options.host.startsWith('[') ? `[${options.host}]` : options.host;
  const auth = options.password !== undefined && options.password !== '' ? `:${encodeURIComponent(options.password)}@` : '';
  return `${options.ssl ? 'rediss' : 'redis'}://${auth}${host}:${options.port}/${options.database}`;
}

export class RedisProxyCache implements ProxyCache {
  readonly description: string;
  private readonly client: RedisClient;
  private readonly timeoutMs: number;
  private lastFailureLogMs = Number.NEGATIVE_INFINITY;

  private constructor(private readonly options: RedisCacheOptions) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    this.description = `redis ${options.ssl ? 'rediss' : 'redis'}://${options.host}:${options.port}/${options.database} (key prefix "${options.keyPrefix}")`;
    this.client = new RedisClient(redisUrl(options), {
      connectionTimeout: this.timeoutMs,
      enableOfflineQueue: false,
      autoReconnect: true,
      tls: options.ssl,
    });
  }

  /** Connects and checks the connection with PING; throws Error with a user message. */
  static async connect(options: RedisCacheOptions): Promise<RedisProxyCache> {
    const cache = new RedisProxyCache(options);
    try {
      await cache.withDeadline(cache.client.connect());
      await cache.withDeadline(cache.client.send('PING', []));
    } catch (error) {
      cache.client.close();
      const hint = options.password ? ' (check --cache.password)' : '';
      throw new Error(`cannot use Redis at ${options.host}:${options.port}: ${(error as Error).message}${hint}`, { cause: error });
    }
    return cache;
  }

  private withDeadline<T>(promise: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
  }

  private failed(what: string, error: unknown): void {
    const now = (this.options.clock ?? systemClock).nowMs();
    if (now - this.lastFailureLogMs < FAILURE_LOG_INTERVAL_MS) return;
    this.lastFailureLogMs = now;
    this.options.log.warn(`validation cache (Redis): ${what} failed: ${(error as Error)?.message ?? String(error)}`);
  }

  private async getJson<T>(key: string): Promise<T | undefined> {
    try {
      const text = await this.withDeadline(this.client.get(this.options.keyPrefix + key));
      return text === null ? undefined : (JSON.parse(text) as T);
    } catch (error) {
      this.failed(`GET ${key.split(':')[0]}`, error);
      return undefined;
    }
  }

  private async putJson(key: string, value: unknown, ttlMs: number): Promise<void> {
    try {
      if (value === undefined) await this.withDeadline(this.client.del(this.options.keyPrefix + key));
      else await this.withDeadline(this.client.set(this.options.keyPrefix + key, JSON.stringify(value), 'PX', Math.max(1, Math.round(ttlMs))));
    } catch (error) {
      this.failed(`SET ${key.split(':')[0]}`, error);
    }
  }

  getAnswer(key: string): Promise<CachedAnswer | undefined> {
    return this.getJson(`answer:${key}`);
  }

  putAnswer(key: string, answer: CachedAnswer, ttlMs: number): Promise<void> {
    return this.putJson(`answer:${key}`, answer, ttlMs);
  }

  getCredential(id: string): Promise<CredentialRecord | undefined> {
    return this.getJson(`credential:${id}`);
  }

  putCredential(id: string, record: CredentialRecord | undefined, ttlMs: number): Promise<void> {
    return this.putJson(`credential:${id}`, record, ttlMs);
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
