/**
 * Goal: product-level validate rules — module selection and order, item
 * layout, inactive licensee/product, offline item, deprecated GET, ttl,
 * unknown models, stray parameters, malformed requests, dryRun and the
 * consistency of events with the answers that assumed them.
 * Method: one product with a module of every model, validated with fixed
 * clocks; outcomes compared with each other and with applyEvents results.
 */
import { describe, expect, test } from 'bun:test';
import type { WireItem } from '../../src/core/envelope.ts';
import { toIso } from '../../src/core/time.ts';
import { METHOD_IS_DEPRECATED, validate } from '../../src/core/validate.ts';
import { DAY_MS, HOUR_MS, buildAssets, fresh, item, list, ms, props, request, run, type AssetsSpec } from './helpers.ts';

const NOW = ms('2024-06-01T12:00:00Z');

const ALL_MODELS: AssetsSpec = {
  licensee: { name: 'Jane', crmCustomerId: 'cust1234', aliases: '["a1"]', markedForTransfer: 'false' },
  modules: [
    { number: 'M-TB', licensingModel: 'TryAndBuy', templates: [{ number: 'T-TRIAL', licenseType: 'TIMEVOLUME', props: { automatic: 'true', timeVolume: '30' } }] },
    { number: 'M-SUB', licensingModel: 'Subscription', templates: [{ number: 'T-SUB', licenseType: 'TIMEVOLUME', props: { timeVolume: '10' } }] },
    { number: 'M-OFF', licensingModel: 'Quota', props: { active: 'false' }, templates: [] },
    { number: 'M-R', licensingModel: 'Rental', templates: [{ number: 'T-DEV', licenseType: 'FEATURE' }, { number: 'T-RTV', licenseType: 'TIMEVOLUME', props: { timeVolume: '5' } }] },
    { number: 'M-F', licensingModel: 'Floating', props: { maxCheckoutValidity: '60' }, templates: [{ number: 'T-F', licenseType: 'FLOATING', props: { maxSessions: '1' } }] },
    { number: 'M-MF', licensingModel: 'MultiFeature', templates: [{ number: 'T-MF', licenseType: 'FEATURE' }] },
    { number: 'M-P', licensingModel: 'PayPerUse', templates: [{ number: 'T-P', licenseType: 'QUANTITY', props: { quantity: '10' } }] },
    { number: 'M-Q', licensingModel: 'Quota', templates: [{ number: 'T-Q', licenseType: 'QUANTITY', props: { quantity: '3' } }] },
    { number: 'M-N', licensingModel: 'NodeLocked', props: { nodeSecretMode: 'CLIENT' }, templates: [{ number: 'T-N', licenseType: 'QUANTITY', props: { quota: '1' } }] },
    {
      number: 'M-PT',
      licensingModel: 'PricingTable',
      props: { skudef: '{"skudef":[{"number":"S1","name":"Seats","type":"QUOTA"}]}' },
      templates: [{ number: 'T-PLAN', licenseType: 'FEATURE', props: { skus: '{"S1":"5"}' } }],
    },
  ],
  licenses: [
    { number: 'L-SUB', template: 'T-SUB', props: { timeVolume: '10' } },
    { number: 'DEV-1', template: 'T-DEV' },
    { number: 'L-RTV', template: 'T-RTV', props: { timeVolume: '5', parentfeature: 'DEV-1', startDate: '2024-05-30T00:00:00Z' } },
    { number: 'L-F', template: 'T-F', props: { maxSessions: '1' } },
    { number: 'L-MF', template: 'T-MF' },
    { number: 'L-P', template: 'T-P', props: { quantity: '10' } },
    { number: 'L-Q', template: 'T-Q', props: { quantity: '3' } },
    { number: 'L-N', template: 'T-N', props: { quota: '1' } },
    { number: 'L-PT', template: 'T-PLAN' },
  ],
};
const ACTIVE_MODULES = ['M-TB', 'M-SUB', 'M-R', 'M-F', 'M-MF', 'M-P', 'M-Q', 'M-N', 'M-PT'];
const WRITING_BODY =
  'productModuleNumber0=M-F&sessionId0=s1&action0=checkOut&productModuleNumber1=M-P&usedQuantity1=4&productModuleNumber2=M-N&nodeSecret2=node-a';

