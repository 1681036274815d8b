/**
 * Goal: the deprecated Licensee Secret (API spec §4.4, §1.6; choices in docs/semantics.md):
 * DISABLED ignores the request's secret; PREDEFINED compares it with the licensee's
 * `licenseeSecret`; CLIENT binds the first one given and then compares; a mismatch answers the
 * items with valid=false and the cloud's `licenseeSecretMismatch` error info, and changes nothing.
 * Method: validate built assets with a fixed clock; state through applyEvents (helpers.run).
 */
import { describe, expect, test } from 'bun:test';
import { emptyRuntimeState, snapshotRuntimeState } from '../../src/core/runtime.ts';
import { LICENSEE_SECRET_MISMATCH, validate } from '../../src/core/validate.ts';
import { buildAssets, fresh, item, ms, props, request, run, type AssetsSpec } from './helpers.ts';

const NOW = ms('2024-03-01T00:00:00Z');

/** A Pay-per-Use module (so that a write is visible) with 10 credits. */
function assetsWith(spec: Partial<AssetsSpec> = {}) {
  return buildAssets({
    modules: [{ number: 'M-PPU', licensingModel: 'PayPerUse', templates: [{ number: 'T-PPU', licenseType: 'QUANTITY' }] }],
    licenses: [{ number: 'L-PPU', template: 'T-PPU', props: { quantity: '10' } }],
    ...spec,
  });
}

const BOOK = 'productModuleNumber0=M-PPU&usedQuantity0=1';

function answer(outcome: ReturnType<typeof run>['outcome']) {
  return { ...props(item(outcome.envelope, 'M-PPU')), infos: outcome.envelope.infos, events: outcome.events };
}

