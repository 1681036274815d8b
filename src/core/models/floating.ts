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
import type { RuntimeEvent } from '../runtime.ts';
import { intProp } from '../entities.ts';
import { parseIso, toIso } from '../time.ts';
import {
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

interface KnownSession {
  checkedOutMs: number;
  expiresMs: number;
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

  const imported = new Map<string, KnownSession>();
  for (const view of licenses) {
    for (const [name, value] of Object.entries(view.props)) {
      if (!name.startsWith(SESSION_PROPERTY_PREFIX) || name.length === SESSION_PROPERTY_PREFIX.length) continue;
      const checkedOutMs = parseIso(value);
      if (checkedOutMs === undefined) continue;
      const id = name.slice(SESSION_PROPERTY_PREFIX.length);
      const expiresMs = checkedOutMs + moduleValiditySeconds * 1000;
      const known = imported.get(id);
      if (known === undefined || known.expiresMs < expiresMs) imported.set(id, { checkedOutMs, expiresMs });
    }
  }
  const runtimeSessions = ctx.runtime.sessions[moduleNumber] ?? {};
  const sessions = new Map<string, KnownSession>(imported);
  for (const [id, session] of Object.entries(runtimeSessions)) sessions.set(id, session);
  const isLive = (session: KnownSession | undefined): session is KnownSession =>
    session !== undefined && session.expiresMs > ctx.nowMs;
  let used = [...sessions.values()].filter(isLive).length;

  const events: RuntimeEvent[] = [];
  const properties: Property[] = [];
  const nowMs = ctx.nowMs;
  if (action === 'checkOut' && sessionId !== undefined) {
    const existing = sessions.get(sessionId);
    const expiresMs = nowMs + validitySeconds * 1000;
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
    if (isLive(sessions.get(sessionId))) used -= 1;
    if (isLive(importedSession)) {
      // The imported property cannot be removed: an entry that expires now masks it.
      events.push({ type: 'sessionCheckedOut', moduleNumber, sessionId, checkedOutMs: importedSession.checkedOutMs, expiresMs: nowMs });
    } else if (runtimeSessions[sessionId] !== undefined) {
      events.push({ type: 'sessionCheckedIn', moduleNumber, sessionId });
    }
    properties.push(['valid', 'false']);
  } else {
    // Without an action nothing is checked out, and the model page says valid is true only for a successful checkOut.
    properties.push(['valid', 'false']);
  }

  if (action !== undefined) {
    // Writing anyway: forget expired runtime sessions, unless one still masks a live imported session.
    for (const [id, session] of Object.entries(runtimeSessions)) {
      if (id === sessionId || session.expiresMs > nowMs || isLive(imported.get(id))) continue;
      events.push({ type: 'sessionExpired', moduleNumber, sessionId: id });
    }
  }
  return { properties, lists: [], warningLevel: capacityWarningLevel(used, capacity), events, infos: [] };
}
