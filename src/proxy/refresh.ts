/**
 * Keeps the local copy of the proxied licensees' assets fresh, so that the
 * agent can answer from it when the upstream cannot be reached.
 *
 * After a successful upstream validate of licensee L the proxy asks for a
 * refresh of L; it runs off the request path, at most once per interval per
 * licensee (a failed attempt counts too) and never twice at the same time.
 * A refresh reads L's entities through the export path
 * (src/export/export-assets.ts: product, modules, templates, licensee,
 * licenses, API keys) and applies them in ONE store transaction:
 *
 * Merge, with the import's rules (src/importer/import-transfer.ts):
 * definitions are replaced; L's licenses and API keys the upstream no
 * longer has are removed, as are modules and templates of L's product and
 * vendor-wide API keys; other licensees' entities stay. Unlike import, a
 * changed parent, licensing model or license type is not refused: the
 * upstream is the authority here (as import --force); it is logged.
 *
 * Reconciliation: usage the agent booked while offline (runtime
 * `quantityUsed`) is added on top of the imported licenses' usedQuantity.
 * Once such a request has been replayed and acknowledged, the upstream's
 * usedQuantity includes it; a refresh that started after the
 * acknowledgement therefore books the opposite quantity (journaled like
 * any runtime change) and deletes the replay entry, so the usage is counted
 * once. Entries acknowledged while the refresh was running wait for the next one.
 * Other runtime state needs no reconciliation: imported licenses of a
 * template supersede the ones the agent created, imported start dates
 * supersede the ones it set, and its own floating sessions expire.
 */
import type { Entity } from '../core/entities.ts';
import type { RuntimeEvent } from '../core/runtime.ts';
import { ExportConflictError, exportAssets, type AssetSource } from '../export/export-assets.ts';
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/log.ts';
import type { AssetStore, ImportTransaction, RefreshTransaction } from '../store/asset-store.ts';
import type { ProxyStats } from './stats.ts';

export const DEFAULT_REFRESH_INTERVAL_MS = 60_000;
const RATE_LIMIT_ENTRIES_MAX = 100_000;

export interface MergeReport {
  put: number;
  removed: number;
  /** Changes import would have called conflicts. */
  notes: string[];
}

/** Applies one licensee's fetched entities (export order) with the import's merge rules. */
export function mergeRefreshedAssets(tx: ImportTransaction, licenseeNumber: string, entities: readonly Entity[]): MergeReport {
  const report: MergeReport = { put: 0, removed: 0, notes: [] };
  const fetched = new Map<string, Set<string>>();
  const has = (kind: string, number: string) => fetched.get(kind)?.has(number) ?? false;
  for (const entity of entities) {
    let numbers = fetched.get(entity.kind);
    if (!numbers) fetched.set(entity.kind, (numbers = new Set()));
    numbers.add(entity.number);
  }
  const product = entities.find((entity) => entity.kind === 'Product');

  for (const entity of entities) {
    const old = tx.get(entity.kind, entity.number);
    if (old) {
      for (const property of ['productNumber', 'productModuleNumber', 'licenseeNumber', 'licenseTemplateNumber', 'licensingModel', 'licenseType']) {
        if (old.props[property] !== undefined && old.props[property] !== entity.props[property]) {
          report.notes.push(`${entity.kind} "${entity.number}": ${property} changed from "${old.props[property]}" to "${entity.props[property] ?? ''}"`);
        }
      }
    }
    tx.put(entity);
    report.put++;
  }

  const remove = (kind: Entity['kind'], number: string) => {
    tx.remove(kind, number);
    report.removed++;
  };
  if (product) {
    const modules = tx.childNumbers('ProductModule', product.number);
    for (const module of modules) {
      for (const template of tx.childNumbers('LicenseTemplate', module)) {
        if (!has('LicenseTemplate', template)) remove('LicenseTemplate', template);
      }
      if (!has('ProductModule', module)) remove('ProductModule', module);
    }
  }
  for (const license of tx.childNumbers('License', licenseeNumber)) {
    if (!has('License', license)) remove('License', license);
  }
  for (const token of tx.childNumbers('Token', licenseeNumber)) {
    if (!has('Token', token)) remove('Token', token);
  }
  const staleVendorKeys: string[] = [];
  for (const token of tx.entities('Token')) {
    if (token.props['licenseeNumber'] === undefined && !has('Token', token.number)) staleVendorKeys.push(token.number);
  }
  for (const token of staleVendorKeys) remove('Token', token);
  return report;
}

/**
 * Books back the usage of replay entries acknowledged up to `cursorAtStart`
 * (see the file comment) and deletes those entries; returns how many.
 */
export function reconcileReplayed(tx: RefreshTransaction, cursorAtStart: number): number {
  const back = new Map<string, number>();
  let reconciled = 0;
  for (const entry of tx.replayEntries()) {
    if (entry.seq > cursorAtStart) continue;
    for (const event of entry.events) {
      if (event.type === 'quantityUsed') back.set(event.licenseNumber, (back.get(event.licenseNumber) ?? 0) - event.quantity);
    }
    tx.dropReplayEntry(entry.seq);
    reconciled++;
  }
  const events: RuntimeEvent[] = [];
  for (const [licenseNumber, quantity] of back) {
    if (quantity !== 0) events.push({ type: 'quantityUsed', licenseNumber, quantity });
  }
  tx.appendRuntimeEvents(events);
  return reconciled;
}