describe('Licensee Secret', () => {
  test('without a mode (or DISABLED, or an unknown value) the secret is ignored', () => {
    for (const product of [{}, { licenseeSecretMode: 'DISABLED' }, { licenseeSecretMode: 'SOMETHING' }] as Record<string, string>[]) {
      const assets = assetsWith({ product, licensee: { licenseeSecret: 'right' } });
      const result = answer(run(assets, fresh(), `${BOOK}&licenseeSecret=wrong`, NOW).outcome);
      expect(result).toMatchObject({ valid: 'true', remainingQuantity: '9', infos: [] });
      expect(result.events).toHaveLength(1);
    }
  });

  test('PREDEFINED: the licensee secret must be given, exactly', () => {
    const assets = assetsWith({ product: { licenseeSecretMode: 'PREDEFINED' }, licensee: { licenseeSecret: 'right' } });
    expect(answer(run(assets, fresh(), `${BOOK}&licenseeSecret=right`, NOW).outcome)).toMatchObject({ valid: 'true', infos: [] });
    for (const wrong of ['&licenseeSecret=wrong', '&licenseeSecret=RIGHT', '', '&licenseeSecret=']) {
      const { outcome, state } = run(assets, fresh(), `${BOOK}${wrong}`, NOW);
      const result = answer(outcome);
      // The cloud's answer (API spec §1.6): 200 with the items, valid=false, and the error info.
      expect(result).toMatchObject({ valid: 'false', warningLevel: 'RED', licensingModel: 'PayPerUse', remainingQuantity: '10' });
      expect(result.infos).toEqual([LICENSEE_SECRET_MISMATCH]);
      expect(result.infos[0]).toEqual({ id: 'licenseeSecretMismatch', type: 'ERROR', value: 'Licensee secret mismatch' });
      // Nothing booked.
      expect(result.events).toEqual([]);
      expect(state).toEqual(fresh());
    }
  });

  test('PREDEFINED with no secret on the licensee: only a request that gives none matches', () => {
    const assets = assetsWith({ product: { licenseeSecretMode: 'predefined' } });
    expect(answer(run(assets, fresh(), BOOK, NOW).outcome)).toMatchObject({ valid: 'true', infos: [] });
    expect(answer(run(assets, fresh(), `${BOOK}&licenseeSecret=any`, NOW).outcome)).toMatchObject({ valid: 'false', infos: [LICENSEE_SECRET_MISMATCH] });
  });

  test('CLIENT: the first secret given is bound, then it must match', () => {
    const assets = assetsWith({ product: { licenseeSecretMode: 'CLIENT' } });
    // No secret yet and none given: valid, nothing bound.
    let step = run(assets, fresh(), BOOK, NOW);
    expect(answer(step.outcome)).toMatchObject({ valid: 'true', remainingQuantity: '9' });
    expect(step.state.licenseeSecret).toBeUndefined();
    // The first one given is bound, in the same journal entry as the request's booking.
    step = run(assets, step.state, `${BOOK}&licenseeSecret=s1`, NOW);
    expect(answer(step.outcome)).toMatchObject({ valid: 'true', remainingQuantity: '8', infos: [] });
    expect(step.outcome.events[0]).toEqual({ type: 'licenseeSecretBound', secret: 's1' });
    expect(step.state.licenseeSecret).toBe('s1');
    // The same one: valid.
    step = run(assets, step.state, `${BOOK}&licenseeSecret=s1`, NOW);
    expect(answer(step.outcome)).toMatchObject({ valid: 'true', remainingQuantity: '7' });
    // Another one, or none: mismatch, nothing booked, the binding stays.
    for (const other of ['&licenseeSecret=s2', '']) {
      const next = run(assets, step.state, `${BOOK}${other}`, NOW);
      expect(answer(next.outcome)).toMatchObject({ valid: 'false', remainingQuantity: '7', infos: [LICENSEE_SECRET_MISMATCH] });
      expect(next.outcome.events).toEqual([]);
      expect(next.state).toEqual(step.state);
    }
  });

  test('CLIENT: a secret longer than 1,024 characters is not bound: the request is refused, as a session id that long is', () => {
    const assets = assetsWith({ product: { licenseeSecretMode: 'CLIENT' } });
    const long = run(assets, fresh(), `${BOOK}&licenseeSecret=${'s'.repeat(1025)}`, NOW);
    expect(long.outcome.envelope.items).toEqual([]);
    expect(long.outcome.envelope.infos).toEqual([{ id: 'MalformedRequestException', type: 'ERROR', value: "Parameter 'licenseeSecret' is longer than 1024 characters" }]);
    expect(long.outcome.events).toEqual([]);
    const longest = run(assets, fresh(), `${BOOK}&licenseeSecret=${'s'.repeat(1024)}`, NOW);
    expect(longest.state.licenseeSecret).toBe('s'.repeat(1024));
    // Compared, not stored: a long secret given against a bound one is a mismatch, as any other.
    expect(answer(run(assets, longest.state, `${BOOK}&licenseeSecret=${'s'.repeat(1025)}`, NOW).outcome)).toMatchObject({ valid: 'false', infos: [LICENSEE_SECRET_MISMATCH] });
  });

  test('CLIENT: an imported licenseeSecret is the bound one (the cloud bound it, or the vendor set it)', () => {
    const assets = assetsWith({ product: { licenseeSecretMode: 'CLIENT' }, licensee: { licenseeSecret: 'cloud' } });
    expect(answer(run(assets, fresh(), `${BOOK}&licenseeSecret=cloud`, NOW).outcome)).toMatchObject({ valid: 'true' });
    const other = run(assets, fresh(), `${BOOK}&licenseeSecret=mine`, NOW);
    expect(answer(other.outcome)).toMatchObject({ valid: 'false', infos: [LICENSEE_SECRET_MISMATCH] });
    expect(other.state.licenseeSecret).toBeUndefined();
    // Imported after the agent bound one: the imported one counts (a vendor can reset a binding).
    const bound = { ...emptyRuntimeState(), licenseeSecret: 'offline' };
    expect(answer(run(assets, bound, `${BOOK}&licenseeSecret=cloud`, NOW).outcome)).toMatchObject({ valid: 'true' });
    expect(answer(run(assets, bound, `${BOOK}&licenseeSecret=offline`, NOW).outcome)).toMatchObject({ valid: 'false' });
  });

  test('CLIENT: dryRun and an inactive licensee bind nothing', () => {
    const client = assetsWith({ product: { licenseeSecretMode: 'CLIENT' } });
    const dry = run(client, fresh(), `${BOOK}&licenseeSecret=s1&dryRun=true`, NOW);
    expect(answer(dry.outcome)).toMatchObject({ valid: 'true' });
    expect(dry.outcome.events).toEqual([]);
    const inactive = assetsWith({ product: { licenseeSecretMode: 'CLIENT' }, licensee: { active: 'false' } });
    expect(run(inactive, fresh(), `${BOOK}&licenseeSecret=s1`, NOW).outcome.events).toEqual([]);
  });

  test("a module's legacy licenseeSecretMode applies when the product has none; the product's wins", () => {
    const legacy = assetsWith({
      modules: [
        { number: 'M-PPU', licensingModel: 'PayPerUse', props: { licenseeSecretMode: 'PREDEFINED' }, templates: [{ number: 'T-PPU', licenseType: 'QUANTITY' }] },
        { number: 'M-SUB', licensingModel: 'Subscription', templates: [{ number: 'T-SUB', licenseType: 'TIMEVOLUME', props: { timeVolume: '30' } }] },
      ],
      licenses: [
        { number: 'L-PPU', template: 'T-PPU', props: { quantity: '10' } },
        { number: 'L-SUB', template: 'T-SUB', props: { timeVolume: '30', startDate: '2024-02-20T00:00:00Z' } },
      ],
      licensee: { licenseeSecret: 'right' },
    });
    const outcome = run(legacy, fresh(), `${BOOK}&licenseeSecret=wrong`, NOW).outcome;
    // Only the module with the mode is refused; the other is answered as usual.
    expect(props(item(outcome.envelope, 'M-PPU'))).toMatchObject({ valid: 'false' });
    expect(props(item(outcome.envelope, 'M-SUB'))).toMatchObject({ valid: 'true' });
    expect(outcome.envelope.infos).toEqual([LICENSEE_SECRET_MISMATCH]);
    const productWins = buildAssets({
      product: { licenseeSecretMode: 'DISABLED' },
      modules: [{ number: 'M-PPU', licensingModel: 'PayPerUse', props: { licenseeSecretMode: 'PREDEFINED' }, templates: [{ number: 'T-PPU', licenseType: 'QUANTITY' }] }],
      licenses: [{ number: 'L-PPU', template: 'T-PPU', props: { quantity: '10' } }],
      licensee: { licenseeSecret: 'right' },
    });
    expect(answer(run(productWins, fresh(), `${BOOK}&licenseeSecret=wrong`, NOW).outcome)).toMatchObject({ valid: 'true' });
  });

  test('a reused module decision is not handed to a request whose secret does not match', () => {
    const assets = assetsWith({ product: { licenseeSecretMode: 'PREDEFINED' }, licensee: { licenseeSecret: 'right' } });
    const state = fresh();
    const options = { nowMs: NOW, ttlMs: 60_000, reuseModuleResults: true };
    // A read with the right secret leaves a reusable decision; the wrong secret must not get it.
    expect(props(item(validate(assets, state, request('licenseeSecret=right'), options).envelope, 'M-PPU'))).toMatchObject({ valid: 'true' });
    expect(props(item(validate(assets, state, request('licenseeSecret=wrong'), options).envelope, 'M-PPU'))).toMatchObject({ valid: 'false' });
    expect(props(item(validate(assets, state, request('licenseeSecret=right'), options).envelope, 'M-PPU'))).toMatchObject({ valid: 'true' });
  });

  test('the bound secret survives a checkpoint copy', () => {
    const state = { ...emptyRuntimeState(), licenseeSecret: 's1' };
    expect(snapshotRuntimeState(state)).toEqual(state);
    expect(snapshotRuntimeState(emptyRuntimeState())).toEqual(emptyRuntimeState());
    expect('licenseeSecret' in snapshotRuntimeState(emptyRuntimeState())).toBe(false);
  });
});