const moduleNumbers = (items: WireItem[]) =>
  items.filter((i) => i.type === 'ProductModuleValidation').map((i) => props(i)['productModuleNumber']);

describe('validate: items', () => {
  const { outcome } = run(buildAssets(ALL_MODELS), fresh(), '', NOW);

  test('one item per active module, in module order; inactive modules skipped', () => {
    expect(moduleNumbers(outcome.envelope.items)).toEqual(ACTIVE_MODULES);
  });

  test('every item: productModuleNumber first, a warningLevel, the modern model name, no duplicates, flat lists', () => {
    for (const i of outcome.envelope.items) {
      const names = i.properties.map(([name]) => name);
      expect(names[0]).toBe('productModuleNumber');
      expect(new Set([...names, ...i.lists.map((l) => l.name)]).size).toBe(names.length + i.lists.length);
      expect(['GREEN', 'YELLOW', 'RED']).toContain(props(i)['warningLevel']!);
      expect(props(i)['licensingModel']).toBeDefined();
      expect(props(i)['productModuleName']).toBeDefined();
      for (const l of i.lists) expect(l.lists).toEqual([]);
      for (const [, value] of i.properties) expect(typeof value).toBe('string');
    }
  });

  test('no Licensee item unless forOfflineUse', () => {
    expect(outcome.envelope.items.every((i) => i.type === 'ProductModuleValidation')).toBe(true);
  });
});

