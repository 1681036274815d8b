// Goal: a snapshot of a runtime state (the runtime writer's checkpoints) stays as it was while the
// state goes on changing in place, for every kind of event. Method: a state holding every kind of
// value, a snapshot, every event applied in place (replacing and adding entries), and the snapshot
// compared with a deep copy taken at the same time.
import { expect, test } from 'bun:test';
import { applyEventsInPlace, emptyRuntimeState, snapshotRuntimeState } from '../../src/core/runtime.ts';

const license = (number: string, startDate: string) => ({ number, templateNumber: 'T-TRIAL', startDate });

test('a snapshot keeps its values while the state changes in place', () => {
  const state = emptyRuntimeState();
  applyEventsInPlace(state, [
    { type: 'licenseCreated', license: license('AGENT-1', '2026-01-01T00:00:00.000Z') },
    { type: 'startDateSet', licenseNumber: 'L-1', startDate: '2026-01-01T00:00:00.000Z' },
    { type: 'sessionCheckedOut', moduleNumber: 'M-F', sessionId: 'a', checkedOutMs: 1, expiresMs: 100 },
    { type: 'sessionCheckedOut', moduleNumber: 'M-F', sessionId: 'b', checkedOutMs: 2, expiresMs: 200 },
    { type: 'quantityUsed', licenseNumber: 'L-P', quantity: 3 },
    { type: 'nodeSecretRegistered', moduleNumber: 'M-N', secret: 's1' },
  ]);
  const snapshot = snapshotRuntimeState(state);
  const asItWas = structuredClone(state);
  expect(snapshot).toEqual(asItWas);

  applyEventsInPlace(state, [
    // The same template again: its entry is replaced.
    { type: 'licenseCreated', license: license('AGENT-2', '2026-02-01T00:00:00.000Z') },
    { type: 'startDateSet', licenseNumber: 'L-1', startDate: '2026-02-01T00:00:00.000Z' },
    { type: 'sessionCheckedOut', moduleNumber: 'M-F', sessionId: 'a', checkedOutMs: 1, expiresMs: 300 },
    { type: 'sessionCheckedOut', moduleNumber: 'M-F', sessionId: 'c', checkedOutMs: 3, expiresMs: 400 },
    { type: 'sessionCheckedIn', moduleNumber: 'M-F', sessionId: 'b' },
    { type: 'sessionExpired', moduleNumber: 'M-F', sessionId: 'c' },
    { type: 'sessionCheckedOut', moduleNumber: 'M-G', sessionId: 'x', checkedOutMs: 4, expiresMs: 500 },
    { type: 'quantityUsed', licenseNumber: 'L-P', quantity: 4 },
    { type: 'nodeSecretRegistered', moduleNumber: 'M-N', secret: 's2' },
  ]);
  expect(snapshot).toEqual(asItWas);
  expect(state.sessions['M-F']?.get('a')?.expiresMs).toBe(300);
  expect(state.nodeSecrets['M-N']).toEqual(['s1', 's2']);
});

test('a node secret is registered once: in the list it was applied to, in a copy of it, in a list loaded or changed directly', () => {
  const register = (secret: string) => ({ type: 'nodeSecretRegistered' as const, moduleNumber: 'M-N', secret });
  const state = emptyRuntimeState();
  applyEventsInPlace(state, [register('a'), register('b'), register('a')]);
  expect(state.nodeSecrets['M-N']).toEqual(['a', 'b']);
  // A snapshot's list, then the live one again: each keeps to itself.
  const snapshot = snapshotRuntimeState(state);
  applyEventsInPlace(snapshot, [register('c'), register('b')]);
  applyEventsInPlace(state, [register('b'), register('d')]);
  expect(snapshot.nodeSecrets['M-N']).toEqual(['a', 'b', 'c']);
  expect(state.nodeSecrets['M-N']).toEqual(['a', 'b', 'd']);
  // A list loaded as it was stored, and one changed other than through an event.
  const loaded = { ...emptyRuntimeState(), nodeSecrets: { 'M-N': ['a', 'b'] } };
  applyEventsInPlace(loaded, [register('b'), register('c'), register('c')]);
  loaded.nodeSecrets['M-N']!.push('x');
  applyEventsInPlace(loaded, [register('x'), register('c')]);
  expect(loaded.nodeSecrets['M-N']).toEqual(['a', 'b', 'c', 'x']);
});
