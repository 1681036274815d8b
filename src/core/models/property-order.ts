/**
 * The cloud's property order inside a validation item, reproduced.
 *
 * Every machine-produced validation sample (the ns2-prefixed wiki samples, the
 * signed Isb-DEMO response, the 2021 Auth0 and 2016 C++ JSON captures) lists
 * `productModuleNumber` first and then the remaining properties in the
 * iteration order of a `java.util.HashMap<String, …>`: buckets by
 * `String.hashCode()` (spread as `h ^ (h >>> 16)`, table of 16 that doubles
 * past a 0.75 load), insertion order inside a bucket. Lists of an item and
 * properties of a list follow the same order. Only the hand-written wiki
 * samples (no `ns2:` prefix, e.g. floating.md, subscription.md) differ.
 * Parsers do not care, but byte-identical output is what signed responses and
 * fixture comparisons need, so we emit the same order.
 */

/** `java.lang.String.hashCode()` over UTF-16 code units, as a 32-bit int. */
export function javaStringHash(text: string): number {
  let hash = 0;
  for (let i = 0; i < text.length; i++) hash = (Math.imul(31, hash) + text.charCodeAt(i)) | 0;
  return hash;
}

/** Table size of a HashMap that received `entries` distinct keys one by one (default capacity 16, load 0.75). */
export function javaHashMapCapacity(entries: number): number {
  let capacity = 16;
  while (entries > capacity * 0.75) capacity *= 2;
  return capacity;
}

function computeRanks(keys: readonly string[]): Map<string, number> {
  const distinct = [...new Set(keys)];
  const mask = javaHashMapCapacity(distinct.length) - 1;
  const ordered = distinct
    .map((key, insertion) => {
      const h = javaStringHash(key);
      return { key, bucket: (h ^ (h >>> 16)) & mask, insertion };
    })
    .sort((a, b) => a.bucket - b.bucket || a.insertion - b.insertion);
  return new Map(ordered.map((entry, rank) => [entry.key, rank]));
}

/**
 * Indices of `keys` in the iteration order of a HashMap into which they were
 * put in the given order (duplicates count once, keep their order):
 * `javaHashMapOrder(keys).map((i) => values[i])` orders values named by
 * `keys`. Memoised by the exact key sequence, which on the validate hot path
 * is one of a few per module, so no per-request sort. The memo is a trie of
 * Maps walked key by key: no lookup string is built per call (building one
 * cost more than the rest of the item). Bounded.
 */
export function javaHashMapOrder(keys: readonly string[]): readonly number[] {
  let node = ORDER_TRIE;
  for (const key of keys) {
    let next = node.next.get(key);
    if (next === undefined) {
      if (orderTrieNodes >= ORDER_TRIE_NODES_MAX) clearOrderTrie();
      next = { next: new Map() };
      orderTrieNodes += 1;
      node.next.set(key, next);
    }
    node = next;
  }
  if (node.order === undefined) {
    const ranks = computeRanks(keys);
    node.order = keys.map((_, i) => i).sort((a, b) => (ranks.get(keys[a]!) ?? 0) - (ranks.get(keys[b]!) ?? 0) || a - b);
  }
  return node.order;
}

interface OrderTrieNode {
  next: Map<string, OrderTrieNode>;
  order?: readonly number[];
}

const ORDER_TRIE_NODES_MAX = 65_536;
const ORDER_TRIE: OrderTrieNode = { next: new Map() };
let orderTrieNodes = 0;

function clearOrderTrie(): void {
  ORDER_TRIE.next.clear();
  ORDER_TRIE.order = undefined;
  orderTrieNodes = 0;
}
