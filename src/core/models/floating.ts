/**
 * Floating (`Floating`), API spec §6.4: concurrent sessions up to the sum of
 * `maxSessions` of the active FLOATING licenses, checked out and in with
 * `sessionIdN` / `actionN`, each held for `maxCheckoutValidity` seconds.
 *
 * Open sessions come from two places: the agent's runtime state and the
 * `sessionId_<id>` properties of imported licenses (the cloud's sessions at
 * export time; value = check-out timestamp). A runtime entry for an id
 * overrides the imported one; an already expired runtime entry therefore
 * masks an imported session that a client has checked in.
 */
import type { Property } from '../envelope.ts';
import { ownEntry, rememberSessionTableOrder, sessionTableOrder, type RuntimeEvent } from '../runtime.ts';
import { intProp } from '../entities.ts';
import { LAST_FOUR_DIGIT_YEAR_MS, parseIso, toIso } from '../time.ts';
import {
  checkStoredId,
  MalformedParameterError,
  capacityWarningLevel,
  licenseInt,
  ofType,
  parseInteger,
  type ModelContext,
  type ModelResult,
} from './common.ts';

/** Used when the module has no usable `maxCheckoutValidity` (the cloud makes it mandatory). */
export const DEFAULT_MAX_CHECKOUT_VALIDITY_SECONDS = 300;

export const SESSION_PROPERTY_PREFIX = 'sessionId_';

const NO_SESSIONS: ReadonlyMap<string, KnownSession> = new Map();

interface KnownSession {
  checkedOutMs: number;
  expiresMs: number;
}

// Imported session properties of a license, parsed once per license definition (definitions
// are immutable; a re-import brings new objects): pure memoisation, weakly held. In check-out
// order, so in expiry order too (one validity per module for imported sessions).
const IMPORTED_SESSIONS = new WeakMap<Record<string, string>, [id: string, checkedOutMs: number][]>();

function importedSessionsOf(props: Record<string, string>): [id: string, checkedOutMs: number][] {
  let sessions = IMPORTED_SESSIONS.get(props);
  if (sessions === undefined) {
    sessions = [];
    for (const name in props) {
      if (!name.startsWith(SESSION_PROPERTY_PREFIX) || name.length === SESSION_PROPERTY_PREFIX.length) continue;
      const checkedOutMs = parseIso(props[name]);
      if (checkedOutMs !== undefined) sessions.push([name.slice(SESSION_PROPERTY_PREFIX.length), checkedOutMs]);
    }
    sessions.sort((a, b) => a[1] - b[1]);
    IMPORTED_SESSIONS.set(props, sessions);
  }
  return sessions;
}

/** Index of the first session in `sessions` (check-out order) still open at `nowMs`; its length if none. */
function firstOpenImported(sessions: readonly [string, number][], validityMs: number, nowMs: number): number {
  let low = 0;
  let high = sessions.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sessions[middle]![1] + validityMs <= nowMs) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** What validateFloating needs of the runtime sessions at `nowMs`. */
export interface SessionWalk {
  live: number;
  /** Infinity when none is live. */
  earliestLiveExpiryMs: number;
  /** The expired sessions' ids, in the table's order. */
  expiredIds: string[];
}

/**
 * Counts the live sessions of a table and lists the expired ones. In a table known to be in
 * expiry order (runtime.ts, SessionTableOrder) the expired ones come first and the walk stops at
 * the first live one; any other table is walked in full, which records whether it is in order.
 */
export function walkSessions(table: ReadonlyMap<string, KnownSession>, nowMs: number): SessionWalk {
  const expiredIds: string[] = [];
  if (sessionTableOrder(table)?.byExpiry) {
    for (const [id, session] of table) {
      if (session.expiresMs > nowMs) return { live: table.size - expiredIds.length, earliestLiveExpiryMs: session.expiresMs, expiredIds };
      expiredIds.push(id);
    }
    return { live: 0, earliestLiveExpiryMs: Number.POSITIVE_INFINITY, expiredIds };
  }
  let live = 0;
  let earliestLiveExpiryMs = Number.POSITIVE_INFINITY;
  let byExpiry = true;
  let lastExpiresMs = Number.NEGATIVE_INFINITY;
  for (const [id, session] of table) {
    const expiresMs = session.expiresMs;
    if (expiresMs > nowMs) {
      live += 1;
      if (expiresMs < earliestLiveExpiryMs) earliestLiveExpiryMs = expiresMs;
    } else expiredIds.push(id);
    if (expiresMs < lastExpiresMs) byExpiry = false;
    else lastExpiresMs = expiresMs;
  }
  if (table.size > 0) rememberSessionTableOrder(table, { byExpiry, lastExpiresMs });
  return { live, earliestLiveExpiryMs, expiredIds };
}

