/**
 * Goal: the export logic selects exactly the entities a set of licensees
 * needs, in transfer order, with every property and list intact, checks
 * every entity itself (the stand-in ignores filters), and handles the
 * conflicts with and without --force as docs/export.md says.
 * Method: exportAssets driven by the real REST client against the stand-in
 * cloud (2 items per page, filters ignored); a small in-memory source that
 * does honour filters shows the result does not depend on the server's
 * filtering.
 */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import type { Entity, EntityKind } from '../../src/core/entities.ts';
import {
  ExportConflictError,
  exportAssets,
  parseLicenseeList,
  type AssetSource,
  type ExportAssetsOptions,
  type ExportProgress,
} from '../../src/export/export-assets.ts';
import { NetLicensingRestClient, RemoteError, RESOURCE_KIND, type RestResource } from '../../src/export/netlicensing-rest.ts';
import {
  LICENSING_MODELS,
  PLAN_REFUSAL,
  STANDIN_API_KEY,
  STANDIN_LICENSEE_ROLE_KEY,
  STANDIN_LICENSEES,
  STANDIN_MODULES,
  STANDIN_OTHER_LICENSEE,
  STANDIN_PRODUCT,
  STANDIN_SCOPED_KEY,
  STANDIN_VENDOR,
  expectedExport,
  standinDataSet,
  startStandinCloud,
  type StandinCloud,
} from '../support/standin-cloud.ts';

let cloud: StandinCloud;
beforeEach(async () => {
  cloud = await startStandinCloud();
});
afterEach(async () => {
  await cloud.stop();
});

const ALL_LICENSEES = LICENSING_MODELS.map((model) => STANDIN_LICENSEES[model]);
const KIND_ORDER: EntityKind[] = ['Product', 'ProductModule', 'LicenseTemplate'];

function client(): NetLicensingRestClient {
  return new NetLicensingRestClient({
    baseUrl: cloud.url,
    credentials: { kind: 'basic', username: STANDIN_VENDOR.username, password: STANDIN_VENDOR.password },
    sleep: async () => {},
  });
}

async function run(options: ExportAssetsOptions, source: AssetSource = client()) {
  const warnings: string[] = [];
  const progress: ExportProgress[] = [];
  const { entities, report } = exportAssets(source, {
    onWarning: (message) => void warnings.push(message),
    onProgress: (p) => void progress.push(p),
    ...options,
  });
  const out: Entity[] = [];
  for await (const entity of entities) out.push(entity);
  return { entities: out, report, warnings, progress };
}

async function conflictOf(promise: Promise<unknown>): Promise<ExportConflictError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ExportConflictError) return error;
    throw error;
  }
  throw new Error('expected an ExportConflictError');
}

const key = (entity: Entity) => `${entity.kind}:${entity.number}`;
const sortByKey = (entities: Entity[]) => [...entities].sort((a, b) => key(a).localeCompare(key(b)));

/** Checks the transfer order: product, modules, templates, each licensee followed by its licenses, tokens. */
function expectTransferOrder(entities: Entity[]): void {
  let index = 0;
  for (const kind of KIND_ORDER) {
    expect(entities[index]?.kind).toBe(kind);
    while (entities[index]?.kind === kind) index++;
  }
  while (entities[index]?.kind === 'Licensee') {
    const licensee = entities[index++]!;
    while (entities[index]?.kind === 'License') {
      expect(entities[index]!.props['licenseeNumber']).toBe(licensee.number);
      index++;
    }
  }
  while (entities[index]?.kind === 'Token') index++;
  expect(index).toBe(entities.length);
}

/** An in-memory server that honours the filter criteria (the stand-in does not). */
/** A server that applies filters; `loose`: a value matches every value it is a prefix of (not the cloud's way, but possible). */
function filteringSource(entities: Entity[], loose = false): AssetSource & { calls: string[] } {
  const calls: string[] = [];
  return {
    baseUrl: 'memory:',
    calls,
    async get(resource: RestResource, number: string) {
      calls.push(`get ${resource} ${number}`);
      const found = entities.find((e) => e.kind === RESOURCE_KIND[resource] && e.number === number);
      if (!found) {
        throw new RemoteError(`memory: Licensee with the number '${number}' does not exist.`, 'http', {
          url: 'memory:',
          status: 400,
          infos: [{ id: 'NotFoundException', type: 'ERROR', value: 'x' }],
        });
      }
      return found;
    },
    async *list(resource: RestResource, criteria: Record<string, string> = {}) {
      calls.push(`list ${resource} ${JSON.stringify(criteria)}`);
      for (const e of entities) {
        if (e.kind !== RESOURCE_KIND[resource]) continue;
        if (Object.entries(criteria).every(([k, v]) => (loose ? (e.props[k] ?? '').startsWith(v) : e.props[k] === v))) yield e;
      }
    },
  };
}