/**
 * `source` with its listing of the vendor's API keys shared by every refresh for `ttlMs` (and by
 * refreshes running at the same time): exportAssets lists them all for each licensee it exports
 * (its phase 4: one request per 100 keys), so refreshing K licensees a minute listed every key K
 * times. A key removed upstream leaves the local copy up to `ttlMs` later than it would have.
 * A listing that fails is not kept. Everything else goes to `source` as it is.
 */
export function sharedApiKeyListing(source: AssetSource, clock: Clock, ttlMs: number): AssetSource {
  let cached: { atMs: number; keys: Entity[] } | undefined;
  let loading: Promise<Entity[]> | undefined;
  const load = (): Promise<Entity[]> =>
    (loading ??= (async () => {
      const keys: Entity[] = [];
      for await (const key of source.list('token', API_KEYS)) keys.push(key);
      cached = { atMs: clock.nowMs(), keys };
      return keys;
    })().finally(() => {
      loading = undefined;
    }));
  return {
    baseUrl: source.baseUrl,
    get: (resource, number) => source.get(resource, number),
    list(resource, criteria) {
      const apiKeys = resource === 'token' && criteria !== undefined && Object.keys(criteria).length === 1 && criteria['tokenType'] === 'APIKEY';
      if (!apiKeys) return source.list(resource, criteria);
      return (async function* () {
        yield* cached !== undefined && clock.nowMs() - cached.atMs < ttlMs ? cached.keys : await load();
      })();
    },
  };
}

const API_KEYS = { tokenType: 'APIKEY' };

export interface RefresherDeps {
  store: AssetStore;
  source: AssetSource;
  clock: Clock;
  log: Logger;
  stats: ProxyStats;
  intervalMs: number;
}

export class AssetRefresher {
  private readonly lastStartMs = new Map<string, number>();
  private readonly running = new Map<string, Promise<boolean>>();

  /** The upstream, with one listing of its API keys per interval for all refreshes (sharedApiKeyListing). */
  private readonly source: AssetSource;

  constructor(private readonly deps: RefresherDeps) {
    this.source = sharedApiKeyListing(deps.source, deps.clock, deps.intervalMs);
  }

  /**
   * Starts a refresh of the licensee unless one is running or one started
   * within the interval (`force` ignores the interval). Returns the running
   * refresh (true when it succeeded), or undefined when none was started.
   */
  /** Would request(licenseeNumber) start a refresh now? */
  isDue(licenseeNumber: string): boolean {
    if (this.running.has(licenseeNumber)) return false;
    const last = this.lastStartMs.get(licenseeNumber);
    return last === undefined || this.deps.clock.nowMs() - last >= this.deps.intervalMs;
  }

  request(licenseeNumber: string, force = false): Promise<boolean> | undefined {
    if (this.running.has(licenseeNumber)) return force ? this.running.get(licenseeNumber) : undefined;
    const now = this.deps.clock.nowMs();
    const last = this.lastStartMs.get(licenseeNumber);
    if (!force && last !== undefined && now - last < this.deps.intervalMs) return undefined;
    if (this.lastStartMs.size >= RATE_LIMIT_ENTRIES_MAX) this.lastStartMs.clear();
    this.lastStartMs.set(licenseeNumber, now);
    const run = this.run(licenseeNumber).finally(() => this.running.delete(licenseeNumber));
    this.running.set(licenseeNumber, run);
    return run;
  }

  private async run(licenseeNumber: string): Promise<boolean> {
    const { store, clock, log, stats } = this.deps;
    const source = this.source;
    // Acknowledgements up to here happened before the upstream was read (see reconcileReplayed).
    const cursorAtStart = store.replayCursor();
    try {
      const { entities } = exportAssets(source, {
        licensees: [licenseeNumber],
        // No transfer files here: numbers with "," or ";" are no problem for the local copy.
        force: true,
        onWarning: (message) => log.debug(`refresh of licensee "${licenseeNumber}": ${message}`),
      });
      const fetched: Entity[] = [];
      for await (const entity of entities) fetched.push(entity);
      const licensee = fetched.find((entity) => entity.kind === 'Licensee');
      if (!licensee) throw new Error('the upstream sent no Licensee');
      const { merged, reconciled } = await store.refreshLicensee(licensee.number, clock.nowMs(), (tx) => ({
        merged: mergeRefreshedAssets(tx, licensee.number, fetched),
        reconciled: reconcileReplayed(tx, cursorAtStart),
      }));
      stats.refreshes++;
      for (const note of merged.notes) log.warn(`refresh of licensee "${licensee.number}": ${note}`);
      log.debug(
        `refreshed licensee "${licensee.number}": ${merged.put} definitions, ${merged.removed} removed` +
          (reconciled > 0 ? `, ${reconciled} replayed requests reconciled` : ''),
      );
      return true;
    } catch (error) {
      stats.refreshFailures++;
      const message = error instanceof ExportConflictError ? error.message.replace(/\n\s*/g, ' ') : (error as Error).message;
      log.warn(`refresh of licensee "${licenseeNumber}" from the upstream failed: ${message}`);
      return false;
    }
  }

  get busy(): boolean {
    return this.running.size > 0;
  }

  /** Resolves when no refresh is running. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }
}
