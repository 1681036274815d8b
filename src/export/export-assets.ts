/**
 * What export-assets exports, independent of HTTP and files: given a source
 * of NetLicensing entities (the REST client) and the requested licensee
 * numbers, yields the entities in transfer order (src/transfer/types.ts):
 * the Product, its ProductModules, its LicenseTemplates, each Licensee
 * followed by its Licenses, then the API keys that may validate them.
 *
 * Every entity the source returns is checked here (servers may ignore the
 * `filter` parameter); entities that do not belong to the export are dropped
 * and counted in `report.ignored`.
 *
 * Conflicts (docs/export.md, "--force"):
 *   - a requested licensee the server does not know          → skipped with --force
 *   - a licensee of another product than the first one        → skipped with --force
 *   - a number containing `,` or `;` (seed manual)            → exported anyway with --force
 *   - a licensee number `.` or `..` (cannot be sent in a URL)  → skipped with --force
 * Without --force they are collected and thrown together as one
 * ExportConflictError. Licensee problems are found before anything else is
 * fetched; character problems of other entities at the end. A consumer must
 * therefore not commit output before the iteration has completed (the CLI
 * buffers the entities and writes the files afterwards).
 */
import { FORBIDDEN_NUMBER_CHARACTERS, type Entity, type EntityKind } from '../core/entities.ts';
import { RemoteError, type RestResource } from './netlicensing-rest.ts';

/** What the export needs from a server; NetLicensingRestClient implements it. */
export interface AssetSource {
  readonly baseUrl: string;
  get(resource: RestResource, number: string): Promise<Entity>;
  list(resource: RestResource, criteria?: Record<string, string>): AsyncIterable<Entity>;
}

export type ExportPhase = 'licensees' | 'product' | 'licenses' | 'tokens' | 'done';

export interface ExportProgress {
  phase: ExportPhase;
  licenseesDone: number;
  licenseesTotal: number;
  /** Entities fetched from the server so far (kept ones only). */
  entities: number;
}

export interface ExportAssetsOptions {
  /** Licensee numbers as requested (duplicates are ignored). */
  licensees: readonly string[];
  force?: boolean;
  onProgress?(progress: ExportProgress): void;
  /** Human-readable notes: skipped licensees, dropped entities, forced conflicts. */
  onWarning?(message: string): void;
}

export type ExportProblemKind = 'not-found' | 'other-product' | 'forbidden-character' | 'unreachable-number';

export interface ExportProblem {
  kind: ExportProblemKind;
  entityKind: EntityKind;
  number: string;
  message: string;
}

/** Conflicts found during export, all of them; thrown when --force is not given. */
export class ExportConflictError extends Error {
  constructor(
    message: string,
    readonly problems: ExportProblem[],
  ) {
    super(message);
    this.name = 'ExportConflictError';
  }

  /** True when every problem is an unknown licensee reported by the server. */
  get onlyNotFound(): boolean {
    return this.problems.length > 0 && this.problems.every((problem) => problem.kind === 'not-found');
  }
}

export interface ExportReport {
  productNumber?: string;
  /** Licensees exported, in request order. */
  licensees: string[];
  /** Requested licensees left out (only with --force). */
  skipped: ExportProblem[];
  /** Conflicts exported anyway (only with --force). */
  forced: ExportProblem[];
  counts: Record<EntityKind, number>;
  /** Entities the server returned that do not belong to the export (its filter was ignored or loose). */
  ignored: number;
}

/** `--licensees=a,b , c` → ["a","b","c"]: split on commas, trimmed, empty parts and repeats dropped. */
export function parseLicenseeList(text: string): string[] {
  // A Set keeps the first occurrence's order; `includes` on the list made this quadratic (563 ms for 14,000 numbers).
  const numbers = new Set<string>();
  for (const part of text.split(',')) {
    const number = part.trim();
    if (number !== '') numbers.add(number);
  }
  return [...numbers];
}

function describeProblems(problems: ExportProblem[]): string {
  const lines = problems.map((problem) => `  - ${problem.message}`);
  return `${problems.length === 1 ? 'a problem prevents' : `${problems.length} problems prevent`} the export:\n${lines.join('\n')}`;
}

