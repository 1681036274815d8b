/**
 * The asset store: imported definitions, the agent's runtime state and the
 * journal of runtime changes, in one LMDB environment under `database/`.
 *
 * Layout (one LMDB sub-database each):
 *   meta             schema version, database id, card binding and checkpoint, last import, journal head,
 *                    definitions generation and version, the claim of a running import
 *   def:<Kind>       entity number → Entity (definitions exactly as exported by the cloud)
 *   rel:<Kind>       `<parent>\x1f<number>` → number (children of a parent, e.g. licenses of a licensee)
 *   alias            licensee alias → licensee number
 *   runtime          licensee number → RuntimeState (what the agent itself changed)
 *   journal          first sequence of a group commit → its entries (append-only, hash-chained;
 *                    journal-records.ts)
 *
 * Definitions exist in two generations: def:/rel:/alias (generation 0) and
 * def1:/rel1:/alias1 (generation 1). Meta `definitionsGeneration` says which
 * one is served; readers look it up in the same LMDB read snapshot as the
 * definitions (one synchronous call never spans two snapshots). An import
 * fills the other generation in many small transactions (`beginStagedImport`)
 * and switches to it in one small final transaction, the commit point: a
 * crash before it leaves the served generation untouched, and a server
 * running meanwhile keeps answering from it and is never blocked for longer
 * than one batch (docs/transfer-format.md, "Import").
 *
 * run-agent (caching proxy, src/proxy/) keeps its replay log, replay cursor,
 * conflict records and local cache under ['proxy', …] keys of `meta`.
 *
 * Definitions and runtime state never share a record, so an import that
 * replaces definitions cannot lose runtime state.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { ENTITY_KINDS, type Entity, type EntityKind } from '../core/entities.ts';
import { applyEvents, type RuntimeEvent, type RuntimeState } from '../core/runtime.ts';
import type { LicenseeAssets, ProductAssets } from '../core/validate-types.ts';
import type { StoredCheckpoint } from '../card/checkpoint.ts';
import type { CardBinding } from '../card/open.ts';
import { damagedDatabase, isDatabaseDamage, MissingSubDatabaseError, StoreError } from './errors.ts';
import { openKvEnvironment, type KvDatabase, type KvEnvironment, type KvKey, type OpenOptions } from './lmdb.ts';
import { checkIntegrity, type IntegrityReport } from './integrity.ts';
import { GENERATION_KEY, generationNames, keyPart, parentOf, relKey, relRange, type Generation } from './layout.ts';
import { join } from 'node:path';
import { acquireExclusiveLock, LockHeldError, lockHolder, type HeldLock } from '../platform/exclusive-lock.ts';
import { processExists } from '../platform/process-exists.ts';
import { entriesOfRecord, GENESIS_HASH, journalGroupRecord, journalRecordHead, type JournalEntry, type JournalRecord } from './journal-records.ts';
import { foldJournal, foldStates, promotePendingFold, readJournalBase, readPendingFold, type FoldDependencies, type FoldLimits, type FoldMode, type FoldResult, type JournalBase } from './journal-fold.ts';
import { applyJournalRecords, createRuntimeWriter, runtimeStateOf, runtimeStateOrAsStored, WAL_RESUME_KEY, type JournalHead, type RuntimeRecord, type RuntimeWriter } from './runtime-writer.ts';
import { openRuntimeWal, readWalGroupsAfter, WAL_FILE, WalChainError, type RuntimeWalFile } from './runtime-wal.ts';

/**
 * 2: runtime records store floating session tables as msgpack maps (1: as objects; still read),
 * and the journal is hash-chained per group commit (a schema-1 journal is the special case of
 * groups of one, so it verifies unchanged).
 * 3: the journal stores one record per group commit (journal-records.ts); the per-entry records
 * of schemas 1 and 2 are still read. Older databases are upgraded on open by stamping the version.
 * 4: the journal may start at a folded base (journal-fold.ts). Stamped by the first fold only, so
 * that an agent of an earlier version still opens every database that was never folded.
 */
export const SCHEMA_VERSION = 3;
/** The schema version of a database whose journal was folded (readable from this version on). */
export const SCHEMA_VERSION_FOLDED = 4;
export { StoreError } from './errors.ts';
export type { IntegrityReport } from './integrity.ts';
export { keyPart } from './layout.ts';

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

export type { JournalEntry } from './journal-records.ts';
export { journalHash } from './journal-records.ts';
export type { FoldLimits, FoldMode, FoldResult, JournalBase } from './journal-fold.ts';

const RUNTIME_WRITER_LOCK = 'runtime-writer.lock';

/** Another process serves this database (see AssetStore.claimRuntimeWriter). */
export class RuntimeWriterTakenError extends Error {
  constructor(
    readonly path: string,
    readonly holder: string,
  ) {
    super(`another agent already serves the database in ${path}${holder ? ` (${holder})` : ''}: one database, one serving agent`);
    this.name = 'RuntimeWriterTakenError';
  }
}

const CARD_CHECKPOINT_KEY = 'cardCheckpoint';
/** The newest time a serving agent has seen (service/trusted-clock.ts): a number of ms. */
const CLOCK_MARK_KEY = 'clockMark';
/** Meta keys of the definitions: version, claim of a running import (the served generation: layout.ts). */
const VERSION_KEY = 'definitionsVersion';
const STAGING_KEY = 'definitionsStaging';

/** run-agent keys inside the meta sub-database (arrays sort apart from the string keys). */
const PROXY = 'proxy';
const REPLAY_HEAD_KEY = [PROXY, 'replayHead'];
const REPLAY_CURSOR_KEY = [PROXY, 'replayCursor'];
const replayKey = (seq: number) => [PROXY, 'replay', seq];
/**
 * run-agent's replay entries by licensee: a refresh of one licensee reads its own entries through
 * this index instead of every stored entry (which made the refreshes after a long outage
 * O(licensees × entries)). Written with each entry, removed with it. Entries an earlier version
 * wrote (before the index, or after a downgrade) have none: the first refresh of every process
 * adds what is missing, in one pass (see replayEntries).
 */
const replayOfKey = (licenseeNumber: string, seq: number) => [PROXY, 'replayOf', keyPart(licenseeNumber), seq];
const conflictKey = (seq: number) => [PROXY, 'conflict', seq];
const proxyValueKey = (key: string) => [PROXY, 'value', keyPart(key)];

/** Whether a sub-database holds any record (one key read, not a count: that would read them all). */
function holdsAny(db: KvDatabase<unknown>): boolean {
  for (const _ of db.getKeys({ limit: 1 })) return true;
  return false;
}

/**
 * Whether a write error's message says the disk (or LMDB's map) is full:
 * ENOSPC (errno 28), MAP_FULL, or EIO (errno 5), which LMDB reports when it
 * fails to spill pages to a full disk.
 */
function isDiskFull(message: string): boolean {
  return /ENOSPC|MAP_FULL|No space left|Input\/output error|code 5\b|code 28\b/i.test(message);
}

/**
 * Whether the process that wrote a staging claim still runs: same host, the
 * pid exists, and (where /proc tells) it started before the claim, i.e. is
 * not a later process that reuses the pid. A claim of another host counts
 * as stale (LMDB databases are not shared between hosts).
 */
function claimAlive(claim: StagingClaim): boolean {
  if (claim.host !== hostname() || !processExists(claim.pid)) return false;
  const started = processStartMs(claim.pid);
  return started === undefined || started <= claim.claimedAtMs + 1000;
}

