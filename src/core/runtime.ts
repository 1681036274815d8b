/**
 * Runtime state: what the agent itself changes while serving, kept apart
 * from the definitions the cloud exported. A re-import replaces definitions
 * and never touches this, which is why the agent has no "deviation after
 * re-import" (the original loses trial starts, start dates, sessions and
 * used quantities; see the seed manual's Known Limitations).
 *
 * State changes only through RuntimeEvents. `applyEvent` is the single
 * definition of what an event does: the validate path uses it to produce the
 * new state, and `verify-database` uses it to replay the journal and check
 * that the stored state equals the replayed one.
 */

export interface FloatingSession {
  /** When the session was first checked out (ms since epoch). */
  checkedOutMs: number;
  /** Seat is held until this instant; a later check-out of the same id extends it. */
  expiresMs: number;
}

export interface AgentLicense {
  /** Deterministic number, see `agentLicenseNumber`. */
  number: string;
  templateNumber: string;
  startDate: string;
}

export interface RuntimeState {
  /** Licenses the agent created from automatic TIMEVOLUME templates (trial / evaluation start). */
  createdLicenses: Record<string, AgentLicense>;
  /** Start dates the agent set on imported TIMEVOLUME licenses that had none, by license number. */
  startDates: Record<string, string>;
  /** Open Floating sessions: module number → session table (never empty: an emptied table is removed). */
  sessions: Record<string, SessionTable>;
  /** Pay-per-Use quantity written off locally, by license number; added to the imported usedQuantity. */
  usedQuantity: Record<string, number>;
  /** Node-Locked (CLIENT mode) secrets the agent registered: module number → secrets in order. */
  nodeSecrets: Record<string, string[]>;
  /**
   * The Licensee Secret the agent bound (licenseeSecretMode CLIENT, API spec §4.4): the first
   * one a validate gave while the licensee had none. Absent until then.
   */
  licenseeSecret?: string;
}

/**
 * The open sessions of one Floating module, by session id. A Map rather than a
 * plain object: ids come and go on every check-out and check-in, and every
 * validation of the module walks all of them; an object used that way costs
 * ~55 ns per key to walk (JavaScriptCore rebuilds its key list after each
 * change; measured with 64 sessions), a Map a tenth of that.
 */
export type SessionTable = Map<string, FloatingSession>;

/**
 * What is known of a session table's order, for Floating's walk (models/floating.ts): whether
 * its iteration order is one of non-decreasing expiry, and an expiry no smaller than that of its
 * last entry. A check-out re-inserts its session at the end, so with one validity per module
 * (the usual case) the order is the expiry order, and the walk stops at the first live session
 * instead of visiting every one (with 10,000 open sessions a check-out took 207 µs in-process,
 * and `--cpu-prof` put 62 % of its time in the full walk).
 * A cache beside the state, never part of it: a table without an entry (loaded, cloned) is
 * walked in full once, which records what it finds.
 */
export interface SessionTableOrder {
  byExpiry: boolean;
  lastExpiresMs: number;
}

const SESSION_TABLE_ORDER = new WeakMap<SessionTable, SessionTableOrder>();

/**
 * The secrets of a registered-secrets list as a set, kept beside the list while only
 * nodeSecretRegistered (below) adds to it: `includes` over 10,000 secrets took 25 µs per
 * registration. A list met for the first time (loaded, copied) gets one; so does a list whose
 * length no longer matches it (changed other than through the event), as a safety net.
 */
const REGISTERED_SECRET_INDEX = new WeakMap<string[], Set<string>>();

function registeredSecretIndex(secrets: string[]): Set<string> {
  let index = REGISTERED_SECRET_INDEX.get(secrets);
  if (index === undefined || index.size !== secrets.length) {
    index = new Set(secrets);
    REGISTERED_SECRET_INDEX.set(secrets, index);
  }
  return index;
}

export function sessionTableOrder(table: ReadonlyMap<string, FloatingSession>): SessionTableOrder | undefined {
  return SESSION_TABLE_ORDER.get(table as SessionTable);
}

export function rememberSessionTableOrder(table: ReadonlyMap<string, FloatingSession>, order: SessionTableOrder): void {
  SESSION_TABLE_ORDER.set(table as SessionTable, order);
}

/**
 * The entry `key` of a state container (createdLicenses, startDates, sessions, usedQuantity,
 * nodeSecrets): its own entries only. Entity numbers are free text: a module numbered
 * 'constructor' or 'toString' found Object.prototype's member, applying an event threw after its
 * journal sequence was taken (a gap the journal never recovered from), and reads served a function.
 */
export function ownEntry<V>(container: Readonly<Record<string, V>>, key: string): V | undefined {
  return Object.hasOwn(container, key) ? container[key] : undefined;
}