describe('full export', () => {
  test('all nine licensees: exactly the expected entities, properties and lists unchanged, transfer order', async () => {
    const { entities, report, warnings } = await run({ licensees: ALL_LICENSEES });
    expect(sortByKey(entities)).toEqual(sortByKey(expectedExport()));
    expectTransferOrder(entities);
    expect(entities[0]!.number).toBe(STANDIN_PRODUCT);
    expect(entities.filter((e) => e.kind === 'Licensee').map((e) => e.number)).toEqual(ALL_LICENSEES);
    expect(report.productNumber).toBe(STANDIN_PRODUCT);
    expect(report.licensees).toEqual(ALL_LICENSEES);
    expect(report.counts).toEqual({ Product: 1, ProductModule: 9, LicenseTemplate: 12, Licensee: 9, License: 11, Token: 3 });
    // The stand-in ignored the filters: M-OTHER, T-OTHER, LIC-OTHER and three tokens arrived and were dropped.
    expect(report.ignored).toBe(1 + 1 + 1 + 3);
    expect(warnings).toEqual([]);

    const product = entities[0]!;
    expect(product.props['erpReference']).toBe('ERP-4711');
    expect(product.props['description']).toBe('<p>One module per licensing model</p>\r\n');
    expect(product.lists).toHaveLength(2);
    const nodeLocked = entities.find((e) => e.number === STANDIN_LICENSEES.NodeLocked)!;
    expect(nodeLocked.props['note']).toBe('line 1\r\nline 2 & <tags> "quoted"');
  });

  test('filters are sent for every list, and a server that ignores them is asked twice per kind', async () => {
    await run({ licensees: ALL_LICENSEES });
    const filters = cloud.requests.map((r) => `${r.rawPath.replace('/core/v2/rest/', '')} ${r.filter ?? ''}`);
    expect(filters).toContain(`productmodule productNumber=${STANDIN_PRODUCT};page=0;items=100`);
    expect(filters).toContain(`licensetemplate productModuleNumber=${STANDIN_MODULES.TryAndBuy};page=0;items=100`);
    expect(filters).toContain(`license licenseeNumber=${STANDIN_LICENSEES.TryAndBuy};page=0;items=100`);
    expect(filters).toContain('token tokenType=APIKEY;page=0;items=100');
    // The first filtered answer shows the filter not applied as asked: one unfiltered list then serves
    // the rest (an answer to a looser filter could not be trusted for the other modules or licensees).
    expect(cloud.requests.filter((r) => r.rawPath.endsWith('/licensetemplate') && r.filter?.includes('page=0;'))).toHaveLength(2);
    expect(cloud.requests.filter((r) => r.rawPath.endsWith('/license') && r.filter?.includes('page=0;'))).toHaveLength(2);
    expect(cloud.requests.every((r) => r.method === 'GET')).toBe(true);
  });

  test('a server that honours filters gives the same export (asked per module and per licensee)', async () => {
    const source = filteringSource(standinDataSet());
    const { entities, report } = await run({ licensees: ALL_LICENSEES }, source);
    expect(sortByKey(entities)).toEqual(sortByKey(expectedExport()));
    expectTransferOrder(entities);
    // Only the API key scoped to the other product's licensee matches the filter yet is not exported.
    expect(report.ignored).toBe(1);
    expect(source.calls.filter((c) => c.startsWith('list licensetemplate'))).toHaveLength(9);
    expect(source.calls.filter((c) => c.startsWith('list license '))).toHaveLength(9);
  });

  test('a server that applies a looser filter (by prefix) gives the same export', async () => {
    // L-1 matches L-1 and L-10..: an answer with another licensee's license in it is not the list of all.
    const base = standinDataSet();
    const licensee = base.find((e) => e.number === STANDIN_LICENSEES.Quota)!;
    const license = base.find((e) => e.kind === 'License' && e.props['licenseeNumber'] === STANDIN_LICENSEES.Quota)!;
    const other = `${STANDIN_LICENSEES.Quota}0`;
    const data = [
      ...base,
      { ...licensee, number: other, props: { ...licensee.props, number: other } },
      { ...license, number: 'L-EXTRA', props: { ...license.props, number: 'L-EXTRA', licenseeNumber: other } },
    ];
    const exported = async (source: AssetSource) => sortByKey((await run({ licensees: [STANDIN_LICENSEES.Quota, STANDIN_LICENSEES.Rental] }, source)).entities);
    expect(await exported(filteringSource(data, true))).toEqual(await exported(filteringSource(data)));
  });

  test.each(LICENSING_MODELS)('one licensee (%s): its licenses, the whole product, the API keys that may validate it', async (model) => {
    const number = STANDIN_LICENSEES[model];
    const { entities } = await run({ licensees: [number] });
    expectTransferOrder(entities);
    const data = standinDataSet();
    const ofKind = (kind: EntityKind) => entities.filter((e) => e.kind === kind);
    expect(ofKind('Licensee')).toEqual(data.filter((e) => e.number === number));
    expect(sortByKey(ofKind('License'))).toEqual(
      sortByKey(data.filter((e) => e.kind === 'License' && e.props['licenseeNumber'] === number)),
    );
    expect(ofKind('License').length).toBeGreaterThan(0);
    expect(ofKind('ProductModule').map((e) => e.number).sort()).toEqual(Object.values(STANDIN_MODULES).sort());
    expect(ofKind('ProductModule').find((e) => e.props['licensingModel'] === model)).toBeDefined();
    expect(ofKind('LicenseTemplate')).toHaveLength(12);
    const tokens = ofKind('Token').map((e) => e.number).sort();
    const expectedTokens = [STANDIN_API_KEY, STANDIN_LICENSEE_ROLE_KEY];
    if (model === 'Subscription') expectedTokens.push(STANDIN_SCOPED_KEY);
    expect(tokens).toEqual(expectedTokens.sort());
  });

  test('duplicates and blanks in the request are ignored; request order is kept', async () => {
    expect(parseLicenseeList(' L-QUOTA, L-RENTAL ,,L-QUOTA , ')).toEqual(['L-QUOTA', 'L-RENTAL']);
    const { report } = await run({ licensees: ['L-QUOTA', 'L-RENTAL', 'L-QUOTA'] });
    expect(report.licensees).toEqual(['L-QUOTA', 'L-RENTAL']);
  });

  test('progress reports licensees done out of total and a growing entity count', async () => {
    const { progress, entities } = await run({ licensees: ['L-QUOTA', 'L-RENTAL'] });
    expect(progress[0]).toEqual({ phase: 'licensees', licenseesDone: 0, licenseesTotal: 2, entities: 0 });
    expect(progress.some((p) => p.phase === 'licensees' && p.licenseesDone === 2)).toBe(true);
    // The licenses phase counts again, licensee by licensee (a server that filters: one request each).
    expect(progress.filter((p) => p.phase === 'licenses').map((p) => p.licenseesDone)).toEqual([0, 1, 2]);
    expect(progress.at(-1)).toEqual({ phase: 'done', licenseesDone: 2, licenseesTotal: 2, entities: entities.length });
    const counts = progress.map((p) => p.entities);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
  });
});

