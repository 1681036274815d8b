/**
 * The asset store: imported definitions, the agent's runtime state and the
 * journal of runtime changes, in one LMDB environment under `database/`.
 *
 * Layout (one LMDB sub-database each):
 *   meta             schema version, database id, card binding and checkpoint, last import, journal head
 *   def:<Kind>       entity number → Entity (definitions exactly as exported by the cloud)
 *   rel:<Kind>       `<parent>\x1f<number>` → number (children of a parent, e.g. licenses of a licensee)
 *   alias            licensee alias → licensee number
 *   runtime          licensee number → RuntimeState (what the agent itself changed)
 *   journal          sequence → JournalEntry (append-only, hash-chained)
 *
 * run-agent (caching proxy, src/proxy/) keeps its replay log, replay cursor,
 * conflict records and local cache under ['proxy', …] keys of `meta`: all 16
 * named sub-databases the environment allows (lmdb.ts maxDbs) are taken.
 *
 * Definitions and runtime state never share a record, so an import that
 * replaces definitions cannot lose runtime state.
 */
import { createHash, randomUUID } from 'node:crypto';
import { ENTITY_KINDS, PARENT_PROPERTY, type Entity, type EntityKind } from '../core/entities.ts';
import { applyEvents, emptyRuntimeState, type RuntimeEvent, type RuntimeState } from '../core/runtime.ts';
import type { LicenseeAssets } from '../core/validate-types.ts';
import type { StoredCheckpoint } from '../card/checkpoint.ts';
import type { CardBinding } from '../card/open.ts';
import { StoreError } from './errors.ts';
import { openKvEnvironment, type KvDatabase, type KvEnvironment, type OpenOptions } from './lmdb.ts';

export const SCHEMA_VERSION = 1;
export { StoreError } from './errors.ts';

export interface ImportRecord {
  exportId: string;
  createdAt: string;
  sourceHost: string;
  /** Card serial the export was bound to, or undefined for "without card". */
  cardSerial?: string;
  importedAt: string;
  files: number;
  entities: number;
}

export interface StoreMeta {
  schemaVersion: number;
  databaseId: string;
  createdAt: string;
  /** Set by the first import: true when the database runs without a smart card. */
  withoutCard?: boolean;
  cardSerial?: string;
  /** The smart card this database is bound to (docs/smart-card.md); set by the import that binds. */
  cardBinding?: CardBinding;
  lastImport?: ImportRecord;
  /** Hex SHA-256 of the salted vendor credentials carried by the export, if any. */
  vendorCredentials?: { user: string; salt: string; hash: string };
}

export interface JournalEntry {
  seq: number;
  atMs: number;
  licenseeNumber: string;
  events: RuntimeEvent[];
  prevHash: string;
  hash: string;
}

/** The licensee number is kept in the value: keys of long numbers are hashed. */
interface RuntimeRecord {
  licenseeNumber: string;
  state: RuntimeState;
}

interface JournalHead {
  seq: number;
  hash: string;
}

const GENESIS_HASH = '0'.repeat(64);
const CARD_CHECKPOINT_KEY = 'cardCheckpoint';
/** LMDB keys are limited to 1978 bytes; longer numbers are keyed by their SHA-256. */
const KEY_PART_BYTES_MAX = 480;
// U+001F cannot occur in XML text, so it cannot occur in a number; lower control
// characters are special to lmdb's key encoding (ordered-binary).
const SEPARATOR = '\u001f';
/** run-agent keys inside the meta sub-database (arrays sort apart from the string keys). */
const PROXY = 'proxy';
const REPLAY_HEAD_KEY = [PROXY, 'replayHead'];
const REPLAY_CURSOR_KEY = [PROXY, 'replayCursor'];
const replayKey = (seq: number) => [PROXY, 'replay', seq];
const conflictKey = (seq: number) => [PROXY, 'conflict', seq];
const proxyValueKey = (key: string) => [PROXY, 'value', keyPart(key)];

export function keyPart(value: string): string {
  if (Buffer.byteLength(value, 'utf8') <= KEY_PART_BYTES_MAX) return value;
  return `#sha256:${createHash('sha256').update(value).digest('hex')}`;
}