/** Start time of a process from /proc (Linux), or undefined elsewhere. */
function processStartMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime, in clock ticks after boot); fields after the command name start at 3.
    const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const bootSeconds = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    if (!Number.isFinite(startTicks) || !Number.isFinite(bootSeconds)) return undefined;
    return bootSeconds * 1000 + startTicks * 10; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/**
 * Write access to the served definitions in one atomic transaction: small
 * writes (test and benchmark seeding, the proxy's refresh of one licensee).
 * A transfer-file import uses `beginStagedImport` instead.
 */
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

/** The meta record of a running staged import (meta `definitionsStaging`). */
export interface StagingClaim {
  id: string;
  /** The generation being filled (not the served one). */
  generation: 0 | 1;
  pid: number;
  host: string;
  startedAt: string;
  /** Wall-clock time of the claim (ms), for telling a reused pid from the claimant. */
  claimedAtMs: number;
  /** definitionsVersion when staging began: the switch is refused if another writer changed definitions since. */
  baseVersion: number;
}

/** Why a staged import cannot go on; the served definitions are unchanged. */
export class StagedImportError extends Error {
  override name = 'StagedImportError';
  constructor(
    readonly reason: 'busy' | 'superseded' | 'definitions_changed',
    message: string,
  ) {
    super(message);
  }
}

/** The serving agent holding the database (claimRuntimeWriter), as it described itself; undefined when none runs. */
export function servingAgent(databasePath: string): string | undefined {
  return lockHolder(join(databasePath, RUNTIME_WRITER_LOCK));
}

/** The lock file import-assets holds in the database directory for as long as it runs (claimImport). */
export const IMPORT_LOCK_FILE = 'import.lock';

/**
 * One import at a time per database, from before the database exists: import-assets takes this
 * lock (flock, released by the kernel with its process) before it opens or creates the database.
 * The staging claim in the meta records (beginStagedImport) guards the import itself, but it is
 * written only once the import begins: two first imports started together both found no database,
 * and the one that lost removed the database the other had just imported into, as a first import
 * that fails removes what it created. Throws StagedImportError('busy') while another holds it.
 */
export function claimImport(databasePath: string, describe: string): HeldLock {
  mkdirSync(databasePath, { recursive: true, mode: 0o700 });
  try {
    return acquireExclusiveLock(join(databasePath, IMPORT_LOCK_FILE), describe);
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    throw new StagedImportError('busy', `another import into ${databasePath} is running${error.holder ? ` (${error.holder})` : ''}; wait for it to finish`);
  }
}

/**
 * Undoes a first import that failed, while its import lock is still held: the database files
 * first, then the lock file, then the directory when the import made it (and only if empty: a
 * directory the operator made may be a mount point or a link). In that order, an import that starts
 * meanwhile is refused while the files are there, and afterwards finds no database and begins anew
 * (removing the directory with everything in it, lock file first, let one in that then saw the
 * half-made database and imported into files about to be deleted).
 */
export function removeFailedFirstImport(databasePath: string, options: { removeDirectory: boolean }): void {
  for (const name of ['data.mdb', 'lock.mdb', WAL_FILE, RUNTIME_WRITER_LOCK]) rmSync(join(databasePath, name), { force: true });
  rmSync(join(databasePath, IMPORT_LOCK_FILE), { force: true });
  if (!options.removeDirectory) return;
  try {
    rmdirSync(databasePath);
  } catch {
    // Not empty (another import has begun in it), or gone: left as it is.
  }
}

/** One staging batch: reads the served generation, writes the staging one. */
export interface StagingTransaction {
  /** The served definition (what the database held when the import began, unless another writer changed it). */
  served(kind: EntityKind, number: string): Entity | undefined;
  /** Whether the served generation holds definitions of a kind (one key read, not a count: that would read them all). */
  servedHasAny(kind: EntityKind): boolean;
  /**
   * The served definitions of a kind that are not staged, among the next
   * `limit` in key order after the key `after` (from a previous page;
   * undefined: from the start); `last` is the key to go on from, undefined
   * at the end. Paging lets a pass over millions of definitions run in many
   * small transactions; staged ones are skipped by key, without decoding.
   */
  servedNotStaged(kind: EntityKind, after: string | undefined, limit: number): { entities: Entity[]; last: string | undefined };
  /** Whether the staging generation holds this number. */
  isStaged(kind: EntityKind, number: string): boolean;
  /**
   * Writes a definition with its index entries into the staging generation.
   * Returns false, writing nothing, when the number is staged already. With
   * `aliasesYield`, aliases that are staged already keep their licensee.
   */
  stage(entity: Entity, options?: { aliasesYield?: boolean }): boolean;
}

/** The switch transaction: what is written together with the generation switch. */
export interface SwitchTransaction {
  meta(): StoreMeta;
  setMeta(meta: StoreMeta): void;
  setCardCheckpoint(record: StoredCheckpoint | undefined): void;
}

/**
 * An import into the spare generation. Batches are durable when `batch`
 * returns, but invisible to readers until `commit`, the one small
 * transaction that switches the served generation (and writes meta); then
 * `cleanup` clears the previous generation. After a failure call `abort`.
 * A process that dies leaves its staging (or, after the switch, the
 * previous generation) behind; the next `beginStagedImport` clears it.
 */
export interface StagedImport {
  batch<T>(action: (tx: StagingTransaction) => T): T;
  /** The commit point: switches the served generation; durable when it returns. */
  commit<T>(action: (tx: SwitchTransaction) => T): T;
  /** After commit: clears the previous generation (best effort: a failure is left to the next import). */
  cleanup(): void;
  /** Drops the staged definitions and the claim (best effort: a failure is left to the next import). */
  abort(): void;
}

/** What the definitions generations hold (diagnostics and tests). */
export interface DefinitionsGenerations {
  served: 0 | 1;
  /** The claim of a running (or interrupted) import, if any. */
  staging?: StagingClaim;
  /** Definitions in the generation that is not served: staging, or a leftover to be cleared. */
  spareEntities: number;
}