describe('validate: product-level rules', () => {
  test('a product without active modules is a NotFoundException error without items, ttl or events', () => {
    const assets = buildAssets({ modules: [{ number: 'M', licensingModel: 'Quota', props: { active: 'false' }, templates: [] }] });
    const outcome = validate(assets, fresh(), request('', true), { nowMs: NOW, ttlMs: DAY_MS });
    expect(outcome).toEqual({
      envelope: {
        infos: [METHOD_IS_DEPRECATED, { id: 'NotFoundException', type: 'ERROR', value: "Product 'P-TEST' has no active product modules" }],
        items: [],
      },
      events: [],
      stableUntilMs: Number.POSITIVE_INFINITY,
    });
  });

  test('an inactive licensee: every module valid=false and RED, nothing created, booked or bound', () => {
    const assets = buildAssets({ ...ALL_MODELS, licensee: { active: 'false' } });
    const { outcome } = run(assets, fresh(), WRITING_BODY, NOW);
    expect(outcome.events).toEqual([]);
    expect(moduleNumbers(outcome.envelope.items)).toEqual(ACTIVE_MODULES);
    for (const i of outcome.envelope.items) expect(props(i)).toMatchObject({ valid: 'false', warningLevel: 'RED' });
    // Feature lists stay, all off, so clients that look a feature up still find it.
    expect(props(list(item(outcome.envelope, 'M-MF'), 'T-MF'))['valid']).toBe('false');
  });

  test('hidden licenses, and licenses of hidden templates, count like any other, in every model', () => {
    const hidden: AssetsSpec = {
      ...ALL_MODELS,
      modules: ALL_MODELS.modules.map((m) => ({ ...m, templates: m.templates.map((t) => ({ ...t, props: { ...t.props, hidden: 'true', hideLicenses: 'true' } })) })),
      licenses: ALL_MODELS.licenses!.map((l) => ({ ...l, props: { ...l.props, hidden: 'true' } })),
    };
    const shown = run(buildAssets(ALL_MODELS), fresh(), WRITING_BODY, NOW).outcome;
    const asHidden = run(buildAssets(hidden), fresh(), WRITING_BODY, NOW).outcome;
    expect(asHidden.envelope).toEqual(shown.envelope);
    expect(asHidden.events).toEqual(shown.events);
    // The answer does depend on the licenses: without them it differs.
    expect(run(buildAssets({ ...ALL_MODELS, licenses: [] }), fresh(), WRITING_BODY, NOW).outcome.envelope).not.toEqual(shown.envelope);
  });

  test('an inactive product still validates existing licenses, but creates no trial', () => {
    const assets = buildAssets({ ...ALL_MODELS, product: { active: 'false' } });
    const { outcome } = run(assets, fresh(), '', NOW);
    expect(outcome.events.map((e) => e.type)).toEqual(['startDateSet']);
    expect(props(item(outcome.envelope, 'M-TB'))['valid']).toBe('false');
    expect(props(item(outcome.envelope, 'M-Q'))['valid']).toBe('true');
  });

  test('a licensee marked for transfer gets no automatic license', () => {
    const assets = buildAssets({ ...ALL_MODELS, licensee: { markedForTransfer: 'true' } });
    expect(run(assets, fresh(), '', NOW).outcome.events.some((e) => e.type === 'licenseCreated')).toBe(false);
  });

  test('forOfflineUse adds a first Licensee item with the number twice and only custom properties', () => {
    const outcome = validate(buildAssets(ALL_MODELS), fresh(), request('forOfflineUse=true&dryRun=true'), { nowMs: NOW, ttlMs: DAY_MS });
    expect(outcome.envelope.items[0]).toEqual({
      type: 'Licensee',
      properties: [
        ['licenseeNumber', 'I-TEST'],
        ['number', 'I-TEST'],
        ['crmCustomerId', 'cust1234'],
      ],
      lists: [],
    });
    expect(moduleNumbers(outcome.envelope.items)).toEqual(ACTIVE_MODULES);
  });

  test('deprecated GET adds the methodIsDeprecated warning and answers normally', () => {
    const outcome = validate(buildAssets(ALL_MODELS), fresh(), request('dryRun=true', true), { nowMs: NOW, ttlMs: DAY_MS });
    expect(outcome.envelope.infos).toEqual([
      { id: 'methodIsDeprecated', type: 'WARNING', value: "'GET' method for licensee validate is deprecated, use 'POST' instead" },
    ]);
    expect(moduleNumbers(outcome.envelope.items)).toEqual(ACTIVE_MODULES);
  });

  test('ttl is now + ttlMs, capped by the earliest expirationTimestamp in the answer', () => {
    const assets = buildAssets(ALL_MODELS);
    expect(run(assets, fresh(), '', NOW, HOUR_MS).outcome.envelope.ttl).toBe(toIso(NOW + HOUR_MS));
    expect(run(assets, fresh(), WRITING_BODY, NOW, HOUR_MS).outcome.envelope.ttl).toBe(toIso(NOW + 60_000));
    expect(run(assets, fresh(), WRITING_BODY, NOW, 1000).outcome.envelope.ttl).toBe(toIso(NOW + 1000));
    // The cloud omits ttl on a check-in; we keep it because the JS client throws without one.
    const checkIn = run(assets, fresh(), 'productModuleNumber0=M-F&sessionId0=s1&action0=checkIn', NOW, HOUR_MS);
    expect(checkIn.outcome.envelope.ttl).toBe(toIso(NOW + HOUR_MS));
  });

  test('an unsupported model (e.g. Discount) is not licensed and does not disturb the others', () => {
    const assets = buildAssets({
      modules: [
        { number: 'M-D', licensingModel: 'Discount', templates: [] },
        { number: 'M-Q', licensingModel: 'Quota', templates: [{ number: 'T-Q', licenseType: 'QUANTITY' }] },
      ],
      licenses: [{ number: 'L', template: 'T-Q', props: { quantity: '1' } }],
    });
    const { outcome } = run(assets, fresh(), 'productModuleNumber0=M-D&foo0=bar', NOW);
    expect(props(item(outcome.envelope, 'M-D'))).toEqual({
      productModuleNumber: 'M-D',
      valid: 'false',
      productModuleName: 'Module M-D',
      warningLevel: 'RED',
      licensingModel: 'Discount',
    });
    expect(props(item(outcome.envelope, 'M-Q'))['valid']).toBe('true');
  });

  test('parameters for a module the product does not have (or an inactive one) are ignored', () => {
    const assets = buildAssets(ALL_MODELS);
    const plain = run(assets, fresh(), '', NOW).outcome;
    const stray = run(assets, fresh(), 'productModuleNumber0=NOPE&usedQuantity0=-5&productModuleNumber1=M-OFF&usedQuantity1=x', NOW).outcome;
    expect(stray).toEqual(plain);
  });

  test('a malformed parameter rejects the whole request: no items, no events, even from other modules', () => {
    const assets = buildAssets(ALL_MODELS);
    const outcome = validate(assets, fresh(), request(`${WRITING_BODY}&productModuleNumber3=M-P&usedQuantity3=1`.replace('usedQuantity1=4', 'usedQuantity1=lots')), {
      nowMs: NOW,
      ttlMs: DAY_MS,
    });
    expect(outcome.events).toEqual([]);
    expect(outcome.envelope.items).toEqual([]);
    expect(outcome.envelope.ttl).toBeUndefined();
    expect(outcome.envelope.infos).toEqual([
      { id: 'MalformedRequestException', type: 'ERROR', value: "Parameter 'usedQuantity' for product module 'M-P' must be a non-negative integer, got 'lots'" },
    ]);
  });
});

