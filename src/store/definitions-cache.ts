/**
 * An in-memory cache of definitions for the validate hot path: a licensee's
 * product, modules and templates (shared by all licensees of the product),
 * its licenses, and API-key tokens. Reading them from LMDB costs a few dozen
 * decodes per request; the cache turns that into one version check.
 *
 * Correctness: every change of the served definitions bumps
 * `definitionsVersion` in the same transaction — an import's switch to its
 * staged generation, a proxy refresh, importTransaction — and an import may
 * run in another process; a changed version drops the whole cache, so a
 * request never mixes definitions of two imports. The version and what an
 * entry is made of are read in one event-loop turn, so from one read
 * snapshot of the store (lmdb-js renews it between turns; see asset-store.ts,
 * "generations").
 * Runtime state is never cached here: it is read per request.
 */
import type { Entity } from '../core/entities.ts';
import type { LicenseeAssets, ProductAssets } from '../core/validate-types.ts';
import { createBoundedCache, type BoundedCache } from '../platform/bounded-cache.ts';
import type { AssetStore } from './asset-store.ts';

export interface DefinitionsReader {
  resolveLicensee(numberOrAlias: string): Entity | undefined;
  loadLicenseeAssets(licensee: Entity): LicenseeAssets | undefined;
  token(number: string): Entity | undefined;
}

export function createDefinitionsCache(store: AssetStore, options: { entriesMax?: number } = {}): DefinitionsReader {
  // Bounded per kind, least recently used out first: a working set larger than the bound keeps
  // its busiest licensees. `false` means known not to exist, so a miss is not read again either.
  const max = options.entriesMax ?? 20_000;
  let version = -1;
  const licensees = createBoundedCache<string, Entity | false>(max);
  const assets = createBoundedCache<string, LicenseeAssets | false>(max);
  const tokens = createBoundedCache<string, Entity | false>(max);
  // A product's modules and templates, shared by the assets of all its licensees: a licensee not
  // in the cache costs its licenses to read (1.2 µs over 40,000 licensees, measured), not its
  // product's as well (a whole loadLicenseeAssets: 29.3 µs).
  const products = createBoundedCache<string, ProductAssets | false>(1_000);

  const current = (): void => {
    const now = store.definitionsVersion();
    if (now === version) return;
    version = now;
    licensees.clear();
    assets.clear();
    tokens.clear();
    products.clear();
  };
  const cached = <V extends {}>(cache: BoundedCache<string, V | false>, key: string, read: () => V | undefined): V | undefined => {
    current();
    let value = cache.get(key);
    if (value === undefined) cache.set(key, (value = read() ?? false));
    return value === false ? undefined : value;
  };

  return {
    resolveLicensee: (numberOrAlias) => cached(licensees, numberOrAlias, () => store.resolveLicensee(numberOrAlias)),
    loadLicenseeAssets: (licensee) =>
      cached(assets, licensee.number, () => {
        const productNumber = licensee.props['productNumber'];
        const shared = productNumber === undefined ? undefined : cached(products, productNumber, () => store.loadProductAssets(productNumber));
        // Read in the same turn as the version check in `cached`; `shared` was read at that same version.
        return shared && { ...shared, licensee, licenses: store.children('License', licensee.number) };
      }),
    token: (number) => cached(tokens, number, () => store.getEntity('Token', number)),
  };
}