export interface BeginStagingOptions {
  nowMs: number;
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
  /**
   * The next `limit` served definitions of a kind in key order after the key `after` (from a
   * previous page; undefined: from the start); `last` is the key to go on from, undefined at the
   * end. For passes over every definition in pages (the status scan): an `offset` page walks
   * from the start and listEntities counts them all, so paging by offset was quadratic.
   */
  entitiesAfter(kind: EntityKind, after: string | undefined, limit: number): { items: Entity[]; last: string | undefined };
  children(kind: EntityKind, parentNumber: string): Entity[];
  /** A licensee by number or by one of its aliases. */
  resolveLicensee(numberOrAlias: string): Entity | undefined;
  /** Product, modules, templates and licenses of a licensee; undefined if its product is missing. */
  loadLicenseeAssets(licensee: Entity): LicenseeAssets | undefined;
  /** A product, its modules and their templates (loadLicenseeAssets without the licensee's part). */
  loadProductAssets(productNumber: string): ProductAssets | undefined;
  getRuntime(licenseeNumber: string): RuntimeState;
  /**
   * Serialised read-modify-write of one licensee's runtime state (see
   * runtime-writer.ts). `decide` runs at once against the latest state,
   * changes queued but not yet durable included, so concurrent requests never
   * act on a stale view (no seat given twice). Its events are journaled and
   * committed with the next group commit; the promise resolves once that is
   * durable — also for a decision without events when the state it saw was
   * not durable yet.
   */
  commitRuntime<R>(
    licenseeNumber: string,
    atMs: number,
    decide: (state: RuntimeState) => { events: RuntimeEvent[]; result: R },
  ): Promise<R>;
  /**
   * Makes this process the database's only runtime writer (runtime-writer.ts
   * keeps the latest state in memory): an exclusive lock on
   * `<database>/runtime-writer.lock`, held until close or process end. Every
   * serving action takes it at start; a second server on the same database is
   * refused with RuntimeWriterTakenError.
   */
  claimRuntimeWriter(describe: string): void;
  /** Changes whenever `commitRuntime` changes the licensee's state (unique per process; for answer caches). */
  runtimeRevision(licenseeNumber: string): number;
  /**
   * Resolves once the database (what getRuntime, journal, runtimeEntries and
   * other processes read) holds every runtime change acknowledged before the
   * call: acknowledged changes are durable in the runtime journal file first
   * and reach LMDB in checkpoints, milliseconds to tens of milliseconds later (runtime-writer.ts).
   * Rejects when the checkpoint fails (the changes stay durable in the file).
   */
  settled(): Promise<void>;
  /** The journal's entries from `fromSeq` on (default: the first one kept after a fold's base). */
  journal(fromSeq?: number): Iterable<JournalEntry>;
  journalHead(): JournalHead;
  /**
   * The journal head a card may seal: in a serving process, the one its own runtime writer's
   * checkpoints put into LMDB (RuntimeWriter.checkpointedHead), not entries another process
   * appended there; elsewhere LMDB's.
   */
  sealableJournalHead(): JournalHead;
  /**
   * Hash of journal entry `seq` (seq 0: the empty journal's hash); undefined when there is none.
   * After a fold, the base's last folded entry still has one (the link the entries kept start
   * from); the entries before it have none.
   */
  journalHashAt(seq: number): string | undefined;
  /** Where the journal starts after a fold (journal-fold.ts); undefined while it starts at entry 1. */
  journalBase(): JournalBase | undefined;
  /** The base's snapshot: each licensee's runtime state after entry journalBase().throughSeq (none without a base). */
  journalBaseStates(): Iterable<{ licenseeNumber: string; state: RuntimeState }>;
  /** A card-bound database's fold that waits for the card to seal its marker (journal-fold.ts). */
  journalPendingFold(): JournalBase | undefined;
  /** The pending fold's snapshot (none without one). */
  journalPendingStates(): Iterable<{ licenseeNumber: string; state: RuntimeState }>;
  /**
   * Runs `action` holding the runtime-writer lock (no agent serves the database meanwhile), with
   * the runtime journal file's pending records applied first: maintenance such as foldJournal.
   * Throws RuntimeWriterTakenError while an agent serves the database; never in a serving process.
   */
  exclusively<T>(describe: string, action: () => T): T;
  /**
   * Folds the journal's oldest entries (journal-fold.ts): into the base at once (`now`), or into
   * a fold that waits for the card's seal (`pending`). Only inside `exclusively`, and not while a
   * fold is pending. Synchronous: a fold of millions of entries takes seconds.
   */
  foldJournal(limits: FoldLimits, mode: FoldMode): FoldResult;
  /**
   * Makes the pending fold the base and deletes what it folded; the caller has checked that the
   * card sealed its marker and that it verifies. Only inside `exclusively`; undefined when none is pending.
   */
  promotePendingFold(): { base: JournalBase; recordsDeleted: number } | undefined;
  /**
   * Journal entries durable in the runtime journal file and not yet in LMDB (what journal,
   * journalHead and runtimeEntries show): a running server's newest, which its next checkpoint
   * brings, or, after a crash, what the next open that may write applies. Counted, not applied.
   */
  pendingJournalEntries(): number;
  /** The newest card checkpoint record (docs/smart-card.md, "Checkpoints"), if the database is bound. */
  cardCheckpoint(): StoredCheckpoint | undefined;
  /**
   * Durably replaces the card checkpoint record. A separate meta value, so
   * that frequent checkpoints do not rewrite `meta`; resolves once synced.
   */
  saveCardCheckpoint(record: StoredCheckpoint): Promise<void>;
  /** The newest time a serving agent recorded with recordClockMark (0 when none has). */
  clockMark(): number;
  /**
   * Durably records `atMs` as the newest time seen, unless a later one is recorded already: a
   * clock set back and a restart must not take licensing time back to the last counter change.
   */
  recordClockMark(atMs: number): Promise<void>;
  /**
   * Every stored runtime record: its key, the licensee it names, and its state (as stored where it
   * cannot be read as one: verify-database names what is wrong with it).
   */
  runtimeEntries(): Iterable<{ key: KvKey; licenseeNumber: string; state: RuntimeState }>;
  /** How many runtime records there are (counted without reading them). */
  runtimeCount(): number;
  /** One runtime record by its key (as runtimeEntries gives it), or undefined when there is none. */
  runtimeRecord(key: string): { licenseeNumber: string; state: RuntimeState } | undefined;
  /**
   * The keys of the runtime records this process wrote since `token` (a value an earlier call
   * returned), once each write is committed; `keys` undefined: read them all (no token, or one
   * older than the keys kept). For readers that keep a summary of every record (service/status.ts):
   * only the runtime writer writes them, and it runs in this process.
   */
  runtimeChangesSince(token: number | undefined): { token: number; keys: readonly string[] | undefined };
  importTransaction<T>(action: (tx: ImportTransaction) => T): T;
  /**
   * Claims the spare definitions generation for an import and clears it (a
   * leftover of an interrupted import included). Throws StagedImportError
   * 'busy' while another process's import holds the claim.
   */
  beginStagedImport(options: BeginStagingOptions): StagedImport;
  definitionsGenerations(): DefinitionsGenerations;
  /** Reads every record and checks how they fit together (integrity.ts); at most `maxProblems` problems (default 20). */
  checkIntegrity(maxProblems?: number): IntegrityReport;
  /** Goes up with every committed change of definitions (import switch, importTransaction, proxy refresh). */
  definitionsVersion(): number;
  /**
   * definitionsVersion for the serving hot path: read at most once per event-loop turn, and again
   * at once after this process changed definitions. A change committed by another process (an
   * import) is seen from the next turn on; the requests of one turn all see one version.
   */
  definitionsVersionOfTurn(): number;
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
  /**
   * Removes the values of `keys` that `removable` still accepts when it is their turn (a value
   * written again since the caller looked stays), in durable commits of up to 1000; resolves with
   * how many went. One commit per value cost ~0.9 ms each (the cache purge).
   */
  removeProxyValues(keys: readonly string[], removable: (value: unknown) => boolean): Promise<number>;
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
  /**
   * Past this offset the runtime journal file starts again at 0 (runtime-wal.ts); default 8 MiB,
   * about 8 s of Pay-per-Use writes at the benchmark's rate. Tests make it small.
   */
  walRewindAtBytes?: number;
  /** Runtime checkpoints into LMDB (runtime-writer.ts): every this many groups under load, and this many ms after the writes stop. */
  checkpointEveryGroups?: number;
  checkpointQuietMs?: number;
  /** Wait before a failed checkpoint is tried again when nothing else asks for it (default 1 s). */
  checkpointRetryMs?: number;
  /** A checkpoint of runtime changes into LMDB failed; it is retried and nothing acknowledged is lost (for the log). */
  onCheckpointError?: (error: Error) => void;
  /** Journal entries that were durable only in the runtime journal file were applied to LMDB at open (for the log). */
  onRecovered?: (entries: number) => void;
  /** Test hook: makes the runtime checkpoints into LMDB fail (as if only LMDB's disk were full). */
  failCheckpoints?: () => Error | undefined;
  /** Test hook: a journal file write lands and fails all the same (runtime-wal.ts). */
  failJournalWritesAfterLanding?: () => Error | undefined;
}