export function journalHash(prevHash: string, entry: Omit<JournalEntry, 'hash' | 'prevHash'>): string {
  return createHash('sha256')
    .update(prevHash)
    .update(JSON.stringify([entry.seq, entry.atMs, entry.licenseeNumber, entry.events]))
    .digest('hex');
}

/** Write access used by the importer; everything happens in one atomic transaction. */
export interface ImportTransaction {
  get(kind: EntityKind, number: string): Entity | undefined;
  put(entity: Entity): void;
  remove(kind: EntityKind, number: string): void;
  childNumbers(kind: EntityKind, parentNumber: string): string[];
  /**
   * Every stored definition of a kind, read lazily through one cursor (the
   * importer's sweep of stale definitions; one range read per parent would
   * hold native memory until the commit). Do not write while iterating.
   */
  entities(kind: EntityKind): Iterable<Entity>;
  meta(): StoreMeta;
  setMeta(meta: StoreMeta): void;
  /** Replaces (or with undefined removes) the card checkpoint, in this transaction (binding import). */
  setCardCheckpoint(record: StoredCheckpoint | undefined): void;
}

export interface ListOptions {
  /** Only children of this parent (by PARENT_PROPERTY of the kind). */
  parent?: string;
  offset?: number;
  limit?: number;
}

export interface AssetStore {
  readonly path: string;
  meta(): StoreMeta;
  getEntity(kind: EntityKind, number: string): Entity | undefined;
  listEntities(kind: EntityKind, options?: ListOptions): { items: Entity[]; total: number };
  children(kind: EntityKind, parentNumber: string): Entity[];
  /** A licensee by number or by one of its aliases. */
  resolveLicensee(numberOrAlias: string): Entity | undefined;
  /** Product, modules, templates and licenses of a licensee; undefined if its product is missing. */
  loadLicenseeAssets(licensee: Entity): LicenseeAssets | undefined;
  getRuntime(licenseeNumber: string): RuntimeState;
  /**
   * Serialised read-modify-write of one licensee's runtime state. `decide`
   * runs inside the write transaction with the latest state, so concurrent
   * requests never act on a stale view (no seat given twice). Its events are
   * applied and journaled in the same transaction; the promise resolves once
   * the transaction is durable.
   */
  commitRuntime<R>(
    licenseeNumber: string,
    atMs: number,
    decide: (state: RuntimeState) => { events: RuntimeEvent[]; result: R },
  ): Promise<R>;
  journal(fromSeq?: number): Iterable<JournalEntry>;
  journalHead(): JournalHead;
  /** Hash of journal entry `seq` (seq 0: the empty journal's hash); undefined when there is none. */
  journalHashAt(seq: number): string | undefined;
  /** The newest card checkpoint record (docs/smart-card.md, "Checkpoints"), if the database is bound. */
  cardCheckpoint(): StoredCheckpoint | undefined;
  /**
   * Durably replaces the card checkpoint record. A separate meta value, so
   * that frequent checkpoints do not rewrite `meta`; resolves once synced.
   */
  saveCardCheckpoint(record: StoredCheckpoint): Promise<void>;
  runtimeEntries(): Iterable<{ licenseeNumber: string; state: RuntimeState }>;
  importTransaction<T>(action: (tx: ImportTransaction) => T): T;
  /** Goes up with every committed import transaction (definitions may have changed). */
  definitionsVersion(): number;
  backup(path: string): Promise<void>;
  close(): Promise<void>;

  // ---- run-agent (caching proxy) records; see ReplayEntry.
  /**
   * commitRuntime that also appends a replay entry (the request to re-send
   * upstream later) in the same transaction, when `decide` produced events.
   */
  commitRuntimeWithReplay<R>(
    licenseeNumber: string,
    atMs: number,
    decide: (state: RuntimeState) => { events: RuntimeEvent[]; result: R },
    describe: (result: R, seq: number) => ReplayRequest,
  ): Promise<R>;
  /** Sequence number of the last replay entry acknowledged upstream (0: none). */
  replayCursor(): number;
  /** Entries after the cursor, oldest first. */
  replayBacklog(): Iterable<ReplayEntry>;
  /**
   * Records the upstream answer to entry `seq` (must be cursor + 1), an
   * optional conflict record, and advances the cursor: one durable transaction.
   */
  acknowledgeReplay(seq: number, ack: ReplayAck, conflict?: ReplayConflict): Promise<void>;
  replayConflicts(): Iterable<ReplayConflict>;
  /**
   * Replaces a licensee's definitions with fresh ones from upstream and
   * reconciles its runtime state, in one durable transaction.
   */
  refreshLicensee<T>(licenseeNumber: string, atMs: number, action: (tx: RefreshTransaction) => T): Promise<T>;
  /** Small values of run-agent (local cache, verified credentials), by key. */
  proxyValue(key: string): unknown;
  /** Writes (or with undefined removes) a value; resolves when durable. */
  putProxyValue(key: string, value: unknown): Promise<void>;
  proxyValueKeys(prefix: string): Iterable<string>;
}