describe('entities the server should not have sent', () => {
  test('a license pointing at a template outside the product is left out with a warning', async () => {
    cloud.entities.push({
      kind: 'License',
      number: 'LIC-STRAY',
      props: { number: 'LIC-STRAY', active: 'true', licenseeNumber: 'L-QUOTA', licenseTemplateNumber: 'T-OTHER' },
    });
    const { entities, warnings, report } = await run({ licensees: ['L-QUOTA'] });
    expect(entities.find((e) => e.number === 'LIC-STRAY')).toBeUndefined();
    expect(warnings).toEqual([
      'License "LIC-STRAY" of licensee "L-QUOTA" left out: its license template "T-OTHER" is not part of product "P-AGENT-DEMO"',
    ]);
    expect(report.ignored).toBeGreaterThan(0);
  });

  test('tokens of other types or scoped to other licensees are never exported', async () => {
    const { entities } = await run({ licensees: [STANDIN_LICENSEES.TryAndBuy] });
    const tokens = entities.filter((e) => e.kind === 'Token');
    expect(tokens.every((t) => t.props['tokenType'] === 'APIKEY')).toBe(true);
    expect(tokens.every((t) => t.props['licenseeNumber'] === undefined)).toBe(true);
  });
});

describe('conflicts', () => {
  test('an unknown licensee: error with the cloud wording; --force skips it', async () => {
    const error = await conflictOf(run({ licensees: ['L-QUOTA', 'NOPE', 'ALSO-NOPE'] }));
    expect(error.onlyNotFound).toBe(true);
    expect(error.problems.map((p) => p.number)).toEqual(['NOPE', 'ALSO-NOPE']);
    expect(error.message).toContain("Licensee with the number 'NOPE' does not exist.");
    expect(error.message).toContain('HTTP 400');
    // Nothing beyond the licensees was fetched.
    expect(cloud.requests.every((r) => r.rawPath.includes('/licensee/'))).toBe(true);

    const forced = await run({ licensees: ['L-QUOTA', 'NOPE'], force: true });
    expect(forced.report.licensees).toEqual(['L-QUOTA']);
    expect(forced.report.skipped.map((p) => [p.kind, p.number])).toEqual([['not-found', 'NOPE']]);
    expect(forced.warnings[0]).toStartWith('--force: skipping: Licensee "NOPE" not found');
    expect(forced.entities.some((e) => e.number === 'L-QUOTA')).toBe(true);
  });

  test('a licensee of another product: conflict; --force skips it and keeps the first product', async () => {
    const error = await conflictOf(run({ licensees: ['L-QUOTA', STANDIN_OTHER_LICENSEE] }));
    expect(error.onlyNotFound).toBe(false);
    expect(error.message).toContain(
      `Licensee "${STANDIN_OTHER_LICENSEE}" belongs to product "P-OTHER", the other licensees to "${STANDIN_PRODUCT}"`,
    );
    const forced = await run({ licensees: ['L-QUOTA', STANDIN_OTHER_LICENSEE], force: true });
    expect(forced.report.productNumber).toBe(STANDIN_PRODUCT);
    expect(forced.entities.some((e) => e.number === STANDIN_OTHER_LICENSEE || e.number === 'LIC-OTHER')).toBe(false);
    expect(forced.report.skipped.map((p) => p.kind)).toEqual(['other-product']);
  });

  test('the product is that of the first requested licensee', async () => {
    const forced = await run({ licensees: [STANDIN_OTHER_LICENSEE, 'L-QUOTA'], force: true });
    expect(forced.report.productNumber).toBe('P-OTHER');
    expect(forced.entities.filter((e) => e.kind === 'Licensee').map((e) => e.number)).toEqual([STANDIN_OTHER_LICENSEE]);
    expect(forced.entities.filter((e) => e.kind === 'Token').map((e) => e.number).sort()).toEqual(
      [STANDIN_API_KEY, STANDIN_LICENSEE_ROLE_KEY, '5a0f6c1e-8f0a-4c55-9d0b-3c4c1d9a7e04'].sort(),
    );
  });

  test('nothing left to export even with --force', async () => {
    const error = await conflictOf(run({ licensees: ['NOPE'], force: true }));
    expect(error.message).toBe('none of the requested licensees can be exported');
  });

  test('";" in a licensee number: conflict; --force exports it anyway', async () => {
    cloud.entities.push({ kind: 'Licensee', number: 'L;1', props: { number: 'L;1', productNumber: STANDIN_PRODUCT } });
    const error = await conflictOf(run({ licensees: ['L;1'] }));
    expect(error.problems.map((p) => p.kind)).toEqual(['forbidden-character']);
    expect(error.message).toContain('Licensee "L;1": the number contains "," or ";"');
    const forced = await run({ licensees: ['L;1'], force: true });
    expect(forced.report.licensees).toEqual(['L;1']);
    expect(forced.report.forced.map((p) => p.number)).toEqual(['L;1']);
    // The license filter cannot carry "L;1": it was left out and the client checked the licenses itself.
    expect(cloud.requests.some((r) => r.filter === 'page=0;items=100' && r.rawPath.endsWith('/license'))).toBe(true);
  });

  test('"," in a module number: conflict found at the end; --force exports it anyway', async () => {
    cloud.entities.push({
      kind: 'ProductModule',
      number: 'M,EXTRA',
      props: { number: 'M,EXTRA', productNumber: STANDIN_PRODUCT, licensingModel: 'Quota' },
    });
    const error = await conflictOf(run({ licensees: ['L-QUOTA'] }));
    expect(error.problems).toEqual([
      {
        kind: 'forbidden-character',
        entityKind: 'ProductModule',
        number: 'M,EXTRA',
        message: 'ProductModule "M,EXTRA": the number contains "," or ";", which the agent\'s export/import procedures do not allow',
      },
    ]);
    const forced = await run({ licensees: ['L-QUOTA'], force: true });
    expect(forced.entities.some((e) => e.number === 'M,EXTRA')).toBe(true);
    expect(forced.warnings.some((w) => w.includes('M,EXTRA'))).toBe(true);
  });

  test('a licensee number that cannot be put in a URL is a conflict', async () => {
    const error = await conflictOf(run({ licensees: ['..'] }));
    expect(error.problems.map((p) => p.kind)).toEqual(['unreachable-number']);
  });

  test('a refusal of the cloud (402) ends the export with the cloud text', async () => {
    cloud.addFault({ fault: { kind: 'status', status: 402, id: 'PaymentRequiredException', message: PLAN_REFUSAL }, match: /token/ });
    let error: unknown;
    try {
      await run({ licensees: ['L-QUOTA'] });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(RemoteError);
    expect((error as RemoteError).message).toContain(PLAN_REFUSAL);
  });
});
