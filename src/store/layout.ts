/**
 * Where the asset store keeps definitions (asset-store.ts has the whole layout): the
 * sub-databases of a definitions generation, the meta key that says which generation is served,
 * and the keys of definitions and of their parents' indexes.
 */
import { createHash } from 'node:crypto';
import { ENTITY_KINDS, PARENT_PROPERTY, type Entity, type EntityKind } from '../core/entities.ts';
import type { KvDatabase } from './lmdb.ts';

/** The definition sub-databases of one generation. */
export interface Generation {
  def: Record<EntityKind, KvDatabase<Entity>>;
  rel: Record<EntityKind, KvDatabase<string>>;
  alias: KvDatabase<string>;
}

/** Meta key of the served definitions generation (absent: 0). */
export const GENERATION_KEY = 'definitionsGeneration';

/** The sub-database names of generation `g`: def:<Kind>, rel:<Kind>, alias (generation 1: def1:, rel1:, alias1). */
export function generationNames(g: 0 | 1): { def: Record<EntityKind, string>; rel: Record<EntityKind, string>; alias: string } {
  const suffix = g === 0 ? '' : String(g);
  const byKind = (prefix: string) => Object.fromEntries(ENTITY_KINDS.map((kind) => [kind, `${prefix}${suffix}:${kind}`])) as Record<EntityKind, string>;
  return { def: byKind('def'), rel: byKind('rel'), alias: `alias${suffix}` };
}

/** LMDB keys are limited to 1978 bytes; longer numbers are keyed by their SHA-256. */
const KEY_PART_BYTES_MAX = 480;
// U+001F cannot occur in XML text, so it cannot occur in a number; lower control
// characters are special to lmdb's key encoding (ordered-binary).
const SEPARATOR = '\u001f';

/** The key of an entity number (or a part of a key). */
export function keyPart(value: string): string {
  // A UTF-16 code unit takes at most 3 UTF-8 bytes: short numbers need no count.
  if (value.length * 3 <= KEY_PART_BYTES_MAX || Buffer.byteLength(value, 'utf8') <= KEY_PART_BYTES_MAX) return value;
  return `${HASHED_KEY_PREFIX}${createHash('sha256').update(value).digest('hex')}`;
}

const HASHED_KEY_PREFIX = '#sha256:';

/** A number spelled as keyPart keys a long one: it would share that number's key (the import refuses it). */
export function looksLikeHashedKey(value: string): boolean {
  return value.length === HASHED_KEY_PREFIX.length + 64 && value.startsWith(HASHED_KEY_PREFIX) && /^[0-9a-f]{64}$/.test(value.slice(HASHED_KEY_PREFIX.length));
}

/** The number of an entity's parent (PARENT_PROPERTY), if its kind has one. */
export function parentOf(entity: Entity): string | undefined {
  const property = PARENT_PROPERTY[entity.kind];
  return property === undefined ? undefined : entity.props[property];
}

/** The key of a child in its parent's index (rel:<Kind>). */
export function relKey(parent: string, number: string): string {
  return `${keyPart(parent)}${SEPARATOR}${keyPart(number)}`;
}

/** The range of a parent's children in an index. */
export function relRange(parent: string): { start: string; end: string } {
  return { start: `${keyPart(parent)}${SEPARATOR}`, end: `${keyPart(parent)}\u0020` };
}