/** A validate request run-agent answered locally and must re-send upstream. */
export interface ReplayRequest {
  /** The client's validate parameters, form-encoded; never its credentials. */
  form: string;
  /** What the agent decided (compared with the upstream answer on replay). */
  decision: ReplayDecision;
}

export interface ReplayDecision {
  /** HTTP status of the answer. */
  status: number;
  /** productModuleNumber → `valid` property of its ProductModuleValidation item. */
  valid: Record<string, string>;
}

export interface ReplayEntry extends ReplayRequest {
  seq: number;
  atMs: number;
  licenseeNumber: string;
  /** The runtime events the local decision journaled. */
  events: RuntimeEvent[];
  ack?: ReplayAck;
}

export interface ReplayAck {
  atMs: number;
  status: number;
  decision: ReplayDecision;
  conflict: boolean;
}

export interface ReplayConflict {
  seq: number;
  licenseeNumber: string;
  offlineAtMs: number;
  detectedAtMs: number;
  form: string;
  local: ReplayDecision;
  upstream: ReplayDecision;
  message: string;
}

/** An import transaction for one licensee's refresh, plus its runtime state and replay entries. */
export interface RefreshTransaction extends ImportTransaction {
  runtime(): RuntimeState;
  /** This licensee's replay entries still stored (acknowledged or not), oldest first. */
  replayEntries(): ReplayEntry[];
  /** Applies and journals runtime events for this licensee. */
  appendRuntimeEvents(events: RuntimeEvent[]): void;
  /** Deletes an acknowledged replay entry once its effects are in the refreshed definitions. */
  dropReplayEntry(seq: number): void;
}

export interface OpenStoreOptions extends OpenOptions {
  /** Create the database when it does not exist (import); otherwise a missing one is an error. */
  create?: boolean;
  nowMs?: number;
}

