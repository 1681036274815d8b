/**
 * What an operator wants to know about a database, read from the store:
 * files and permissions, last import, card mode, journal, per-module
 * floating seats and quantities, and per-licensee activity. Shared by
 * `--action=status`, the Prometheus metrics and the status page.
 *
 * Cost: definitions only change with an import, so the per-module capacity
 * (a scan of every license) is computed once per import and cached; runtime
 * state (sessions, booked quantities) is scanned on every call — it holds
 * only licensees the agent has changed something for.
 *
 * Inside the server every scan is cut into pages with a pause between them
 * (`ScanOptions`), so a scan of 100k licensees never holds up validate
 * requests for more than one page; the CLI reads in one go.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isActive, type Entity, type EntityKind } from '../core/entities.ts';
import type { Property } from '../core/envelope.ts';
import { licenseInt, type LicenseView, type WarningLevel } from '../core/models/common.ts';
import { resolveLicensingModel } from '../core/models/index.ts';
import { ownEntry, type RuntimeState } from '../core/runtime.ts';
import { validate } from '../core/validate.ts';
import type { AssetStore, ImportRecord } from '../store/asset-store.ts';
import { decodeCheckpointPayload } from '../card/checkpoint.ts';
import { newestTimeSeen } from './trusted-clock.ts';

export interface DatabaseFile {
  name: string;
  sizeBytes: number;
  /** Permission bits, e.g. 0o600. */
  mode: number;
}

export interface DatabaseFiles {
  path: string;
  /** Permission bits of the directory itself. */
  mode: number;
  files: DatabaseFile[];
  sizeBytes: number;
  /** Entries readable or writable by group or others (should be none: they hold licensing secrets). */
  loose: string[];
}

/** Files of the database directory; undefined when the directory does not exist. */
export function inspectDatabaseFiles(path: string): DatabaseFiles | undefined {
  let dirMode: number;
  try {
    const stat = statSync(path);
    if (!stat.isDirectory()) return undefined;
    dirMode = stat.mode & 0o777;
  } catch {
    return undefined;
  }
  const files: DatabaseFile[] = [];
  for (const name of readdirSync(path).sort()) {
    const stat = statSync(join(path, name));
    files.push({ name, sizeBytes: stat.size, mode: stat.mode & 0o777 });
  }
  const loose = [
    ...(dirMode & 0o077 ? [`${path} (${formatMode(dirMode)})`] : []),
    ...files.filter((f) => f.mode & 0o077).map((f) => `${join(path, f.name)} (${formatMode(f.mode)})`),
  ];
  return { path, mode: dirMode, files, sizeBytes: files.reduce((sum, f) => sum + f.sizeBytes, 0), loose };
}