const WAL_REWIND_AT_BYTES = 8 * 2 ** 20;

/** For the failCheckpoints test hook: the environment with commitBatchDurable failing while `fail` says so. */
function withFailingBatches(env: KvEnvironment, fail: () => Error | undefined): KvEnvironment {
  return {
    ...env,
    commitBatchDurable: (queue) => {
      const failure = fail();
      return failure ? Promise.reject(failure) : env.commitBatchDurable(queue);
    },
  };
}

/** Written beyond the rewind offset when the file is created: room for the group that passes it (a bigger one grows the file). */
const WAL_SLACK_BYTES = 64 * 2 ** 10;

/** runtimeChangesSince: committed keys kept for readers (a reader further behind reads every record again). */
const RUNTIME_CHANGES_KEPT = 200_000;

/** run-agent's cache purge: values removed per durable commit (removeProxyValues). */
const PROXY_REMOVALS_PER_COMMIT = 1000;

export function openAssetStore(path: string, options: OpenStoreOptions = {}): AssetStore {
  let env: KvEnvironment;
  try {
    env = openKvEnvironment(path, options);
  } catch (cause) {
    if (isDatabaseDamage(cause)) throw damagedDatabase(path, cause);
    throw new StoreError('io', `cannot open the database in ${path}: ${(cause as Error).message}`, { cause });
  }
  const notInitialised = () => new StoreError('not_initialised', `no database in ${path}: run --action=import-assets in this working directory first`);
  /**
   * Opening reads LMDB's main tree and meta: where they are damaged, say so (not "internal
   * error"). A sub-database missing in a file with pages (read-only: MissingSubDatabaseError) is
   * damage too: files that were never committed to are answered before.
   */
  const readingAtOpen = <T>(read: () => T): T => {
    try {
      return read();
    } catch (cause) {
      void env.close();
      throw isDatabaseDamage(cause) || cause instanceof MissingSubDatabaseError ? damagedDatabase(path, cause) : cause;
    }
  };
  if (!readingAtOpen(() => env.holdsPages())) {
    // No transaction was ever committed: read-only, there is nothing to read.
    if (options.readOnly) {
      void env.close();
      throw notInitialised();
    }
  } else if (!readingAtOpen(() => env.holdsSubDatabases())) {
    // Every open that committed created the sub-databases: a file with pages and a main tree that
    // names none has lost its main tree. Refused before the open below could write into it.
    void env.close();
    throw damagedDatabase(path, new Error('its main tree names no sub-database'));
  }
  // Opening creates the sub-databases a new database lacks, each in a write transaction of its
  // own (one fdatasync each: 30 for a new database) unless they share one: this one.
  const openDatabases = <T>(open: () => T): T => (options.readOnly ? open() : env.commitSync(open));
  const openGeneration = (g: 0 | 1): Generation => {
    const names = generationNames(g);
    const def = {} as Generation['def'];
    const rel = {} as Generation['rel'];
    for (const kind of ENTITY_KINDS) {
      def[kind] = env.open<Entity>(names.def[kind]);
      rel[kind] = env.open<string>(names.rel[kind]);
    }
    return { def, rel, alias: env.open<string>(names.alias) };
  };
  /** A read-only environment cannot create sub-databases: generation 1 may not exist yet. */
  const tryOpenGeneration = (g: 0 | 1): Generation | undefined => {
    try {
      return openGeneration(g);
    } catch {
      return undefined;
    }
  };
  // Both opened up front: opening a sub-database later would renew lmdb's read snapshot
  // in the middle of a reader's calls.
  const { metaDb, generations, runtimeDb, journalDb } = readingAtOpen(() =>
    openDatabases(() => ({
      metaDb: env.open<unknown>('meta'),
      generations: [openGeneration(0), options.readOnly ? tryOpenGeneration(1) : openGeneration(1)] as (Generation | undefined)[],
      runtimeDb: env.open<RuntimeRecord>('runtime'),
      journalDb: env.open<JournalRecord>('journal'),
    })),
  );

  const existing = readingAtOpen(() => metaDb.get('meta') as StoreMeta | undefined);
  if (existing === undefined) {
    // A first import killed between this open and its meta record leaves empty sub-databases.
    // Records without meta mean that meta was lost: damage, not a new database to initialise.
    const holdsRecords = readingAtOpen(() =>
      [runtimeDb, journalDb, ...generations.flatMap((g) => (g ? ENTITY_KINDS.map((kind) => g.def[kind]) : []))].some(holdsAny),
    );
    if (holdsRecords) {
      void env.close();
      throw damagedDatabase(path, new Error('its meta record is missing, its other records are there'));
    }
    if (!options.create) {
      void env.close();
      throw notInitialised();
    }
    const meta: StoreMeta = {
      schemaVersion: SCHEMA_VERSION,
      databaseId: randomUUID(),
      createdAt: new Date(options.nowMs ?? Date.now()).toISOString(),
    };
    env.commitSync(() => metaDb.putSync('meta', meta));
  } else if ((existing.schemaVersion === 1 || existing.schemaVersion === 2) && !options.readOnly) {
    // Schemas 1 and 2 differ only in the form of records that this code also reads (runtimeStateOf,
    // entriesOfRecord): upgrading is stamping the new version, so that an older agent refuses the
    // database once records of the new form may be in it.
    env.commitSync(() => metaDb.putSync('meta', { ...existing, schemaVersion: SCHEMA_VERSION }));
  } else if (![1, 2, SCHEMA_VERSION, SCHEMA_VERSION_FOLDED].includes(existing.schemaVersion)) {
    void env.close();
    throw new StoreError(
      'schema_mismatch',
      `the database in ${path} has schema version ${String(existing.schemaVersion)}, ` +
        `this agent reads versions 1 to ${SCHEMA_VERSION_FOLDED}; use the matching agent version or re-import into a new directory`,
    );
  }

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

  const generationNumber = (): 0 | 1 => (metaDb.get(GENERATION_KEY) === 1 ? 1 : 0);
  const generation = (g: 0 | 1): Generation => {
    const found = generations[g] ?? (generations[g] = tryOpenGeneration(g));
    if (!found) throw new StoreError('corrupt', `the database in ${path} has no definitions generation ${g}`);
    return found;
  };
  /**
   * The served generation. Looked up once per public call, so that the
   * generation and the definitions come from one read snapshot (lmdb renews
   * a reader's snapshot only between event-loop turns or after its own
   * commits; inside a write transaction, everything reads that transaction).
   */
  const served = (): Generation => generation(generationNumber());

  const getIn = (gen: Generation, kind: EntityKind, number: string) => gen.def[kind].get(keyPart(number));
  const childNumbersIn = (gen: Generation, kind: EntityKind, parent: string): string[] => {
    const numbers: string[] = [];
    for (const { value } of gen.rel[kind].getRange(relRange(parent))) numbers.push(value);
    return numbers;
  };
  const childrenIn = (gen: Generation, kind: EntityKind, parent: string): Entity[] => {
    const out: Entity[] = [];
    for (const number of childNumbersIn(gen, kind, parent)) {
      const entity = getIn(gen, kind, number);
      if (entity) out.push(entity);
    }
    return out;
  };
  const productAssetsIn = (gen: Generation, productNumber: string): ProductAssets | undefined => {
    const product = getIn(gen, 'Product', productNumber);
    if (!product) return undefined;
    const modules = childrenIn(gen, 'ProductModule', product.number);
    const templates = modules.flatMap((m) => childrenIn(gen, 'LicenseTemplate', m.number));
    return { product, modules, templates };
  };

  const getEntity = (kind: EntityKind, number: string) => getIn(served(), kind, number);
  const children = (kind: EntityKind, parent: string) => childrenIn(served(), kind, parent);

  const removeIn = (gen: Generation, kind: EntityKind, number: string) => {
    const old = getIn(gen, kind, number);
    if (!old) return;
    const parent = parentOf(old);
    if (parent !== undefined) gen.rel[kind].removeSync(relKey(parent, number));
    for (const alias of aliasesOf(old)) gen.alias.removeSync(keyPart(alias));
    gen.def[kind].removeSync(keyPart(number));
  };
  const putIn = (gen: Generation, entity: Entity) => {
    removeIn(gen, entity.kind, entity.number);
    gen.def[entity.kind].putSync(keyPart(entity.number), entity);
    const parent = parentOf(entity);
    if (parent !== undefined) gen.rel[entity.kind].putSync(relKey(parent, entity.number), entity.number);
    for (const alias of aliasesOf(entity)) gen.alias.putSync(keyPart(alias), entity.number);
  };
  /** Inside a write transaction: empties a generation (LMDB frees whole pages; quick at any size). */
  const clearGeneration = (gen: Generation) => {
    for (const kind of ENTITY_KINDS) {
      gen.def[kind].clearSync();
      gen.rel[kind].clearSync();
    }
    gen.alias.clearSync();
  };

  const readMeta = () => metaDb.get('meta') as StoreMeta;
  const definitionsVersion = () => (metaDb.get(VERSION_KEY) as number | undefined) ?? 0;
  // definitionsVersionOfTurn: read once per event-loop turn. lmdb-js gives the reads of a turn one
  // read snapshot anyway (node_modules/lmdb/read.js, renewReadTxn: reset by a 0 ms timer, and after
  // this process's own commits), so a read per request mostly re-read the same value: one LMDB
  // lookup per validate request. Dropped at once when this process changes definitions.
  let versionOfTurn: number | undefined;
  const forgetVersionOfTurn = () => {
    versionOfTurn = undefined;
  };
  const definitionsVersionOfTurn = (): number => {
    if (versionOfTurn === undefined) {
      versionOfTurn = definitionsVersion();
      setImmediate(forgetVersionOfTurn);
    }
    return versionOfTurn;
  };
  const journalHead = (): JournalHead =>
    (metaDb.get('journalHead') as JournalHead | undefined) ?? { seq: 0, hash: GENESIS_HASH };

  const wrapWriteError = (cause: unknown): StoreError => {
    if (cause instanceof StoreError) return cause;
    const message = (cause as Error)?.message ?? String(cause);
    if (isDiskFull(message)) {
      return new StoreError('disk_full', `the disk holding ${path} is full: ${message}`, { cause });
    }
    return new StoreError('io', `write to the database in ${path} failed: ${message}`, { cause });
  };

  /** Key of the journal record that holds entry `seq` if there is one: the greatest key up to it. */
  const recordKeyHolding = (seq: number): number | undefined => {
    for (const key of journalDb.getKeys({ start: seq, reverse: true, limit: 1 })) return key as number;
    return undefined;
  };

  const storedRuntime = (licenseeNumber: string): RuntimeState => runtimeStateOf(runtimeDb.get(keyPart(licenseeNumber)));

  // Keys of committed runtime writes, in order (runtimeChangesSince): `changesBase` is the token of
  // changedKeys[0]. Half is dropped once it holds RUNTIME_CHANGES_KEPT: a reader that fell that far
  // behind reads every record again.
  const changedKeys: string[] = [];
  let changesBase = 0;
  const noteRuntimeWritten = (keys: Iterable<string>) => {
    for (const key of keys) changedKeys.push(key);
    if (changedKeys.length > RUNTIME_CHANGES_KEPT) {
      const dropped = changedKeys.length - RUNTIME_CHANGES_KEPT / 2;
      changedKeys.splice(0, dropped);
      changesBase += dropped;
    }
  };

  /**
   * The records a runtime-writer group commit writes (runtime-writer.ts), for one entry that is a
   * group of its own: new state, journal entry, journal head. Written synchronously inside the
   * caller's transaction (the proxy's refresh, run while the writer's queue is held back).
   */
  const appendRuntimeEvents = (licenseeNumber: string, atMs: number, state: RuntimeState, events: RuntimeEvent[]) => {
    runtimeDb.putSync(keyPart(licenseeNumber), { licenseeNumber, state: applyEvents(state, events) });
    const head = journalHead();
    const seq = head.seq + 1;
    const { hash, record } = journalGroupRecord(head.hash, [{ seq, atMs, licenseeNumber, events }]);
    journalDb.putSync(seq, record);
    metaDb.putSync('journalHead', { seq, hash });
  };
  const replayCursor = () => (metaDb.get(REPLAY_CURSOR_KEY) as number | undefined) ?? 0;

  const walPath = join(path, WAL_FILE);
  const walRewindAtBytes = options.walRewindAtBytes ?? WAL_REWIND_AT_BYTES;
  /** The journal file's records after LMDB's journal head (read only). */
  const walGroupsAfterHead = () => {
    try {
      return readWalGroupsAfter(walPath, readMeta().databaseId, journalHead(), (metaDb.get(WAL_RESUME_KEY) as number | undefined) ?? 0);
    } catch (cause) {
      if (cause instanceof WalChainError) {
        throw new StoreError('corrupt', `${cause.message}; move that file away to open the database without it (its changes are then lost)`, { cause });
      }
      throw new StoreError('io', `cannot read ${walPath}: ${(cause as Error).message}`, { cause });
    }
  };
  /**
   * Applies the runtime journal file's records after LMDB's journal head (the changes a crashed
   * or killed server had acknowledged but not yet checkpointed) in one durable transaction.
   * Only the runtime writer may do this: call it holding the runtime-writer lock.
   */
  const recoverRuntimeJournal = () => {
    if (!existsSync(walPath)) return;
    const groups = walGroupsAfterHead();
    const last = groups[groups.length - 1];
    if (last === undefined) return;
    let entries = 0;
    try {
      env.commitSync(() => {
        const states = new Map<string, { licenseeNumber: string; state: RuntimeState }>();
        entries = applyJournalRecords(
          groups.map((group) => group.record),
          (licenseeNumber) => {
            const key = keyPart(licenseeNumber);
            let latest = states.get(key);
            if (latest === undefined) states.set(key, (latest = { licenseeNumber, state: storedRuntime(licenseeNumber) }));
            return latest.state;
          },
        );
        for (const group of groups) {
          journalDb.putSync(group.firstSeq, group.record);
          for (const { key, value } of group.extras) metaDb.putSync(key, value);
        }
        for (const [key, latest] of states) runtimeDb.putSync(key, latest);
        noteRuntimeWritten(states.keys());
        metaDb.putSync('journalHead', { seq: last.lastSeq, hash: journalRecordHead(last.record).hash });
        metaDb.putSync(WAL_RESUME_KEY, last.end);
      });
    } catch (cause) {
      throw wrapWriteError(cause);
    }
    options.onRecovered?.(entries);
  };
  /** Recovery at open, where no server holds the database (a server recovers when it claims it). */
  if (!options.readOnly && existsSync(walPath)) {
    let lock: HeldLock | undefined;
    try {
      lock = acquireExclusiveLock(join(path, RUNTIME_WRITER_LOCK), `pid ${process.pid}, applying ${WAL_FILE}`);
    } catch (error) {
      if (!(error instanceof LockHeldError)) throw error;
    }
    try {
      if (lock) recoverRuntimeJournal();
    } catch (error) {
      void env.close();
      throw error;
    } finally {
      lock?.release();
    }
  }

  // Runtime writes of a serving process (runtime-writer.ts): created on first use, so
  // that read-only users of the store (status, verify, backup) never hold its memory.
  let replayHeadInMemory: number | undefined;
  /** Whether this process has indexed the replay entries written without an index (replayOfKey). */
  let replayIndexChecked = false;
  let writerLock: HeldLock | undefined;
  /** The runtime-writer lock (one serving agent or maintenance action per database). */
  const takeWriterLock = (describe: string): HeldLock => {
    try {
      return acquireExclusiveLock(join(path, RUNTIME_WRITER_LOCK), describe);
    } catch (error) {
      if (error instanceof LockHeldError) throw new RuntimeWriterTakenError(path, error.holder);
      throw error;
    }
  };
  /** Inside `exclusively` (the lock held without a runtime writer). */
  let exclusive = false;
  /** Runs a step of journal-fold.ts inside `exclusively`. */
  const folding = <T>(step: (deps: FoldDependencies) => T): T => {
    if (!exclusive) throw new StoreError('io', 'the journal is folded only inside exclusively (no agent may serve the database meanwhile)');
    try {
      return step({
        env,
        journalDb,
        metaDb,
        readJournalHead: journalHead,
        brokenChain: (message) => new StoreError('corrupt', `${message}: run --action=verify-database`),
        misuse: (message) => new StoreError('io', message),
        markFolded: () => metaDb.putSync('meta', { ...readMeta(), schemaVersion: SCHEMA_VERSION_FOLDED }),
      });
    } catch (cause) {
      throw wrapWriteError(cause);
    }
  };
  let writer: RuntimeWriter | undefined;
  let wal: RuntimeWalFile | undefined;
  const openWal = (): RuntimeWalFile => {
    try {
      return openRuntimeWal(walPath, {
        preallocateBytes: walRewindAtBytes + WAL_SLACK_BYTES,
        ...(options.failWrites ? { failWrites: options.failWrites } : {}),
        ...(options.failJournalWritesAfterLanding ? { failWritesAfterLanding: options.failJournalWritesAfterLanding } : {}),
      });
    } catch (cause) {
      throw wrapWriteError(new Error(`cannot open ${walPath}: ${(cause as Error).message}`, { cause }));
    }
  };
  const runtimeWriter = (): RuntimeWriter =>
    (writer ??= createRuntimeWriter({
      env: options.failCheckpoints ? withFailingBatches(env, options.failCheckpoints) : env,
      runtimeDb,
      journalDb,
      metaDb,
      keyOf: keyPart,
      readJournalHead: journalHead,
      journalGroupRecord,
      wrapWriteError,
      wal: (wal = openWal()),
      databaseId: readMeta().databaseId,
      walOffset: (metaDb.get(WAL_RESUME_KEY) as number | undefined) ?? 0,
      rewindAtBytes: walRewindAtBytes,
      onReload: (pendingExtras) => {
        // The newest replay entry of the durable groups not yet in LMDB, else LMDB's (read at the
        // next use): LMDB's alone lags them, and a new entry would take an acknowledged one's number.
        let head: number | undefined;
        for (const { key, value } of pendingExtras) {
          if (Array.isArray(key) && key[0] === REPLAY_HEAD_KEY[0] && key[1] === REPLAY_HEAD_KEY[1]) head = Math.max(head ?? 0, value as number);
        }
        replayHeadInMemory = head;
      },
      ...(options.onCheckpointError ? { onCheckpointError: options.onCheckpointError } : {}),
      onCheckpointed: noteRuntimeWritten,
      ...(options.checkpointEveryGroups === undefined ? {} : { checkpointEveryGroups: options.checkpointEveryGroups }),
      ...(options.checkpointQuietMs === undefined ? {} : { checkpointQuietMs: options.checkpointQuietMs }),
      ...(options.checkpointRetryMs === undefined ? {} : { checkpointRetryMs: options.checkpointRetryMs }),
    }));

  /** The proxy's refresh of one licensee: definitions and runtime in one durable transaction (run exclusively). */
  const refreshInTx = async <T>(licenseeNumber: string, atMs: number, action: (tx: RefreshTransaction) => T): Promise<T> => {
      // Set once the transaction that added the missing index records has committed.
      let indexedHere = false;
      let runtimeWritten = false;
      try {
        const result = await env.commitDurable(() => {
          let state = storedRuntime(licenseeNumber);
          // Definitions change: readers that cache them (store/definitions-cache.ts) must drop their cache.
          metaDb.putSync(VERSION_KEY, definitionsVersion() + 1);
          return action({
            ...importTransaction(),
            runtime: () => state,
            replayEntries: () => {
              // Once per process: no other writer has run while this one holds the runtime-writer lock.
              if (!replayIndexChecked && !indexedHere) {
                for (const { value } of metaDb.getRange({ start: replayKey(0), end: replayKey(Number.MAX_SAFE_INTEGER) })) {
                  const entry = value as ReplayEntry;
                  const key = replayOfKey(entry.licenseeNumber, entry.seq);
                  if (metaDb.get(key) === undefined) metaDb.putSync(key, 1);
                }
                indexedHere = true;
              }
              const entries: ReplayEntry[] = [];
              for (const key of metaDb.getKeys({ start: replayOfKey(licenseeNumber, 0), end: replayOfKey(licenseeNumber, Number.MAX_SAFE_INTEGER) })) {
                const entry = metaDb.get(replayKey((key as unknown[])[3] as number)) as ReplayEntry | undefined;
                if (entry !== undefined) entries.push(entry);
              }
              return entries;
            },
            appendRuntimeEvents: (events) => {
              if (events.length === 0) return;
              appendRuntimeEvents(licenseeNumber, atMs, state, events);
              runtimeWritten = true;
              state = applyEvents(state, events);
            },
            dropReplayEntry: (seq) => {
              if (seq > replayCursor()) throw new Error(`replay entry ${seq} is not acknowledged yet and cannot be dropped`);
              metaDb.removeSync(replayKey(seq));
              metaDb.removeSync(replayOfKey(licenseeNumber, seq));
            },
          });
        });
        if (indexedHere) replayIndexChecked = true;
        // Noted once committed: a reader that looks again then reads the new record.
        if (runtimeWritten) noteRuntimeWritten([keyPart(licenseeNumber)]);
        return result;
      } catch (cause) {
        throw wrapWriteError(cause);
      } finally {
        forgetVersionOfTurn();
      }
  };

  /** Write access to the served generation (importTransaction, proxy refresh); valid inside a write transaction only. */
  const importTransaction = (): ImportTransaction => {
    const gen = served();
    return {
      get: (kind, number) => getIn(gen, kind, number),
      put: (entity) => putIn(gen, entity),
      remove: (kind, number) => removeIn(gen, kind, number),
      childNumbers: (kind, parent) => childNumbersIn(gen, kind, parent),
      *entities(kind) {
        for (const { value } of gen.def[kind].getRange({})) yield value;
      },
      ...metaAccess,
    };
  };
  const metaAccess: SwitchTransaction = {
    meta: readMeta,
    setMeta: (meta) => metaDb.putSync('meta', meta),
    setCardCheckpoint: (record) => {
      if (record === undefined) metaDb.removeSync(CARD_CHECKPOINT_KEY);
      else metaDb.putSync(CARD_CHECKPOINT_KEY, record);
    },
  };

  /** Disk full and I/O failures of a synchronous definitions write as StoreError; other errors (bad input…) unchanged. */
  const definitionsWrite = <T>(action: () => T): T => {
    try {
      return env.commitSync(action);
    } catch (cause) {
      if (cause instanceof Error && !(cause instanceof StoreError) && isDiskFull(cause.message)) {
        throw wrapWriteError(cause);
      }
      throw cause;
    } finally {
      forgetVersionOfTurn();
    }
  };

  const beginStagedImport = (begin: BeginStagingOptions): StagedImport => {
    const claim = definitionsWrite((): StagingClaim => {
      const previous = metaDb.get(STAGING_KEY) as StagingClaim | undefined;
      if (previous && previous.pid !== process.pid && claimAlive(previous)) {
        throw new StagedImportError(
          'busy',
          `another import into ${path} is running (process ${previous.pid} on ${previous.host}, started ${previous.startedAt}); wait for it to finish`,
        );
      }
      const spare = generationNumber() === 0 ? 1 : 0;
      // A leftover of an interrupted import, or the previous generation after a switch.
      clearGeneration(generation(spare));
      const mine: StagingClaim = {
        id: randomUUID(),
        generation: spare,
        pid: process.pid,
        host: hostname(),
        startedAt: new Date(begin.nowMs).toISOString(),
        claimedAtMs: Date.now(),
        baseVersion: definitionsVersion(),
      };
      metaDb.putSync(STAGING_KEY, mine);
      return mine;
    });
    const staging = generation(claim.generation);
    const base = generation(claim.generation === 0 ? 1 : 0);
    const ours = () => (metaDb.get(STAGING_KEY) as StagingClaim | undefined)?.id === claim.id;
    const checkClaim = () => {
      if (!ours()) {
        throw new StagedImportError('superseded', `another import into ${path} took over (its staging replaced this one's); nothing was changed by this one`);
      }
    };
    const stagingTx: StagingTransaction = {
      served: (kind, number) => getIn(base, kind, number),
      servedHasAny: (kind) => holdsAny(base.def[kind]),
      servedNotStaged(kind, after, limit) {
        const keys: string[] = [];
        const range = after === undefined ? { limit } : { start: after, limit: limit + 1 };
        for (const key of base.def[kind].getKeys(range)) {
          if (key === after) continue;
          keys.push(key as string);
          if (keys.length === limit) break;
        }
        const entities: Entity[] = [];
        for (const key of keys) {
          if (staging.def[kind].doesExist(key)) continue;
          const entity = base.def[kind].get(key);
          if (entity !== undefined) entities.push(entity);
        }
        return { entities, last: keys.length === limit ? keys[keys.length - 1] : undefined };
      },
      isStaged: (kind, number) => staging.def[kind].doesExist(keyPart(number)),
      stage(entity, stageOptions) {
        if (!staging.def[entity.kind].putSync(keyPart(entity.number), entity, { noOverwrite: true })) return false;
        const parent = parentOf(entity);
        if (parent !== undefined) staging.rel[entity.kind].putSync(relKey(parent, entity.number), entity.number);
        if (entity.kind === 'Licensee') {
          const yieldAliases = stageOptions?.aliasesYield === true;
          for (const alias of aliasesOf(entity)) staging.alias.putSync(keyPart(alias), entity.number, { noOverwrite: yieldAliases });
        }
        return true;
      },
    };
    return {
      batch(action) {
        const result = definitionsWrite(() => {
          checkClaim();
          return action(stagingTx);
        });
        // Thousands of batches would otherwise leave the database's pages mapped (lmdb.ts).
        env.releaseMappedPages();
        return result;
      },
      commit(action) {
        const result = definitionsWrite(() => {
          checkClaim();
          if (definitionsVersion() !== claim.baseVersion) {
            throw new StagedImportError(
              'definitions_changed',
              `the served definitions were changed by another writer while this import ran (e.g. run-agent refreshing a licensee); nothing was changed, run the import again`,
            );
          }
          const value = action(metaAccess);
          // The commit point: from here on every reader sees the new generation.
          metaDb.putSync(GENERATION_KEY, claim.generation);
          metaDb.putSync(VERSION_KEY, definitionsVersion() + 1);
          metaDb.removeSync(STAGING_KEY);
          return value;
        });
        return result;
      },
      cleanup() {
        // The previous generation is garbage now (unless another import has begun meanwhile).
        try {
          definitionsWrite(() => {
            if (generationNumber() === claim.generation && metaDb.get(STAGING_KEY) === undefined) clearGeneration(base);
          });
        } catch {
          // left for the next import
        }
      },
      abort() {
        try {
          definitionsWrite(() => {
            if (!ours()) return;
            clearGeneration(staging);
            metaDb.removeSync(STAGING_KEY);
          });
        } catch {
          // left for the next import
        }
      },
    };
  };

  return {
    path,
    meta: readMeta,
    getEntity,
    listEntities(kind, listOptions = {}) {
      const offset = listOptions.offset ?? 0;
      const limit = listOptions.limit ?? Number.MAX_SAFE_INTEGER;
      const gen = served();
      if (listOptions.parent !== undefined) {
        const all = childNumbersIn(gen, kind, listOptions.parent);
        const items = all
          .slice(offset, offset + limit)
          .map((n) => getIn(gen, kind, n))
          .filter((e): e is Entity => e !== undefined);
        return { items, total: all.length };
      }
      const db = gen.def[kind];
      const items: Entity[] = [];
      for (const { value } of db.getRange({ offset, limit })) items.push(value);
      return { items, total: db.getCount({}) };
    },
    entitiesAfter(kind, after, limit) {
      const items: Entity[] = [];
      let last: string | undefined;
      const range = after === undefined ? { limit } : { start: after, limit: limit + 1 };
      for (const { key, value } of served().def[kind].getRange(range)) {
        if (key === after) continue;
        items.push(value);
        last = key as string;
        if (items.length === limit) break;
      }
      return { items, last: items.length === limit ? last : undefined };
    },
    children,
    resolveLicensee(numberOrAlias) {
      const gen = served();
      const direct = getIn(gen, 'Licensee', numberOrAlias);
      if (direct) return direct;
      const number = gen.alias.get(keyPart(numberOrAlias));
      return number === undefined ? undefined : getIn(gen, 'Licensee', number);
    },
    loadLicenseeAssets(licensee) {
      const gen = served();
      const productNumber = licensee.props['productNumber'];
      const shared = productNumber === undefined ? undefined : productAssetsIn(gen, productNumber);
      return shared && { ...shared, licensee, licenses: childrenIn(gen, 'License', licensee.number) };
    },
    loadProductAssets: (productNumber) => productAssetsIn(served(), productNumber),
    getRuntime(licenseeNumber) {
      return storedRuntime(licenseeNumber);
    },
    commitRuntime(licenseeNumber, atMs, decide) {
      return runtimeWriter().commit(licenseeNumber, atMs, decide);
    },
    runtimeRevision: (licenseeNumber) => runtimeWriter().revision(licenseeNumber),
    settled: () => writer?.settled() ?? Promise.resolve(),
    *journal(fromSeq = 1) {
      // Records below the base are a stopped fold's leftovers (journal-fold.ts): never read.
      const start = Math.max(fromSeq, (readJournalBase(metaDb)?.throughSeq ?? 0) + 1);
      for (const { value } of journalDb.getRange({ start: recordKeyHolding(start) ?? start })) {
        for (const entry of entriesOfRecord(value)) if (entry.seq >= start) yield entry;
      }
    },
    journalHead,
    sealableJournalHead: () => writer?.checkpointedHead() ?? journalHead(),
    journalHashAt: (seq) => {
      const base = readJournalBase(metaDb);
      if (base !== undefined && seq <= base.throughSeq) return seq === base.throughSeq ? base.throughHash : undefined;
      if (seq === 0) return GENESIS_HASH;
      const key = recordKeyHolding(seq);
      const record = key === undefined ? undefined : journalDb.get(key);
      return record === undefined ? undefined : entriesOfRecord(record).find((entry) => entry.seq === seq)?.hash;
    },
    journalBase: () => readJournalBase(metaDb),
    *journalBaseStates() {
      const base = readJournalBase(metaDb);
      if (base !== undefined) yield* foldStates(metaDb, base.markerSeq);
    },
    journalPendingFold: () => readPendingFold(metaDb),
    *journalPendingStates() {
      const pending = readPendingFold(metaDb);
      if (pending !== undefined) yield* foldStates(metaDb, pending.markerSeq);
    },
    exclusively(describe, action) {
      if (writerLock || writer) throw new StoreError('io', 'exclusively: this process writes runtime changes itself (it serves the database)');
      writerLock = takeWriterLock(describe);
      try {
        recoverRuntimeJournal();
        exclusive = true;
        return action();
      } finally {
        exclusive = false;
        writerLock.release();
        writerLock = undefined;
      }
    },
    foldJournal: (limits, mode) => folding((deps) => foldJournal(deps, limits, mode)),
    promotePendingFold: () => folding(promotePendingFold),
    pendingJournalEntries() {
      const groups = walGroupsAfterHead();
      const last = groups[groups.length - 1];
      return last === undefined ? 0 : last.lastSeq - journalHead().seq;
    },
    cardCheckpoint: () => metaDb.get(CARD_CHECKPOINT_KEY) as StoredCheckpoint | undefined,
    async saveCardCheckpoint(record) {
      try {
        await env.commitDurable(() => metaDb.putSync(CARD_CHECKPOINT_KEY, record));
      } catch (cause) {
        throw wrapWriteError(cause);
      }
    },
    clockMark: () => {
      const value = metaDb.get(CLOCK_MARK_KEY);
      return typeof value === 'number' && Number.isFinite(value) ? value : 0;
    },
    async recordClockMark(atMs) {
      try {
        await env.commitDurable(() => {
          const stored = metaDb.get(CLOCK_MARK_KEY);
          if (typeof stored !== 'number' || stored < atMs) metaDb.putSync(CLOCK_MARK_KEY, atMs);
        });
      } catch (cause) {
        throw wrapWriteError(cause);
      }
    },
    *runtimeEntries() {
      for (const { key, value } of runtimeDb.getRange({})) yield { key, licenseeNumber: value?.licenseeNumber, state: runtimeStateOrAsStored(value) };
    },
    runtimeCount: () => runtimeDb.getCount({}),
    runtimeRecord(key) {
      const value = runtimeDb.get(key);
      return value === undefined ? undefined : { licenseeNumber: value.licenseeNumber, state: runtimeStateOrAsStored(value) };
    },
    runtimeChangesSince(token) {
      const end = changesBase + changedKeys.length;
      if (token === undefined || token < changesBase) return { token: end, keys: undefined };
      return { token: end, keys: changedKeys.slice(token - changesBase) };
    },
    definitionsVersion,
    definitionsVersionOfTurn,
    importTransaction(action) {
      return definitionsWrite(() => {
        const result = action(importTransaction());
        // Readers that cache definitions (store/definitions-cache.ts) drop their cache when this changes.
        metaDb.putSync(VERSION_KEY, definitionsVersion() + 1);
        return result;
      });
    },
    beginStagedImport,
    checkIntegrity: (maxProblems) =>
      checkIntegrity({ meta: metaDb, generations, served: generationNumber(), runtime: runtimeDb, journal: journalDb }, maxProblems),
    definitionsGenerations() {
      const servedNumber = generationNumber();
      const spare = generations[servedNumber === 0 ? 1 : 0];
      let spareEntities = 0;
      if (spare) for (const kind of ENTITY_KINDS) spareEntities += spare.def[kind].getCount({});
      const staging = metaDb.get(STAGING_KEY) as StagingClaim | undefined;
      return { served: servedNumber, ...(staging ? { staging } : {}), spareEntities };
    },
    commitRuntimeWithReplay(licenseeNumber, atMs, decide, describe) {
      return runtimeWriter().commit(licenseeNumber, atMs, decide, (result, events) => {
        // The replay seq is assigned with the decision, in memory (see runtime-writer.ts); reloaded on failure.
        replayHeadInMemory ??= (metaDb.get(REPLAY_HEAD_KEY) as number | undefined) ?? 0;
        const seq = ++replayHeadInMemory;
        const { form, decision } = describe(result, seq);
        const entry: ReplayEntry = { seq, atMs, licenseeNumber, form, decision, events };
        return [
          { key: REPLAY_HEAD_KEY, value: seq },
          { key: replayKey(seq), value: entry },
          { key: replayOfKey(licenseeNumber, seq), value: 1 },
        ];
      });
    },
    replayCursor,
    *replayBacklog() {
      for (const { value } of metaDb.getRange({ start: replayKey(replayCursor() + 1), end: replayKey(Number.MAX_SAFE_INTEGER) })) {
        yield value as ReplayEntry;
      }
    },
    async acknowledgeReplay(seq, ack, conflict) {
      // The entry reaches LMDB with a checkpoint: acknowledge it there, not beside it.
      await writer?.settled();
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
    refreshLicensee(licenseeNumber, atMs, action) {
      // Bypasses the runtime writer's queue (it also changes definitions): run alone, then reload the
      // memory of this licensee, the only one whose runtime state it changes.
      return runtimeWriter().exclusive(licenseeNumber, () => refreshInTx(licenseeNumber, atMs, action));
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
    async removeProxyValues(keys, removable) {
      let removed = 0;
      for (let from = 0; from < keys.length; from += PROXY_REMOVALS_PER_COMMIT) {
        const chunk = keys.slice(from, from + PROXY_REMOVALS_PER_COMMIT);
        try {
          await env.commitDurable(() => {
            for (const key of chunk) {
              const value = metaDb.get(proxyValueKey(key));
              if (value !== undefined && removable(value)) {
                metaDb.removeSync(proxyValueKey(key));
                removed += 1;
              }
            }
          });
        } catch (cause) {
          throw wrapWriteError(cause);
        }
      }
      return removed;
    },
    *proxyValueKeys(prefix) {
      for (const key of metaDb.getKeys({ start: proxyValueKey(prefix), end: [PROXY, 'value', `${prefix}\uffff`] })) {
        const parts = key as unknown[];
        if (typeof parts[2] === 'string' && parts[2].startsWith(prefix)) yield parts[2];
      }
    },
    backup: (target) => env.backup(target),
    claimRuntimeWriter(describe) {
      if (writerLock) return;
      writerLock = takeWriterLock(describe);
      try {
        // Between this store's open and the claim, a server may have run and stopped.
        recoverRuntimeJournal();
        // The journal file is created (and pre-written) now, at start, not by the first write request.
        runtimeWriter();
      } catch (error) {
        writerLock.release();
        writerLock = undefined;
        throw error;
      }
    },
    async close() {
      if (writer) {
        try {
          await writer.drained();
        } catch (error) {
          // Its changes stay durable in the runtime journal file and are applied at the next open.
          options.onCheckpointError?.(error as Error);
        }
        writer.close();
        writer = undefined;
        wal?.close();
        wal = undefined;
      }
      await env.close();
      writerLock?.release();
      writerLock = undefined;
    },
  };
}