export function openAssetStore(path: string, options: OpenStoreOptions = {}): AssetStore {
  let env: KvEnvironment;
  try {
    env = openKvEnvironment(path, options);
  } catch (cause) {
    throw new StoreError('io', `cannot open the database in ${path}: ${(cause as Error).message}`, { cause });
  }
  const metaDb = env.open<unknown>('meta');
  const defs = new Map<EntityKind, KvDatabase<Entity>>();
  const rels = new Map<EntityKind, KvDatabase<string>>();
  for (const kind of ENTITY_KINDS) {
    defs.set(kind, env.open<Entity>(`def:${kind}`));
    rels.set(kind, env.open<string>(`rel:${kind}`));
  }
  const aliasDb = env.open<string>('alias');
  const runtimeDb = env.open<RuntimeRecord>('runtime');
  const journalDb = env.open<JournalEntry>('journal');

  const defOf = (kind: EntityKind) => defs.get(kind)!;
  const relOf = (kind: EntityKind) => rels.get(kind)!;

  const existing = metaDb.get('meta') as StoreMeta | undefined;
  if (existing === undefined) {
    if (!options.create) {
      void env.close();
      throw new StoreError(
        'not_initialised',
        `no database in ${path}: run --action=import-assets in this working directory first`,
      );
    }
    const meta: StoreMeta = {
      schemaVersion: SCHEMA_VERSION,
      databaseId: randomUUID(),
      createdAt: new Date(options.nowMs ?? Date.now()).toISOString(),
    };
    env.commitSync(() => metaDb.putSync('meta', meta));
  } else if (existing.schemaVersion !== SCHEMA_VERSION) {
    void env.close();
    throw new StoreError(
      'schema_mismatch',
      `the database in ${path} has schema version ${String(existing.schemaVersion)}, ` +
        `this agent reads version ${SCHEMA_VERSION}; use the matching agent version or re-import into a new directory`,
    );
  }

  const parentOf = (entity: Entity): string | undefined => {
    const property = PARENT_PROPERTY[entity.kind];
    return property === undefined ? undefined : entity.props[property];
  };
  const relKey = (parent: string, number: string) => `${keyPart(parent)}${SEPARATOR}${keyPart(number)}`;
  const relRange = (parent: string) => ({
    start: `${keyPart(parent)}${SEPARATOR}`,
    end: `${keyPart(parent)}\u0020`,
  });
  const aliasesOf = (entity: Entity): string[] => {
    if (entity.kind !== 'Licensee') return [];
    const raw = entity.props['aliases'];
    if (!raw) return [];
    try {
      const parsed: unknown = JSON.parse(raw);
      return Array.isArray(parsed) ? parsed.filter((a): a is string => typeof a === 'string' && a !== '') : [];
    } catch {
      return [];
    }
  };

  const getEntity = (kind: EntityKind, number: string) => defOf(kind).get(keyPart(number));
  const childNumbers = (kind: EntityKind, parent: string): string[] => {
    const numbers: string[] = [];
    for (const { value } of relOf(kind).getRange(relRange(parent))) numbers.push(value);
    return numbers;
  };
  const children = (kind: EntityKind, parent: string): Entity[] => {
    const out: Entity[] = [];
    for (const number of childNumbers(kind, parent)) {
      const entity = getEntity(kind, number);
      if (entity) out.push(entity);
    }
    return out;
  };

  const removeInTx = (kind: EntityKind, number: string) => {
    const old = getEntity(kind, number);
    if (!old) return;
    const parent = parentOf(old);
    if (parent !== undefined) relOf(kind).removeSync(relKey(parent, number));
    for (const alias of aliasesOf(old)) aliasDb.removeSync(keyPart(alias));
    defOf(kind).removeSync(keyPart(number));
  };
  const putInTx = (entity: Entity) => {
    removeInTx(entity.kind, entity.number);
    defOf(entity.kind).putSync(keyPart(entity.number), entity);
    const parent = parentOf(entity);
    if (parent !== undefined) relOf(entity.kind).putSync(relKey(parent, entity.number), entity.number);
    for (const alias of aliasesOf(entity)) aliasDb.putSync(keyPart(alias), entity.number);
  };

  const readMeta = () => metaDb.get('meta') as StoreMeta;
  const definitionsVersion = () => (metaDb.get('definitionsVersion') as number | undefined) ?? 0;
  const journalHead = (): JournalHead =>
    (metaDb.get('journalHead') as JournalHead | undefined) ?? { seq: 0, hash: GENESIS_HASH };

  const wrapWriteError = (cause: unknown): StoreError => {
    if (cause instanceof StoreError) return cause;
    const message = (cause as Error)?.message ?? String(cause);
    // A full disk shows as ENOSPC, or as EIO (code 5) when LMDB fails to spill pages.
    if (/ENOSPC|MDB_MAP_FULL|No space left|Input\/output error|code 5\b|code 28\b/i.test(message)) {
      return new StoreError('disk_full', `the disk holding ${path} is full: ${message}`, { cause });
    }
    return new StoreError('io', `write to the database in ${path} failed: ${message}`, { cause });
  };

  /** Same writes as commitRuntime's: new state, journal entry, journal head (inside a transaction). */
  const appendRuntimeEvents = (licenseeNumber: string, atMs: number, state: RuntimeState, events: RuntimeEvent[]) => {
    runtimeDb.putSync(keyPart(licenseeNumber), { licenseeNumber, state: applyEvents(state, events) });
    const head = journalHead();
    const body = { seq: head.seq + 1, atMs, licenseeNumber, events };
    const hash = journalHash(head.hash, body);
    journalDb.putSync(body.seq, { ...body, prevHash: head.hash, hash });
    metaDb.putSync('journalHead', { seq: body.seq, hash });
  };
  const replayCursor = () => (metaDb.get(REPLAY_CURSOR_KEY) as number | undefined) ?? 0;

  /** The write access of an import (or of a proxy refresh); valid inside a write transaction only. */
  const importTransaction = (): ImportTransaction => ({
    get: getEntity,
    put: putInTx,
    remove: removeInTx,
    childNumbers,
    *entities(kind) {
      for (const { value } of defOf(kind).getRange({})) yield value;
    },
    meta: readMeta,
    setMeta: (meta) => metaDb.putSync('meta', meta),
    setCardCheckpoint: (record) => {
      if (record === undefined) metaDb.removeSync(CARD_CHECKPOINT_KEY);
      else metaDb.putSync(CARD_CHECKPOINT_KEY, record);
    },
  });

  return {
    path,
    meta: readMeta,
    getEntity,
    listEntities(kind, listOptions = {}) {
      const offset = listOptions.offset ?? 0;
      const limit = listOptions.limit ?? Number.MAX_SAFE_INTEGER;
      if (listOptions.parent !== undefined) {
        const all = childNumbers(kind, listOptions.parent);
        const items = all
          .slice(offset, offset + limit)
          .map((n) => getEntity(kind, n))
          .filter((e): e is Entity => e !== undefined);
        return { items, total: all.length };
      }
      const db = defOf(kind);
      const items: Entity[] = [];
      for (const { value } of db.getRange({ offset, limit })) items.push(value);
      return { items, total: db.getCount({}) };
    },
    children,
    resolveLicensee(numberOrAlias) {
      const direct = getEntity('Licensee', numberOrAlias);
      if (direct) return direct;
      const number = aliasDb.get(keyPart(numberOrAlias));
      return number === undefined ? undefined : getEntity('Licensee', number);
    },
    loadLicenseeAssets(licensee) {
      const productNumber = licensee.props['productNumber'];
      const product = productNumber === undefined ? undefined : getEntity('Product', productNumber);
      if (!product) return undefined;
      const modules = children('ProductModule', product.number);
      const templates = modules.flatMap((m) => children('LicenseTemplate', m.number));
      const licenses = children('License', licensee.number);
      return { product, licensee, modules, templates, licenses };
    },
    getRuntime(licenseeNumber) {
      return runtimeDb.get(keyPart(licenseeNumber))?.state ?? emptyRuntimeState();
    },
    async commitRuntime(licenseeNumber, atMs, decide) {
      try {
        return await env.commitDurable(() => {
          const key = keyPart(licenseeNumber);
          const state = runtimeDb.get(key)?.state ?? emptyRuntimeState();
          const { events, result } = decide(state);
          if (events.length === 0) return result;
          runtimeDb.putSync(key, { licenseeNumber, state: applyEvents(state, events) });
          const head = journalHead();
          const body = { seq: head.seq + 1, atMs, licenseeNumber, events };
          const hash = journalHash(head.hash, body);
          journalDb.putSync(body.seq, { ...body, prevHash: head.hash, hash });
          metaDb.putSync('journalHead', { seq: body.seq, hash });
          return result;
        });
      } catch (cause) {
        throw wrapWriteError(cause);
      }
    },
    *journal(fromSeq = 1) {
      for (const { value } of journalDb.getRange({ start: fromSeq })) yield value;
    },
    journalHead,
    journalHashAt: (seq) => (seq === 0 ? GENESIS_HASH : journalDb.get(seq)?.hash),
    cardCheckpoint: () => metaDb.get(CARD_CHECKPOINT_KEY) as StoredCheckpoint | undefined,
    async saveCardCheckpoint(record) {
      try {
        await env.commitDurable(() => metaDb.putSync(CARD_CHECKPOINT_KEY, record));
      } catch (cause) {
        throw wrapWriteError(cause);
      }
    },
    *runtimeEntries() {
      for (const { value } of runtimeDb.getRange({})) yield value;
    },
    definitionsVersion,
    importTransaction(action) {
      try {
        return env.commitSync(() => {
          const result = action(importTransaction());
          // Readers that cache definitions (server/asset-cache) drop their cache when this changes.
          metaDb.putSync('definitionsVersion', definitionsVersion() + 1);
          return result;
        });
      } catch (cause) {
        if (cause instanceof Error && !(cause instanceof StoreError) && /ENOSPC|MAP_FULL/.test(cause.message)) {
          throw wrapWriteError(cause);
        }
        throw cause;
      }
    },
    async commitRuntimeWithReplay(licenseeNumber, atMs, decide, describe) {
      try {
        return await env.commitDurable(() => {
          const state = runtimeDb.get(keyPart(licenseeNumber))?.state ?? emptyRuntimeState();
          const { events, result } = decide(state);
          if (events.length === 0) return result;
          appendRuntimeEvents(licenseeNumber, atMs, state, events);
          const seq = ((metaDb.get(REPLAY_HEAD_KEY) as number | undefined) ?? 0) + 1;
          const { form, decision } = describe(result, seq);
          const entry: ReplayEntry = { seq, atMs, licenseeNumber, form, decision, events };
          metaDb.putSync(REPLAY_HEAD_KEY, seq);
          metaDb.putSync(replayKey(seq), entry);
          return result;
        });
      } catch (cause) {
        throw wrapWriteError(cause);
      }
    },
    replayCursor,
    *replayBacklog() {
      for (const { value } of metaDb.getRange({ start: replayKey(replayCursor() + 1), end: replayKey(Number.MAX_SAFE_INTEGER) })) {
        yield value as ReplayEntry;
      }
    },
    async acknowledgeReplay(seq, ack, conflict) {
      try {
        await env.commitDurable(() => {
          const cursor = replayCursor();
          if (seq !== cursor + 1) throw new Error(`replay acknowledgement out of order: entry ${seq} after cursor ${cursor}`);
          const entry = metaDb.get(replayKey(seq)) as ReplayEntry | undefined;
          if (entry) metaDb.putSync(replayKey(seq), { ...entry, ack });
          if (conflict) metaDb.putSync(conflictKey(seq), conflict);
          metaDb.putSync(REPLAY_CURSOR_KEY, seq);
        });
      } catch (cause) {
        throw wrapWriteError(cause);
      }
    },
    *replayConflicts() {
      for (const { value } of metaDb.getRange({ start: conflictKey(0), end: conflictKey(Number.MAX_SAFE_INTEGER) })) {
        yield value as ReplayConflict;
      }
    },
    async refreshLicensee(licenseeNumber, atMs, action) {
      try {
        return await env.commitDurable(() => {
          let state = runtimeDb.get(keyPart(licenseeNumber))?.state ?? emptyRuntimeState();
          // Definitions change: readers that cache them (store/definitions-cache.ts) must drop their cache.
          metaDb.putSync('definitionsVersion', definitionsVersion() + 1);
          return action({
            ...importTransaction(),
            runtime: () => state,
            replayEntries: () => {
              const entries: ReplayEntry[] = [];
              for (const { value } of metaDb.getRange({ start: replayKey(0), end: replayKey(Number.MAX_SAFE_INTEGER) })) {
                const entry = value as ReplayEntry;
                if (entry.licenseeNumber === licenseeNumber) entries.push(entry);
              }
              return entries;
            },
            appendRuntimeEvents: (events) => {
              if (events.length === 0) return;
              appendRuntimeEvents(licenseeNumber, atMs, state, events);
              state = applyEvents(state, events);
            },
            dropReplayEntry: (seq) => {
              if (seq > replayCursor()) throw new Error(`replay entry ${seq} is not acknowledged yet and cannot be dropped`);
              metaDb.removeSync(replayKey(seq));
            },
          });
        });
      } catch (cause) {
        throw wrapWriteError(cause);
      }
    },
    proxyValue: (key) => metaDb.get(proxyValueKey(key)),
    async putProxyValue(key, value) {
      try {
        await env.commitDurable(() => {
          if (value === undefined) metaDb.removeSync(proxyValueKey(key));
          else metaDb.putSync(proxyValueKey(key), value);
        });
      } catch (cause) {
        throw wrapWriteError(cause);
      }
    },
    *proxyValueKeys(prefix) {
      for (const key of metaDb.getKeys({ start: proxyValueKey(prefix), end: [PROXY, 'value', `${prefix}\uffff`] })) {
        const parts = key as unknown[];
        if (typeof parts[2] === 'string' && parts[2].startsWith(prefix)) yield parts[2];
      }
    },
    backup: (target) => env.backup(target),
    close: () => env.close(),
  };
}

