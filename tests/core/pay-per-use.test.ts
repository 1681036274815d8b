/**
 * Goal: Pay-per-Use rules (API spec §6.6) by example — booking order over
 * several licenses, overdraft, reservation, parameter errors, warning levels.
 * Method: validate built assets; state through applyEvents.
 */
import { describe, expect, test } from 'bun:test';
import { USED_QUANTITY_EXCEEDS_REMAINING } from '../../src/core/models/pay-per-use.ts';
import { buildAssets, fresh, item, ms, props, run, type LicenseSpec } from './helpers.ts';

const NOW = ms('2024-03-01T10:00:00Z');

function ppu(licenses: LicenseSpec[]) {
  return buildAssets({
    modules: [{ number: 'M-P', licensingModel: 'PayPerUse', templates: [{ number: 'T-Q', licenseType: 'QUANTITY', props: { quantity: '10' } }] }],
    licenses,
  });
}
const three = ppu([
  { number: 'L1', template: 'T-Q', props: { quantity: '10', usedQuantity: '10' } },
  { number: 'L2', template: 'T-Q', props: { quantity: '10', usedQuantity: '4' } },
  { number: 'L3', template: 'T-Q', props: { quantity: '5' } },
  { number: 'L4', template: 'T-Q', props: { quantity: '50', active: 'false' } },
]);
const answer = (outcome: { envelope: Parameters<typeof item>[0] }) => props(item(outcome.envelope, 'M-P'));

describe('Pay-per-Use', () => {
  test('remaining = Σ quantity − Σ used (imported and booked) of active licenses', () => {
    const { outcome } = run(three, { ...fresh(), usedQuantity: { L2: 1 } }, '', NOW);
    expect(answer(outcome)).toMatchObject({ valid: 'true', remainingQuantity: '10' });
    expect(outcome.events).toEqual([]);
  });

  test('usage is booked on the oldest license with credits, then the next', () => {
    const { outcome, state } = run(three, fresh(), 'productModuleNumber0=M-P&usedQuantity0=8', NOW);
    expect(answer(outcome)).toMatchObject({ valid: 'true', remainingQuantity: '3' });
    expect(outcome.events).toEqual([
      { type: 'quantityUsed', licenseNumber: 'L2', quantity: 6 },
      { type: 'quantityUsed', licenseNumber: 'L3', quantity: 2 },
    ]);
    expect(state.usedQuantity).toEqual({ L2: 6, L3: 2 });
  });

  test('overdraft goes on the last license and warns', () => {
    const { outcome, state } = run(three, fresh(), 'productModuleNumber0=M-P&usedQuantity0=20', NOW);
    expect(answer(outcome)).toMatchObject({ valid: 'false', remainingQuantity: '-9', warningLevel: 'RED' });
    expect(outcome.envelope.infos).toEqual([USED_QUANTITY_EXCEEDS_REMAINING]);
    expect(state.usedQuantity).toEqual({ L2: 6, L3: 14 });
  });

  test('a booking after which the quantity booked on a license is no longer exact (past 2^53 - 1) rejects the request', () => {
    const first = run(three, fresh(), `productModuleNumber0=M-P&usedQuantity0=${Number.MAX_SAFE_INTEGER}`, NOW);
    expect(first.outcome.events).toHaveLength(2);
    {
      // (A reservation never gets there: it is refused beyond the remaining credits.)
      const second = run(three, first.state, `productModuleNumber0=M-P&usedQuantity0=${Number.MAX_SAFE_INTEGER}`, NOW);
      expect(second.outcome.events).toEqual([]);
      expect(second.outcome.envelope.infos).toEqual([
        {
          id: 'MalformedRequestException',
          type: 'ERROR',
          value: `Parameter 'usedQuantity' for product module 'M-P' would make the quantity booked on license 'L3' larger than ${Number.MAX_SAFE_INTEGER}`,
        },
      ]);
    }
  });

  test('using nothing never warns, even when overdrawn', () => {
    const overdrawn = ppu([{ number: 'L1', template: 'T-Q', props: { quantity: '5', usedQuantity: '8' } }]);
    for (const body of ['', 'productModuleNumber0=M-P&usedQuantity0=0']) {
      const { outcome } = run(overdrawn, fresh(), body, NOW);
      expect(answer(outcome)).toMatchObject({ valid: 'false', remainingQuantity: '-3' });
      expect(outcome.envelope.infos).toEqual([]);
      expect(outcome.events).toEqual([]);
    }
  });

  test('the un-indexed form works too', () => {
    const { outcome } = run(three, fresh(), 'productModuleNumber=M-P&usedQuantity=1', NOW);
    expect(answer(outcome)['remainingQuantity']).toBe('10');
  });

  test('a reservation beyond the remaining credits changes nothing', () => {
    const { outcome } = run(three, fresh(), 'productModuleNumber0=M-P&reserveQuantity0=12', NOW);
    expect(answer(outcome)).toMatchObject({ valid: 'false', remainingQuantity: '11' });
    expect(outcome.events).toEqual([]);
    expect(outcome.envelope.infos).toEqual([]);
  });

  test('usedQuantity and reserveQuantity together, negative or non-integer values reject the request', () => {
    for (const body of [
      'productModuleNumber0=M-P&usedQuantity0=1&reserveQuantity0=1',
      'productModuleNumber0=M-P&usedQuantity0=-1',
      'productModuleNumber0=M-P&reserveQuantity0=1.5',
      'productModuleNumber0=M-P&usedQuantity0=',
      'productModuleNumber0=M-P&usedQuantity0=99999999999999999999',
    ]) {
      const { outcome } = run(three, fresh(), body, NOW);
      expect(outcome.envelope.items).toEqual([]);
      expect(outcome.envelope.infos.map((i) => i.id)).toEqual(['MalformedRequestException']);
      expect(outcome.events).toEqual([]);
    }
  });

  test('no license: nothing to book, remaining 0, invalid', () => {
    const { outcome } = run(ppu([]), fresh(), 'productModuleNumber0=M-P&usedQuantity0=3', NOW);
    expect(answer(outcome)).toMatchObject({ valid: 'false', remainingQuantity: '0', warningLevel: 'RED' });
    expect(outcome.events).toEqual([]);
    expect(outcome.envelope.infos).toEqual([USED_QUANTITY_EXCEEDS_REMAINING]);
    const reserve = run(ppu([]), fresh(), 'productModuleNumber0=M-P&reserveQuantity0=0', NOW);
    expect(answer(reserve.outcome)['valid']).toBe('false');
  });

  test('warning level by the share used: < 80 % GREEN, ≥ 80 % YELLOW, nothing left RED', () => {
    const one = ppu([{ number: 'L1', template: 'T-Q', props: { quantity: '10' } }]);
    const level = (used: number) => answer(run(one, fresh(), `productModuleNumber0=M-P&usedQuantity0=${used}`, NOW).outcome)['warningLevel'];
    expect([level(0), level(7), level(8), level(9), level(10)]).toEqual(['GREEN', 'GREEN', 'YELLOW', 'YELLOW', 'RED']);
  });
});