/** Sets an own entry; plain assignment to '__proto__' would replace the container's prototype instead. */
function setOwn<V>(container: Record<string, V>, key: string, value: V): V {
  Object.defineProperty(container, key, { value, writable: true, enumerable: true, configurable: true });
  return value;
}

export type RuntimeEvent =
  | { type: 'licenseCreated'; license: AgentLicense }
  | { type: 'startDateSet'; licenseNumber: string; startDate: string }
  | { type: 'sessionCheckedOut'; moduleNumber: string; sessionId: string; checkedOutMs: number; expiresMs: number }
  | { type: 'sessionCheckedIn'; moduleNumber: string; sessionId: string }
  | { type: 'sessionExpired'; moduleNumber: string; sessionId: string }
  | { type: 'quantityUsed'; licenseNumber: string; quantity: number }
  | { type: 'nodeSecretRegistered'; moduleNumber: string; secret: string }
  | { type: 'licenseeSecretBound'; secret: string };

export function emptyRuntimeState(): RuntimeState {
  return { createdLicenses: {}, startDates: {}, sessions: {}, usedQuantity: {}, nodeSecrets: {} };
}

/** Number of a license the agent creates for `templateNumber`; stable so replays agree. */
export function agentLicenseNumber(licenseeNumber: string, templateNumber: string): string {
  return `AGENT-${licenseeNumber}-${templateNumber}`;
}

/** Returns a new state; the input is not modified (callers may hold it as a snapshot). */
export function applyEvents(state: RuntimeState, events: readonly RuntimeEvent[]): RuntimeState {
  if (events.length === 0) return state;
  const next: RuntimeState = structuredClone(state);
  for (const event of events) applyEventInPlace(next, event);
  return next;
}

/**
 * A copy of `state` that later in-place changes (applyEventsInPlace) do not reach: the runtime
 * writer's checkpoints. Only containers are copied: applyEventInPlace replaces the entries of
 * `createdLicenses` and of the session tables and never changes one, so the entries can be
 * shared; the node-secret lists it appends to are copied. With 50,000 open sessions a copy took
 * 4.4 ms, against 37 ms for structuredClone (which copies every session), and a checkpoint
 * copies a changed licensee's state every ~60 ms under load.
 */
export function snapshotRuntimeState(state: RuntimeState): RuntimeState {
  const sessions: RuntimeState['sessions'] = {};
  for (const moduleNumber in state.sessions) sessions[moduleNumber] = new Map(state.sessions[moduleNumber]);
  const nodeSecrets: RuntimeState['nodeSecrets'] = {};
  for (const moduleNumber in state.nodeSecrets) nodeSecrets[moduleNumber] = [...state.nodeSecrets[moduleNumber]!];
  const copy: RuntimeState = {
    createdLicenses: { ...state.createdLicenses },
    startDates: { ...state.startDates },
    sessions,
    usedQuantity: { ...state.usedQuantity },
    nodeSecrets,
  };
  if (state.licenseeSecret !== undefined) copy.licenseeSecret = state.licenseeSecret;
  return copy;
}

/**
 * Changes `state` itself: for the one owner of a state that no one else holds
 * (the store's runtime writer keeps the latest state of each licensee in
 * memory; copying a big floating pool on every check-out would cost O(pool)).
 */
export function applyEventsInPlace(state: RuntimeState, events: readonly RuntimeEvent[]): void {
  for (const event of events) applyEventInPlace(state, event);
}

function applyEventInPlace(state: RuntimeState, event: RuntimeEvent): void {
  switch (event.type) {
    case 'licenseCreated':
      setOwn(state.createdLicenses, event.license.templateNumber, { ...event.license });
      return;
    case 'startDateSet':
      setOwn(state.startDates, event.licenseNumber, event.startDate);
      return;
    case 'sessionCheckedOut': {
      const sessions = ownEntry(state.sessions, event.moduleNumber) ?? setOwn(state.sessions, event.moduleNumber, new Map());
      // At the end, as the newest: see SessionTableOrder. (An entry removed since then may have
      // had the recorded last expiry: the check stays on the safe side.)
      sessions.delete(event.sessionId);
      const order = SESSION_TABLE_ORDER.get(sessions);
      if (sessions.size === 0) SESSION_TABLE_ORDER.set(sessions, { byExpiry: true, lastExpiresMs: event.expiresMs });
      else if (order !== undefined) {
        order.byExpiry &&= event.expiresMs >= order.lastExpiresMs;
        order.lastExpiresMs = Math.max(order.lastExpiresMs, event.expiresMs);
      }
      sessions.set(event.sessionId, { checkedOutMs: event.checkedOutMs, expiresMs: event.expiresMs });
      return;
    }
    case 'sessionCheckedIn':
    case 'sessionExpired': {
      const sessions = ownEntry(state.sessions, event.moduleNumber);
      if (sessions) {
        sessions.delete(event.sessionId);
        if (sessions.size === 0) delete state.sessions[event.moduleNumber];
      }
      return;
    }
    case 'quantityUsed':
      setOwn(state.usedQuantity, event.licenseNumber, (ownEntry(state.usedQuantity, event.licenseNumber) ?? 0) + event.quantity);
      return;
    case 'nodeSecretRegistered': {
      const secrets = ownEntry(state.nodeSecrets, event.moduleNumber) ?? setOwn(state.nodeSecrets, event.moduleNumber, []);
      const index = registeredSecretIndex(secrets);
      if (!index.has(event.secret)) {
        secrets.push(event.secret);
        index.add(event.secret);
      }
      return;
    }
    case 'licenseeSecretBound':
      // The first binding stays (validate binds only while there is none; a replay agrees).
      state.licenseeSecret ??= event.secret;
      return;
  }
}

