/**
 * An in-memory cache of definitions for the validate hot path: a licensee's
 * product, modules, templates and licenses, and API-key tokens. Reading them
 * from LMDB costs a few dozen decodes per request; the cache turns that into
 * one version check.
 *
 * Correctness: every change of the served definitions bumps
 * `definitionsVersion` in the same transaction — an import's switch to its
 * staged generation, a proxy refresh, importTransaction — and an import may
 * run in another process; a changed version drops the whole cache, so a
 * request never mixes definitions of two imports. The version and each
 * entry's definitions are read in one read snapshot of the store (one
 * synchronous call; see asset-store.ts, "generations").
 * Runtime state is never cached here: it is read per request.
 */
import type { Entity } from '../core/entities.ts';
import type { LicenseeAssets } from '../core/validate-types.ts';
import type { AssetStore } from './asset-store.ts';

export interface DefinitionsReader {
  resolveLicensee(numberOrAlias: string): Entity | undefined;
  loadLicenseeAssets(licensee: Entity): LicenseeAssets | undefined;
  token(number: string): Entity | undefined;
}

export function createDefinitionsCache(store: AssetStore, options: { entriesMax?: number } = {}): DefinitionsReader {
  const entriesMax = options.entriesMax ?? 20_000;
  let version = -1;
  const licensees = new Map<string, Entity | null>();
  const assets = new Map<string, LicenseeAssets | null>();
  const tokens = new Map<string, Entity | null>();

  const current = (): void => {
    const now = store.definitionsVersion();
    if (now === version) return;
    version = now;
    licensees.clear();
    assets.clear();
    tokens.clear();
  };
  // Bounded: when full, start over (simple and good enough for a working set that fits).
  const remember = <V>(map: Map<string, V>, key: string, value: V): V => {
    if (map.size >= entriesMax) map.clear();
    map.set(key, value);
    return value;
  };

  return {
    resolveLicensee(numberOrAlias) {
      current();
      const hit = licensees.get(numberOrAlias);
      if (hit !== undefined) return hit ?? undefined;
      return remember(licensees, numberOrAlias, store.resolveLicensee(numberOrAlias) ?? null) ?? undefined;
    },
    loadLicenseeAssets(licensee) {
      current();
      const hit = assets.get(licensee.number);
      if (hit !== undefined) return hit ?? undefined;
      return remember(assets, licensee.number, store.loadLicenseeAssets(licensee) ?? null) ?? undefined;
    },
    token(number) {
      current();
      const hit = tokens.get(number);
      if (hit !== undefined) return hit ?? undefined;
      return remember(tokens, number, store.getEntity('Token', number) ?? null) ?? undefined;
    },
  };
}