export function validateFloating(ctx: ModelContext): ModelResult {
  const moduleNumber = ctx.module.number;
  const action = ctx.params['action'];
  const sessionId = ctx.params['sessionId'];
  if (action !== undefined && action !== 'checkOut' && action !== 'checkIn') {
    throw new MalformedParameterError(moduleNumber, 'action', `must be 'checkOut' or 'checkIn', got '${action}'`);
  }
  if (action !== undefined && (sessionId === undefined || sessionId === '')) {
    throw new MalformedParameterError(moduleNumber, 'sessionId', `is required with action '${action}'`);
  }
  // Refused since schema 1, whose session tables were plain objects (this id replaced their
  // prototype); the tables are Maps now, and clients keep getting the same answer.
  if (sessionId === '__proto__') throw new MalformedParameterError(moduleNumber, 'sessionId', "may not be '__proto__'");
  checkStoredId(moduleNumber, 'sessionId', sessionId);
  const moduleValidity = intProp(ctx.module, 'maxCheckoutValidity');
  const moduleValiditySeconds =
    moduleValidity !== undefined && moduleValidity > 0 ? moduleValidity : DEFAULT_MAX_CHECKOUT_VALIDITY_SECONDS;
  let validitySeconds = moduleValiditySeconds;
  const override = ctx.params['maxCheckoutValidity'];
  if (override !== undefined) {
    const parsed = /^\d+$/.test(override) ? parseInteger(override) : undefined;
    if (parsed === undefined || parsed <= 0) {
      throw new MalformedParameterError(moduleNumber, 'maxCheckoutValidity', `must be a positive number of seconds, got '${override}'`);
    }
    validitySeconds = parsed;
  }

  const licenses = ofType(ctx.licenses, 'FLOATING');
  const capacity = licenses.reduce((sum, view) => sum + Math.max(0, licenseInt(view, 'maxSessions') ?? 0), 0);

  // Most exports carry no open sessions: then no table is made. Only the imported sessions still
  // open are taken (every use below asks isLive first), found by a binary search: walking all of
  // them cost ~6 ms per request with 50,000 imported, long after they had expired.
  let importedTable: Map<string, KnownSession> | undefined;
  const importedValidityMs = moduleValiditySeconds * 1000;
  for (const view of licenses) {
    const sessions = importedSessionsOf(view.props);
    for (let i = firstOpenImported(sessions, importedValidityMs, ctx.nowMs); i < sessions.length; i++) {
      const [id, checkedOutMs] = sessions[i]!;
      const expiresMs = checkedOutMs + importedValidityMs;
      importedTable ??= new Map();
      const known = importedTable.get(id);
      if (known === undefined || known.expiresMs < expiresMs) importedTable.set(id, { checkedOutMs, expiresMs });
    }
  }
  const imported: ReadonlyMap<string, KnownSession> = importedTable ?? NO_SESSIONS;
  const runtimeSessions: ReadonlyMap<string, KnownSession> = ownEntry(ctx.runtime.sessions, moduleNumber) ?? NO_SESSIONS;
  const isLive = (session: KnownSession | undefined): session is KnownSession => {
    if (session === undefined || session.expiresMs <= ctx.nowMs) return false;
    ctx.changesAt(session.expiresMs);
    return true;
  };
  // A runtime entry for an id overrides the imported one (see the file comment).
  const walk = walkSessions(runtimeSessions, ctx.nowMs);
  let used = walk.live;
  const expiredRuntimeIds = walk.expiredIds;
  // isLive, written out: one changesAt for the earliest expiry instead of one per open session.
  if (used > 0) ctx.changesAt(walk.earliestLiveExpiryMs);
  for (const [id, session] of imported) if (!runtimeSessions.has(id) && isLive(session)) used += 1;
  const sessionOf = (id: string): KnownSession | undefined => runtimeSessions.get(id) ?? imported.get(id);

  const events: RuntimeEvent[] = [];
  const properties: Property[] = [];
  const nowMs = ctx.nowMs;
  if (action === 'checkOut' && sessionId !== undefined) {
    const existing = sessionOf(sessionId);
    // Never after the last instant an answer can name (a validity of 10^12 s means "for good").
    const expiresMs = Math.min(nowMs + validitySeconds * 1000, LAST_FOUR_DIGIT_YEAR_MS);
    ctx.changesAt(nowMs);
    // An open session is extended unless the pool is over-full (imported sessions beyond a pool the
    // vendor shrank): then it may run out, so the pool shrinks back to its capacity.
    if (isLive(existing) && used <= capacity) {
      events.push({ type: 'sessionCheckedOut', moduleNumber, sessionId, checkedOutMs: existing.checkedOutMs, expiresMs });
      properties.push(['valid', 'true'], ['expirationTimestamp', toIso(expiresMs)]);
    } else if (!isLive(existing) && used < capacity) {
      events.push({ type: 'sessionCheckedOut', moduleNumber, sessionId, checkedOutMs: nowMs, expiresMs });
      used += 1;
      properties.push(['valid', 'true'], ['expirationTimestamp', toIso(expiresMs)]);
    } else {
      properties.push(['valid', 'false']);
    }
  } else if (action === 'checkIn' && sessionId !== undefined) {
    const importedSession = imported.get(sessionId);
    if (isLive(sessionOf(sessionId))) used -= 1;
    if (isLive(importedSession)) {
      // The imported property cannot be removed: an entry that expires now masks it.
      events.push({ type: 'sessionCheckedOut', moduleNumber, sessionId, checkedOutMs: importedSession.checkedOutMs, expiresMs: nowMs });
    } else if (runtimeSessions.has(sessionId)) {
      events.push({ type: 'sessionCheckedIn', moduleNumber, sessionId });
    }
    properties.push(['valid', 'false']);
  } else {
    // Without an action nothing is checked out, and the model page says valid is true only for a successful checkOut.
    properties.push(['valid', 'false']);
  }

  if (action !== undefined) {
    // Writing anyway: forget expired runtime sessions, unless one still masks a live imported session.
    for (const id of expiredRuntimeIds) {
      if (id === sessionId || isLive(imported.get(id))) continue;
      events.push({ type: 'sessionExpired', moduleNumber, sessionId: id });
    }
  }
  return { properties, lists: [], warningLevel: capacityWarningLevel(used, capacity), events, infos: [] };
}