export function exportAssets(
  source: AssetSource,
  options: ExportAssetsOptions,
): { entities: AsyncGenerator<Entity, void, undefined>; report: ExportReport } {
  const report: ExportReport = {
    licensees: [],
    skipped: [],
    forced: [],
    counts: { Product: 0, ProductModule: 0, LicenseTemplate: 0, Licensee: 0, License: 0, Token: 0 },
    ignored: 0,
  };
  return { entities: generate(source, options, report), report };
}

async function* generate(
  source: AssetSource,
  options: ExportAssetsOptions,
  report: ExportReport,
): AsyncGenerator<Entity, void, undefined> {
  const force = options.force ?? false;
  const warn = (message: string) => options.onWarning?.(message);
  const requested = parseLicenseeList(options.licensees.join(','));
  if (requested.length === 0) throw new ExportConflictError('no licensee numbers given', []);

  let fetched = 0;
  let licenseesDone = 0;
  let licenseesTotal = requested.length;
  const progress = (phase: ExportPhase) => options.onProgress?.({ phase, licenseesDone, licenseesTotal, entities: fetched });

  const characterProblem = (entity: Entity): ExportProblem | undefined =>
    FORBIDDEN_NUMBER_CHARACTERS.test(entity.number)
      ? {
          kind: 'forbidden-character',
          entityKind: entity.kind,
          number: entity.number,
          message: `${entity.kind} "${entity.number}": the number contains "," or ";", which the agent's export/import procedures do not allow`,
        }
      : undefined;
  const lateProblems: ExportProblem[] = [];
  // Everything the server sent vs. what was kept, by kind and number: the difference is report.ignored.
  const seen = new Set<string>();
  const kept = new Set<string>();
  const see = (entity: Entity): Entity => (seen.add(`${entity.kind}\u0000${entity.number}`), entity);
  /** Counts a kept entity and notes a character conflict for the end (licensees were checked in phase 1). */
  const keep = (entity: Entity): Entity => {
    fetched++;
    report.counts[entity.kind]++;
    kept.add(`${entity.kind}\u0000${entity.number}`);
    const problem = entity.kind === 'Licensee' ? undefined : characterProblem(entity);
    if (problem) lateProblems.push(problem);
    return entity;
  };

  // Phase 1: the licensees, all before anything else, so that conflicts surface early.
  progress('licensees');
  const licenseeProblems: ExportProblem[] = [];
  const found: Entity[] = [];
  for (const number of requested) {
    if (number === '.' || number === '..') {
      licenseeProblems.push({
        kind: 'unreachable-number',
        entityKind: 'Licensee',
        number,
        message: `Licensee "${number}": this number cannot be requested over HTTP (URL dot segment)`,
      });
      continue;
    }
    try {
      found.push(await source.get('licensee', number));
    } catch (error) {
      if (!(error instanceof RemoteError) || !error.isNotFound) throw error;
      licenseeProblems.push({
        kind: 'not-found',
        entityKind: 'Licensee',
        number,
        message: `Licensee "${number}" not found: ${error.message}`,
      });
    }
    licenseesDone++;
    progress('licensees');
  }

  let productNumber: string | undefined;
  const licensees: Entity[] = [];
  for (const licensee of found) {
    const owner = licensee.props['productNumber'];
    if (owner === undefined || owner === '') {
      throw new RemoteError(
        `unexpected answer from ${source.baseUrl}: Licensee "${licensee.number}" has no productNumber`,
        'protocol',
        { url: source.baseUrl },
      );
    }
    productNumber ??= owner;
    if (owner !== productNumber) {
      licenseeProblems.push({
        kind: 'other-product',
        entityKind: 'Licensee',
        number: licensee.number,
        message: `Licensee "${licensee.number}" belongs to product "${owner}", the other licensees to "${productNumber}" (one export holds one product)`,
      });
      continue;
    }
    const problem = characterProblem(licensee);
    if (problem) licenseeProblems.push(problem);
    licensees.push(licensee);
  }

  if (licenseeProblems.length > 0) {
    if (!force) throw new ExportConflictError(describeProblems(licenseeProblems), licenseeProblems);
    for (const problem of licenseeProblems) {
      if (problem.kind === 'forbidden-character') {
        report.forced.push(problem);
        warn(`--force: exporting despite the conflict: ${problem.message}`);
      } else {
        report.skipped.push(problem);
        warn(`--force: skipping: ${problem.message}`);
      }
    }
  }
  if (licensees.length === 0 || productNumber === undefined) {
    throw new ExportConflictError('none of the requested licensees can be exported', licenseeProblems);
  }
  report.productNumber = productNumber;
  report.licensees = licensees.map((licensee) => licensee.number);
  const licenseeNumbers = new Set(report.licensees);

  // Phase 2: the product and everything every licensee of it can see.
  progress('product');
  const product = await source.get('product', productNumber);
  yield keep(product);

  const modules: Entity[] = [];
  for await (const module of source.list('productmodule', { productNumber })) {
    if (see(module).props['productNumber'] === productNumber) modules.push(module);
  }
  for (const module of modules) yield keep(module);
  progress('product');

  const moduleNumbers = new Set(modules.map((module) => module.number));
  const templates = new Map<string, Entity>();
  const takeTemplate = (template: Entity) => {
    const owner = see(template).props['productModuleNumber'];
    if (owner !== undefined && moduleNumbers.has(owner) && !templates.has(template.number)) templates.set(template.number, template);
    return owner;
  };
  for (const module of modules) {
    let filterNotApplied = false;
    for await (const template of source.list('licensetemplate', { productModuleNumber: module.number })) {
      if (takeTemplate(template) !== module.number) filterNotApplied = true;
    }
    if (filterNotApplied) {
      // The server ignored the filter (or applied a looser one: by prefix, say): one unfiltered list
      // has every template, where trusting this answer for the other modules could miss some.
      for await (const template of source.list('licensetemplate')) takeTemplate(template);
      break;
    }
  }
  for (const template of templates.values()) yield keep(template);
  progress('product');

  // Phase 3: each licensee with its licenses; licenseesDone now counts the licensees whose licenses
  // are fetched (with a filtering server, one request each: the phase that takes long).
  licenseesDone = 0;
  // Out of those exported (with --force, skipped ones are not fetched).
  licenseesTotal = licensees.length;
  progress('licenses');
  let allLicenses: Entity[] | undefined;
  for (const licensee of licensees) {
    yield keep(licensee);
    let candidates: Entity[];
    if (allLicenses) {
      candidates = allLicenses;
    } else {
      candidates = [];
      let filterNotApplied = false;
      for await (const license of source.list('license', { licenseeNumber: licensee.number })) {
        if (see(license).props['licenseeNumber'] !== licensee.number) filterNotApplied = true;
        candidates.push(license);
      }
      if (filterNotApplied) {
        // As for templates: an unfiltered list once, for this licensee and every later one.
        allLicenses = [];
        for await (const license of source.list('license')) allLicenses.push(see(license));
        candidates = allLicenses;
      }
    }
    for (const license of candidates) {
      if (license.props['licenseeNumber'] !== licensee.number) continue;
      const templateNumber = license.props['licenseTemplateNumber'];
      if (templateNumber === undefined || !templates.has(templateNumber)) {
        warn(
          `License "${license.number}" of licensee "${licensee.number}" left out: its license template "${templateNumber ?? ''}" is not part of product "${productNumber}"`,
        );
        continue;
      }
      yield keep(license);
    }
    licenseesDone++;
    progress('licenses');
  }

  // Phase 4: API keys that may validate the exported licensees (scoped to one of them, or vendor-wide).
  progress('tokens');
  for await (const token of source.list('token', { tokenType: 'APIKEY' })) {
    const scope = see(token).props['licenseeNumber'];
    const belongs =
      token.props['tokenType'] === 'APIKEY' && (scope === undefined || scope === '' || licenseeNumbers.has(scope));
    if (belongs) yield keep(token);
  }
  for (const key of seen) if (!kept.has(key)) report.ignored++;

  if (lateProblems.length > 0) {
    if (!force) throw new ExportConflictError(describeProblems(lateProblems), lateProblems);
    for (const problem of lateProblems) {
      report.forced.push(problem);
      warn(`--force: exporting despite the conflict: ${problem.message}`);
    }
  }
  progress('done');
}