describe('validate: dryRun and events', () => {
  const assets = buildAssets(ALL_MODELS);

  test('dryRun gives the same envelope as the real call and no events', () => {
    const real = validate(assets, fresh(), request(WRITING_BODY), { nowMs: NOW, ttlMs: DAY_MS });
    const dry = validate(assets, fresh(), request(`dryRun=true&${WRITING_BODY}`), { nowMs: NOW, ttlMs: DAY_MS });
    expect(dry.events).toEqual([]);
    expect(dry.envelope).toEqual(real.envelope);
    expect(real.events.map((e) => e.type).sort()).toEqual(['licenseCreated', 'nodeSecretRegistered', 'quantityUsed', 'sessionCheckedOut', 'startDateSet']);
  });

  test('read-only calls (no parameters, nothing new to start) return no events', () => {
    const { state } = run(assets, fresh(), WRITING_BODY, NOW);
    expect(run(assets, state, '', NOW + HOUR_MS).outcome.events).toEqual([]);
  });

  test('the state after applyEvents is the one the answer assumed', () => {
    const first = run(assets, fresh(), WRITING_BODY, NOW);
    const answered = (id: string) => props(item(first.outcome.envelope, id));
    // Read back one hour later, without parameters, from the new state.
    const later = validate(assets, first.state, request(), { nowMs: NOW + HOUR_MS, ttlMs: DAY_MS });
    const now = (id: string) => props(item(later.envelope, id));
    expect(now('M-TB')['evaluationExpires']).toBe(answered('M-TB')['evaluationExpires']!);
    expect(now('M-SUB')['expires']).toBe(answered('M-SUB')['expires']!);
    expect(now('M-P')['remainingQuantity']).toBe(answered('M-P')['remainingQuantity']!);
    // The bound node secret stays valid; the floating seat is held until its expiry.
    expect(props(item(run(assets, first.state, 'productModuleNumber0=M-N&nodeSecret0=node-a', NOW).outcome.envelope, 'M-N'))['valid']).toBe('true');
    const seat = run(assets, first.state, 'productModuleNumber0=M-F&sessionId0=other&action0=checkOut', NOW + 59_999);
    expect(props(item(seat.outcome.envelope, 'M-F'))['valid']).toBe('false');
    expect(first.state.sessions['M-F']?.get('s1')?.expiresMs).toBe(ms(answered('M-F')['expirationTimestamp']!));
  });
});