export function formatMode(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

export interface ModuleSummary {
  number: string;
  name: string;
  productNumber: string;
  /** Modern model name, or the stored value when the agent does not support it. */
  licensingModel: string;
  active: boolean;
  /** Licensees of the module's product. */
  licensees: number;
  /** Σ maxSessions of active FLOATING licenses of active licensees. */
  floatingCapacity: number;
  /** Σ quantity of active QUANTITY licenses (Pay-per-Use modules). */
  quantityTotal: number;
  /** Σ usedQuantity the import carried for those licenses. */
  quantityUsedImported: number;
}

export interface DefinitionSummary {
  /** Which import this summary belongs to. */
  importKey: string;
  counts: { products: number; modules: number; templates: number; licensees: number; licenses: number; apiKeys: number };
  modules: Map<string, ModuleSummary>;
  /** Pay-per-Use license number → module number (to attribute booked quantities). */
  quantityLicenseModule: Map<string, string>;
}

function importKeyOf(record: ImportRecord | undefined): string {
  return record === undefined ? '' : `${record.exportId}@${record.importedAt}`;
}

/** How scans share the event loop: `pause` runs between pages. */
export interface ScanOptions {
  /** Entities read per page (and runtime records between pauses). */
  pageSize: number;
  pause: () => Promise<void> | void;
}

/** For a process that does nothing else (the CLI): one read, no pauses. */
export const SCAN_AT_ONCE: ScanOptions = { pageSize: Number.MAX_SAFE_INTEGER, pause: () => {} };
/** For the server: pages of 5000 (a few tens of ms each), the event loop served in between. */
export const SCAN_IN_PAGES: ScanOptions = { pageSize: 5000, pause: () => new Promise<void>((resolve) => setImmediate(resolve)) };

/**
 * Every entity of a kind, a page at a time, each page starting after the last key of the one before
 * (by offset, each page walked from the start and counted them all: 38 s for 800,000 licensees'
 * licenses in pages of 5000, the last pages holding the event loop 125 ms each).
 */
async function eachEntity(store: AssetStore, kind: EntityKind, scan: ScanOptions, visit: (entity: Entity) => void): Promise<number> {
  let count = 0;
  let after: string | undefined;
  for (;;) {
    const page = store.entitiesAfter(kind, after, scan.pageSize);
    for (const entity of page.items) visit(entity);
    count += page.items.length;
    if (page.last === undefined) return count;
    after = page.last;
    await scan.pause();
  }
}

/** What a visit of eachRuntime returns to end the scan. */
const STOP_SCAN: unique symbol = Symbol('stop scan');

/** Runtime records with a pause every `pageSize` records (the read transaction stays open meanwhile). */
async function eachRuntime(
  store: AssetStore,
  scan: ScanOptions,
  visit: (entry: { key: unknown; licenseeNumber: string; state: RuntimeState }) => void | typeof STOP_SCAN,
): Promise<void> {
  let sincePause = 0;
  for (const entry of store.runtimeEntries()) {
    if (visit(entry) === STOP_SCAN) return;
    if (++sincePause >= scan.pageSize) {
      sincePause = 0;
      await scan.pause();
    }
  }
}

function licenseViewFor(license: Entity, template: Entity): LicenseView {
  return { number: license.number, props: license.props, template, startMs: undefined, startDateMissing: false, agentCreated: false };
}

/** One pass over the definitions (cost grows with the number of licenses; cache the result per import). */
export async function summariseDefinitions(store: AssetStore, scan: ScanOptions = SCAN_AT_ONCE): Promise<DefinitionSummary> {
  const importKey = importKeyOf(store.meta().lastImport);
  const modules = new Map<string, ModuleSummary>();
  for (const module of store.listEntities('ProductModule').items) {
    const stored = module.props['licensingModel'] ?? '';
    modules.set(module.number, {
      number: module.number,
      name: module.props['name'] ?? '',
      productNumber: module.props['productNumber'] ?? '',
      licensingModel: resolveLicensingModel(stored) ?? stored,
      active: isActive(module),
      licensees: 0,
      floatingCapacity: 0,
      quantityTotal: 0,
      quantityUsedImported: 0,
    });
  }
  const templates = new Map(store.listEntities('LicenseTemplate').items.map((t) => [t.number, t]));
  const licenseesPerProduct = new Map<string, number>();
  const activeLicensees = new Set<string>();
  const licensees = await eachEntity(store, 'Licensee', scan, (licensee) => {
    const product = licensee.props['productNumber'] ?? '';
    licenseesPerProduct.set(product, (licenseesPerProduct.get(product) ?? 0) + 1);
    if (isActive(licensee)) activeLicensees.add(licensee.number);
  });
  for (const module of modules.values()) module.licensees = licenseesPerProduct.get(module.productNumber) ?? 0;

  const quantityLicenseModule = new Map<string, string>();
  const licenses = await eachEntity(store, 'License', scan, (license) => {
    const template = templates.get(license.props['licenseTemplateNumber'] ?? '');
    if (template === undefined) return;
    const module = modules.get(template.props['productModuleNumber'] ?? '');
    if (module === undefined) return;
    const type = (template.props['licenseType'] ?? '').trim().toUpperCase();
    const countable = isActive(license) && activeLicensees.has(license.props['licenseeNumber'] ?? '');
    const view = licenseViewFor(license, template);
    if (type === 'FLOATING' && module.licensingModel === 'Floating' && countable) {
      module.floatingCapacity += Math.max(0, licenseInt(view, 'maxSessions') ?? 0);
    } else if (type === 'QUANTITY' && module.licensingModel === 'PayPerUse') {
      quantityLicenseModule.set(license.number, module.number);
      if (countable) {
        module.quantityTotal += licenseInt(view, 'quantity') ?? 0;
        module.quantityUsedImported += licenseInt(view, 'usedQuantity') ?? 0;
      }
    }
  });
  return {
    importKey,
    counts: {
      products: store.listEntities('Product', { limit: 0 }).total,
      modules: modules.size,
      templates: templates.size,
      licensees,
      licenses,
      apiKeys: store.listEntities('Token', { limit: 0 }).total,
    },
    modules,
    quantityLicenseModule,
  };
}

export interface RuntimeSummary {
  /** Licensees the agent holds runtime state for. */
  licenseesWithState: number;
  /** Live (unexpired) floating sessions the agent checked out, per module. */
  seatsInUse: Map<string, number>;
  seatsInUseTotal: number;
  /** Quantity the agent booked (Pay-per-Use), per module; license numbers it cannot place go under ''. */
  quantityBooked: Map<string, number>;
  quantityBookedTotal: number;
}

/**
 * What a runtime summary needs of one licensee's state, flat (a summary keeps one per licensee):
 * the number of sessions, then each session's module and expiry, then each booked license and its
 * quantity. Module numbers are interned: each record decodes its own copy.
 */
type RuntimeFacts = readonly (string | number)[];

const NO_FACTS: RuntimeFacts = [0];

function factsOf(state: RuntimeState, intern: Map<string, string>): RuntimeFacts {
  const facts: (string | number)[] = [0];
  for (const module in state.sessions) {
    if (!Object.hasOwn(state.sessions, module)) continue;
    let shared = intern.get(module);
    if (shared === undefined) intern.set(module, (shared = module));
    for (const session of state.sessions[module]!.values()) facts.push(shared, session.expiresMs);
  }
  facts[0] = (facts.length - 1) / 2;
  for (const license in state.usedQuantity) if (Object.hasOwn(state.usedQuantity, license)) facts.push(license, state.usedQuantity[license]!);
  return facts.length === 1 ? NO_FACTS : facts;
}

/**
 * Summaries of the runtime state (status page, /metrics, the sampler) that read only the records
 * written since the last one (AssetStore.runtimeChangesSince): reading and decoding every record
 * took 429-607 ms per summary for 100,000 licensees with state (the records' facts, kept here,
 * take ~200 bytes per licensee with a session and a booking). Summaries are made one at a time.
 */
export function createRuntimeSummariser(store: AssetStore): (definitions: DefinitionSummary, nowMs: number, scan?: ScanOptions) => Promise<RuntimeSummary> {
  let facts = new Map<string, RuntimeFacts>();
  const intern = new Map<string, string>();
  let token: number | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  const refresh = async (scan: ScanOptions) => {
    const changes = store.runtimeChangesSince(token);
    if (changes.keys === undefined) {
      // The token is taken before the scan: a record written during it is read again next time.
      const all = new Map<string, RuntimeFacts>();
      await eachRuntime(store, scan, ({ key, state }) => {
        all.set(String(key), factsOf(state, intern));
      });
      facts = all;
    } else {
      for (const key of new Set(changes.keys)) {
        const record = store.runtimeRecord(key);
        if (record === undefined) facts.delete(key);
        else facts.set(key, factsOf(record.state, intern));
      }
    }
    token = changes.token;
  };
  return (definitions, nowMs, scan = SCAN_AT_ONCE) => {
    const summary = queue.then(async () => {
      await refresh(scan);
      return summariseFacts(facts, definitions, nowMs);
    });
    queue = summary.catch(() => undefined);
    return summary;
  };
}

function summariseFacts(factsByKey: ReadonlyMap<string, RuntimeFacts>, definitions: DefinitionSummary, nowMs: number): RuntimeSummary {
  const summary: RuntimeSummary = {
    licenseesWithState: factsByKey.size,
    seatsInUse: new Map(),
    seatsInUseTotal: 0,
    quantityBooked: new Map(),
    quantityBookedTotal: 0,
  };
  for (const facts of factsByKey.values()) {
    const sessionsEnd = 1 + 2 * (facts[0] as number);
    for (let i = 1; i < sessionsEnd; i += 2) {
      if ((facts[i + 1] as number) <= nowMs) continue;
      const module = facts[i] as string;
      summary.seatsInUse.set(module, (summary.seatsInUse.get(module) ?? 0) + 1);
      summary.seatsInUseTotal += 1;
    }
    for (let i = sessionsEnd; i < facts.length; i += 2) {
      const module = definitions.quantityLicenseModule.get(facts[i] as string) ?? '';
      const quantity = facts[i + 1] as number;
      summary.quantityBooked.set(module, (summary.quantityBooked.get(module) ?? 0) + quantity);
      summary.quantityBookedTotal += quantity;
    }
  }
  return summary;
}


export interface JournalStatus {
  /** Number of entries (the head's sequence number), folded ones included. */
  length: number;
  /** Time of the newest entry, when there is one. */
  lastEntryAtMs?: number;
  /** Entries 1 to `throughSeq` were folded into a base (--action=compact-journal), at `atMs`. */
  folded?: { throughSeq: number; atMs: number };
}

export function journalStatus(store: AssetStore): JournalStatus {
  const head = store.journalHead();
  const base = store.journalBase();
  const status: JournalStatus = { length: head.seq, ...(base === undefined ? {} : { folded: { throughSeq: base.throughSeq, atMs: base.foldedAtMs } }) };
  if (head.seq > 0) for (const entry of store.journal(head.seq)) status.lastEntryAtMs = entry.atMs;
  return status;
}

export interface StatusSnapshot {
  atMs: number;
  databaseId: string;
  schemaVersion: number;
  createdAt: string;
  lastImport?: ImportRecord;
  /** "without card", or the serial of the card the database is bound to, and its newest checkpoint. */
  card: { withoutCard: boolean; serial?: string; checkpoint?: CardCheckpointStatus };
  journal: JournalStatus;
  /**
   * System clock minus the newest time the database has seen (its newest journal entry, its last
   * import, the serving agent's clock mark: service/trusted-clock.ts, newestTimeSeen). Negative
   * means the clock is behind a time the agent already answered at (set back, or a bad RTC); on a
   * running agent it is otherwise up to about a minute (the mark's interval).
   */
  clockDriftMs?: number;
  definitions: DefinitionSummary;
  runtime: RuntimeSummary;
}

/** What `--action=status` and the status page show of the newest card checkpoint (docs/smart-card.md). */
export interface CardCheckpointStatus {
  /** Checkpoint sequence number. */
  seq: number;
  /** The journal entry it seals. */
  journalSeq: number;
  /** The card's signature counter after signing it. */
  cardCounter: number;
  /** The clock high-water mark it carries (about when it was sealed). */
  clockHighWaterMs: number;
  /** Attempts after it whose signature was not stored (a crash or a card gone while signing). */
  pendingAttempts: number;
}

export interface StatusReader {
  snapshot(nowMs: number): Promise<StatusSnapshot>;
}

/**
 * Definitions changed without an import (run-agent's refreshes of its local copy, which change them
 * every few seconds under load) are summarised again at most this often; an import at once.
 */
export const DEFINITIONS_RESCAN_MS = 60_000;

/**
 * Reads snapshots, recomputing the definition summary after an import, and after other changes of
 * the definitions (definitionsVersion) at most every DEFINITIONS_RESCAN_MS: a summary keyed by the
 * import alone stayed at run-agent's first one, an empty copy, for good. Concurrent callers share
 * one scan; a scan that raced an import is redone.
 */
export function createStatusReader(store: AssetStore, scan: ScanOptions = SCAN_AT_ONCE): StatusReader {
  let cached: { summary: DefinitionSummary; version: number; atMs: number } | undefined;
  let pending: Promise<{ summary: DefinitionSummary; version: number }> | undefined;
  const definitions = async (nowMs: number): Promise<DefinitionSummary> => {
    for (;;) {
      const key = importKeyOf(store.meta().lastImport);
      if (cached !== undefined && cached.summary.importKey === key) {
        if (cached.version === store.definitionsVersion() || nowMs - cached.atMs < DEFINITIONS_RESCAN_MS) return cached.summary;
      }
      pending ??= (async () => {
        // Read before the scan: a change landing during it makes the summary stale, never newer than its version.
        const version = store.definitionsVersion();
        return { summary: await summariseDefinitions(store, scan), version };
      })().finally(() => (pending = undefined));
      const { summary, version } = await pending;
      if (summary.importKey === importKeyOf(store.meta().lastImport)) {
        cached = { summary, version, atMs: nowMs };
        return summary;
      }
    }
  };
  const summariseRuntimeNow = createRuntimeSummariser(store);
  return {
    async snapshot(nowMs) {
      // Runtime changes reach the database with a checkpoint, after they are acknowledged (store/runtime-writer.ts):
      // show those too. Should that checkpoint fail, the page shows what the database holds.
      await store.settled().catch(() => undefined);
      const defs = await definitions(nowMs);
      const meta = store.meta();
      const journal = journalStatus(store);
      const newestSeenMs = newestTimeSeen(store);
      return {
        atMs: nowMs,
        databaseId: meta.databaseId,
        schemaVersion: meta.schemaVersion,
        createdAt: meta.createdAt,
        ...(meta.lastImport ? { lastImport: meta.lastImport } : {}),
        card: cardStatus(meta.withoutCard === true, meta.cardSerial, store.cardCheckpoint()),
        journal,
        ...(newestSeenMs > 0 ? { clockDriftMs: nowMs - newestSeenMs } : {}),
        definitions: defs,
        runtime: await summariseRuntimeNow(defs, nowMs, scan),
      };
    },
  };
}

function cardStatus(withoutCard: boolean, serial: string | undefined, stored: ReturnType<AssetStore['cardCheckpoint']>): StatusSnapshot['card'] {
  let checkpoint: CardCheckpointStatus | undefined;
  if (stored && !withoutCard) {
    try {
      const fields = decodeCheckpointPayload(stored.payload);
      checkpoint = {
        seq: fields.seq,
        journalSeq: fields.journalSeq,
        cardCounter: stored.cardCounter,
        clockHighWaterMs: fields.clockHighWaterMs,
        pendingAttempts: stored.pending?.length ?? 0,
      };
    } catch {
      // A record that does not decode is for the agent's start to refuse (card/database.ts); status shows none.
    }
  }
  return { withoutCard, ...(serial ? { serial } : {}), ...(checkpoint ? { checkpoint } : {}) };
}

export function cardModeText(card: StatusSnapshot['card']): string {
  if (card.withoutCard) return 'without card';
  // Every import records one or the other: neither means that none has completed yet.
  if (card.serial === undefined) return 'not set yet (the first import sets it)';
  const c = card.checkpoint;
  if (c === undefined) return `smart card ${card.serial}, no checkpoint yet`;
  const pending = c.pendingAttempts > 0 ? `, ${c.pendingAttempts} attempt(s) after it not stored` : '';
  return (
    `smart card ${card.serial}, newest checkpoint ${c.seq} (journal entry ${c.journalSeq}, card signature counter ${c.cardCounter}, ` +
    `clock ${new Date(c.clockHighWaterMs).toISOString()}${pending})`
  );
}

export interface SessionStatus {
  sessionId: string;
  checkedOutMs: number;
  expiresMs: number;
}

export interface ModuleActivity {
  moduleNumber: string;
  licensingModel: string;
  /** From the validation core (a dry run without parameters): what a client would be told now. */
  warningLevel: WarningLevel | string;
  valid?: string;
  /** Floating: live sessions the agent holds, and the licensee's capacity. */
  sessions: SessionStatus[];
  seatCapacity?: number;
  /** Pay-per-Use / Quota: remaining quantity as the core reports it. */
  remainingQuantity?: string;
  /** Quantity the agent booked for this module's licenses. */
  quantityBooked: number;
  /** The licensee holds a license for this module (imported, or created by the agent, e.g. a trial). */
  licensed: boolean;
}

export interface LicenseeActivity {
  number: string;
  name: string;
  active: boolean;
  modules: ModuleActivity[];
}

const DRY_RUN = {
  dryRun: true,
  forOfflineUse: false,
  modules: new Map<string, Record<string, string>>(),
  licenseeProperties: {},
  deprecatedGet: false,
} as const;

function propertyOf(properties: readonly Property[], name: string): string | undefined {
  return properties.find(([key]) => key === name)?.[1];
}

/**
 * Licensees the agent has runtime state for (first `limit` in store order),
 * each with what a validation would answer now and the sessions it holds.
 */
export async function licenseeActivity(
  store: AssetStore,
  nowMs: number,
  limit: number,
  scan: ScanOptions = SCAN_AT_ONCE,
): Promise<{ items: LicenseeActivity[]; total: number }> {
  const items: LicenseeActivity[] = [];
  // Counted, not read: only the first `limit` records are (reading them all took 0.44-0.81 s for 100,000).
  const total = store.runtimeCount();
  await eachRuntime(store, scan, ({ licenseeNumber, state }) => {
    if (items.length >= limit) return STOP_SCAN;
    const licensee = store.getEntity('Licensee', licenseeNumber);
    if (!licensee) return;
    const assets = store.loadLicenseeAssets(licensee);
    if (!assets) return;
    // Assets read afresh for this scan: nothing to reuse a module's decision from later.
    const outcome = validate(assets, state, DRY_RUN, { nowMs, ttlMs: 0, reuseModuleResults: false });
    const templates = new Map(assets.templates.map((t) => [t.number, t]));
    const modules: ModuleActivity[] = [];
    for (const item of outcome.envelope.items) {
      if (item.type !== 'ProductModuleValidation') continue;
      const moduleNumber = propertyOf(item.properties, 'productModuleNumber') ?? '';
      const licensingModel = propertyOf(item.properties, 'licensingModel') ?? '';
      const sessions = [...(ownEntry(state.sessions, moduleNumber) ?? [])]
        .filter(([, s]) => s.expiresMs > nowMs)
        .map(([sessionId, s]) => ({ sessionId, checkedOutMs: s.checkedOutMs, expiresMs: s.expiresMs }))
        .sort((a, b) => a.checkedOutMs - b.checkedOutMs);
      let seatCapacity: number | undefined;
      let quantityBooked = 0;
      let licensed = Object.values(state.createdLicenses).some(
        (created) => templates.get(created.templateNumber)?.props['productModuleNumber'] === moduleNumber,
      );
      for (const license of assets.licenses) {
        const template = templates.get(license.props['licenseTemplateNumber'] ?? '');
        if (template === undefined || template.props['productModuleNumber'] !== moduleNumber) continue;
        licensed = true;
        quantityBooked += ownEntry(state.usedQuantity, license.number) ?? 0;
        if (licensingModel === 'Floating' && isActive(license) && (template.props['licenseType'] ?? '').toUpperCase() === 'FLOATING') {
          seatCapacity = (seatCapacity ?? 0) + Math.max(0, licenseInt(licenseViewFor(license, template), 'maxSessions') ?? 0);
        }
      }
      if (licensingModel === 'Floating') seatCapacity ??= 0;
      const remainingQuantity = propertyOf(item.properties, 'remainingQuantity');
      const valid = propertyOf(item.properties, 'valid');
      modules.push({
        moduleNumber,
        licensingModel,
        warningLevel: propertyOf(item.properties, 'warningLevel') ?? '',
        ...(valid !== undefined ? { valid } : {}),
        sessions,
        ...(seatCapacity !== undefined ? { seatCapacity } : {}),
        ...(remainingQuantity !== undefined ? { remainingQuantity } : {}),
        quantityBooked,
        licensed,
      });
    }
    items.push({ number: licensee.number, name: licensee.props['name'] ?? '', active: isActive(licensee), modules });
  });
  return { items, total };
}