// ---------------------------------------------------------------------------
// Forms: what the agent itself writes. verify-database (and a card-bound start) refuse anything
// else, since the served state is used as read: a `usedQuantity` stored as a Map, or a quantity
// stored as a string, compares equal to the replay once normalised (Maps as objects, JSON) and
// is served as no booking at all.

const STATE_FIELDS = new Set(['createdLicenses', 'startDates', 'sessions', 'usedQuantity', 'nodeSecrets', 'licenseeSecret']);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

const isString = (value: unknown): value is string => typeof value === 'string';
/** Quantities are whole units (validate refuses others). */
const isWhole = (value: unknown): value is number => Number.isSafeInteger(value);
/** Times (ms since epoch) are numbers; a session's validity comes from a parameter, so not only whole ones. */
const isTime = (value: unknown): value is number => Number.isFinite(value);

/** What is wrong with the form of a runtime state as stored (session tables as Maps); undefined when nothing. */
export function runtimeStateFormProblem(state: unknown): string | undefined {
  if (!isPlainObject(state)) return 'it is not a plain object';
  for (const field of Object.keys(state)) if (!STATE_FIELDS.has(field)) return `it has a field '${field}'`;
  const record = (field: string, entryProblem: (key: string, value: unknown) => string | undefined): string | undefined => {
    const value = state[field];
    if (value === undefined) return undefined;
    if (!isPlainObject(value)) return `its ${field} is not a plain object`;
    for (const [key, entry] of Object.entries(value)) {
      const problem = entryProblem(key, entry);
      if (problem !== undefined) return `its ${field} '${key}' ${problem}`;
    }
    return undefined;
  };
  return (
    record('createdLicenses', (key, license) =>
      isPlainObject(license) && isString(license['number']) && license['templateNumber'] === key && isString(license['startDate'])
        ? undefined
        : 'is not a license of that template',
    ) ??
    record('startDates', (_key, date) => (isString(date) ? undefined : 'is not a date text')) ??
    record('sessions', (_key, table) => {
      if (!(table instanceof Map)) return 'is not a session table';
      for (const [id, session] of table) {
        if (!isString(id) || !isPlainObject(session) || !isTime(session['checkedOutMs']) || !isTime(session['expiresMs'])) return 'holds a session of another form';
      }
      return undefined;
    }) ??
    // A total, not one booking: validate keeps it exact (pay-per-use.ts), and the replay comparison checks its value.
    record('usedQuantity', (_key, quantity) => (Number.isInteger(quantity) ? undefined : 'is not a whole number')) ??
    record('nodeSecrets', (_key, secrets) => (Array.isArray(secrets) && secrets.every(isString) ? undefined : 'is not a list of texts')) ??
    (state['licenseeSecret'] === undefined || isString(state['licenseeSecret']) ? undefined : 'its licenseeSecret is not a text')
  );
}

/** What is wrong with the form of a runtime event as journaled; undefined when nothing. */
export function runtimeEventFormProblem(event: unknown): string | undefined {
  if (!isPlainObject(event)) return 'an event that is not a plain object';
  const texts = (...fields: string[]) => fields.every((field) => isString(event[field]));
  const ok = ((): boolean => {
    switch (event['type']) {
      case 'licenseCreated': {
        const license = event['license'];
        return isPlainObject(license) && isString(license['number']) && isString(license['templateNumber']) && isString(license['startDate']);
      }
      case 'startDateSet':
        return texts('licenseNumber', 'startDate');
      case 'sessionCheckedOut':
        return texts('moduleNumber', 'sessionId') && isTime(event['checkedOutMs']) && isTime(event['expiresMs']);
      case 'sessionCheckedIn':
      case 'sessionExpired':
        return texts('moduleNumber', 'sessionId');
      case 'quantityUsed':
        return texts('licenseNumber') && isWhole(event['quantity']);
      case 'nodeSecretRegistered':
        return texts('moduleNumber', 'secret');
      case 'licenseeSecretBound':
        return texts('secret');
      default:
        return false;
    }
  })();
  return ok ? undefined : `a ${JSON.stringify(String(event['type'])).slice(0, 60)} event of another form`;
}
