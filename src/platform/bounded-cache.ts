/**
 * A map with at most `max` entries, least recently used out first: the one
 * place that uses `lru-cache` (the answer cache, src/server/answer-cache.ts,
 * and the definitions cache, src/store/definitions-cache.ts). `get` counts as
 * a use. Values may not be undefined or null (lru-cache's rule): a cached
 * "absent" needs a value of its own.
 */
import { LRUCache } from 'lru-cache';

export interface BoundedCache<K, V> {
  get(key: K): V | undefined;
  set(key: K, value: V): void;
  clear(): void;
  readonly size: number;
}

export function createBoundedCache<K extends {}, V extends {}>(max: number): BoundedCache<K, V> {
  const cache = new LRUCache<K, V>({ max });
  return {
    get: (key) => cache.get(key),
    set: (key, value) => void cache.set(key, value),
    clear: () => cache.clear(),
    get size() {
      return cache.size;
    },
  };
}
