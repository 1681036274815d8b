/**
 * Goal: Node-Locked's stored secrets kept between decisions (models/node-locked.ts, storedSecrets)
 * decide exactly as the rule says (API spec §6.8: the secrets of the active licenses and those
 * registered), for ANY sequence of validates (registering, known, unknown, empty secrets; dry
 * runs), re-imports that change the licenses' secrets, quotas and states, and reloads of the
 * runtime state, in both secret modes.
 * Method: fast-check generates the steps; the runtime state keeps its objects and takes events
 * in place, as the runtime writer does. The model's decision is compared with a plain model of
 * the rule; the whole validate's with one on deep copies of assets and state (nothing kept applies).
 */
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import type { Entity } from '../../src/core/entities.ts';
import { capacityWarningLevel, type LicenseView, type ModelContext } from '../../src/core/models/common.ts';
import { validateNodeLocked } from '../../src/core/models/node-locked.ts';
import { applyEventsInPlace, emptyRuntimeState, type RuntimeEvent, type RuntimeState } from '../../src/core/runtime.ts';
import { validate } from '../../src/core/validate.ts';
import { buildAssets, ms, request, type LicenseSpec } from './helpers.ts';

const NOW = ms('2024-03-01T10:00:00Z');
const SECRETS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', ''];

const licenseArb: fc.Arbitrary<LicenseSpec> = fc
  .record({
    quota: fc.integer({ min: 0, max: 4 }),
    secrets: fc.array(fc.constantFrom(...SECRETS), { maxLength: 3 }),
    active: fc.boolean(),
  })
  .map(({ quota, secrets, active }) => ({
    number: '',
    template: 'T-N',
    props: { quota: String(quota), active: String(active), ...Object.fromEntries(secrets.map((secret, i) => [`nodeSecret${i}`, secret])) },
  }));

type Step = { kind: 'validate'; secret: string | undefined; dryRun: boolean } | { kind: 'reimport'; licenses: LicenseSpec[] } | { kind: 'reload' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('validate' as const), secret: fc.option(fc.constantFrom(...SECRETS), { nil: undefined }), dryRun: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reimport' as const), licenses: fc.array(licenseArb, { maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reload' as const) }) },
);

const assetsOf = (mode: string, licenses: LicenseSpec[]) =>
  buildAssets({
    modules: [{ number: 'M-N', licensingModel: 'NodeLocked', props: { nodeSecretMode: mode }, templates: [{ number: 'T-N', licenseType: 'QUANTITY', props: { quota: '1' } }] }],
    licenses: licenses.map((license, i) => ({ ...license, number: `L${i}` })),
  });

test('secrets kept between decisions decide as secrets gathered afresh', () => {
  fc.assert(
    fc.property(fc.constantFrom('CLIENT', 'PREDEFINED'), fc.array(licenseArb, { maxLength: 3 }), fc.array(stepArb, { minLength: 1, maxLength: 40 }), (mode, initial, steps) => {
      let assets = assetsOf(mode, initial);
      let state: RuntimeState = emptyRuntimeState();
      for (const step of steps) {
        if (step.kind === 'reimport') assets = assetsOf(mode, step.licenses);
        else if (step.kind === 'reload') state = structuredClone(state);
        else {
          const form = [`productModuleNumber0=M-N`, ...(step.secret === undefined ? [] : [`nodeSecret0=${step.secret}`]), ...(step.dryRun ? ['dryRun=true'] : [])].join('&');
          const kept = validate(assets, state, request(form), { nowMs: NOW, ttlMs: 60_000 });
          const afresh = validate(structuredClone(assets), structuredClone(state), request(form), { nowMs: NOW, ttlMs: 60_000 });
          expect(kept.envelope).toEqual(afresh.envelope);
          expect(kept.events).toEqual(afresh.events);
          applyEventsInPlace(state, kept.events);
        }
      }
    }),
    { numRuns: 1000 },
  );
});

test('the model decides as a plain model of the rule', () => {
  const template: Entity = { kind: 'LicenseTemplate', number: 'T-N', props: { number: 'T-N', licenseType: 'QUANTITY', quota: '1' } };
  // What validate hands the model: the active licenses only, as views over the license properties.
  const viewsOf = (licenses: LicenseSpec[]): LicenseView[] =>
    licenses
      .filter((license) => license.props!['active'] === 'true')
      .map((license, i) => ({ number: `L${i}`, props: { ...license.props }, template, startMs: undefined, startDateMissing: false, agentCreated: false }));
  fc.assert(
    fc.property(fc.constantFrom('CLIENT', 'PREDEFINED'), fc.array(licenseArb, { maxLength: 3 }), fc.array(stepArb, { minLength: 1, maxLength: 40 }), (mode, initial, steps) => {
      const module: Entity = { kind: 'ProductModule', number: 'M-N', props: { number: 'M-N', nodeSecretMode: mode } };
      let views = viewsOf(initial);
      let state: RuntimeState = emptyRuntimeState();
      for (const step of steps) {
        if (step.kind === 'reimport') views = viewsOf(step.licenses);
        else if (step.kind === 'reload') state = structuredClone(state);
        else {
          const ctx = { module, licenses: views, runtime: state, params: step.secret === undefined ? {} : { nodeSecret: step.secret } } as unknown as ModelContext;
          const result = validateNodeLocked(ctx);
          // The rule, plainly.
          const stored = new Set([...views.flatMap((view) => Object.entries(view.props).filter(([name, value]) => /^nodeSecret\d+$/.test(name) && value !== '').map(([, value]) => value)), ...(state.nodeSecrets['M-N'] ?? [])]);
          const total = views.reduce((sum, view) => sum + Math.max(0, Number(view.props['quota'])), 0);
          const known = step.secret !== undefined && step.secret !== '' && stored.has(step.secret);
          const registers = step.secret !== undefined && step.secret !== '' && !known && mode === 'CLIENT' && stored.size < total;
          const events: RuntimeEvent[] = registers ? [{ type: 'nodeSecretRegistered', moduleNumber: 'M-N', secret: step.secret! }] : [];
          expect(result.properties).toEqual([['valid', String(known || registers)]]);
          expect(result.events).toEqual(events);
          expect(result.warningLevel).toBe(capacityWarningLevel(stored.size + (registers ? 1 : 0), total));
          if (!step.dryRun) applyEventsInPlace(state, result.events);
        }
      }
    }),
    { numRuns: 1000 },
  );
});
