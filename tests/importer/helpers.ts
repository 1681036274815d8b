/**
 * Test helpers for the transfer format and the importer: a small export
 * builder, a raw file builder that can break the order rules while keeping a
 * valid digest, a database checksum, and a captured CLI run.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Entity, EntityKind, EntityList } from '../../src/core/entities.ts';
import { ENTITY_KINDS } from '../../src/core/entities.ts';
import { runCli } from '../../src/cli/run.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { createLogger } from '../../src/platform/log.ts';
import type { AssetStore } from '../../src/store/asset-store.ts';
import { CanonicalHasher, CONTEXT_NAMESPACE, fileDigest, HEADER_TYPE } from '../../src/transfer/format.ts';
import type { TransferHeader } from '../../src/transfer/types.ts';
import { escapeAttribute, escapeText } from '../../src/wire/xml.ts';

export function entity(kind: EntityKind, number: string, props: Record<string, string> = {}, lists?: EntityList[]): Entity {
  const result: Entity = { kind, number, props: { number, active: 'true', ...props } };
  if (lists) result.lists = lists;
  return result;
}

export interface LicenseeSpec {
  number: string;
  licenses: string[];
  product?: string;
  props?: Record<string, string>;
}

/** Product P (modules M-SUB Subscription and M-FLOAT Floating, templates T-SUB, T-FLOAT) with the given licensees. */
export function smallExport(
  licensees: LicenseeSpec[],
  options: { tokens?: Entity[]; product?: string; moduleModel?: string; templateType?: string; extraModules?: boolean } = {},
): Entity[] {
  const product = options.product ?? 'P';
  const out: Entity[] = [
    entity('Product', product, { name: 'Product', 'custom prop': 'Grüße' }, [
      { name: 'discount', props: { totalPrice: '100.00', currency: 'EUR', amountPercent: '10' } },
    ]),
    entity('ProductModule', 'M-SUB', { productNumber: product, licensingModel: options.moduleModel ?? 'Subscription' }),
    entity('ProductModule', 'M-FLOAT', { productNumber: product, licensingModel: 'Floating', maxCheckoutValidity: '60' }),
  ];
  if (options.extraModules) out.push(entity('ProductModule', 'M-EXTRA', { productNumber: product, licensingModel: 'Quota' }));
  out.push(
    entity('LicenseTemplate', 'T-SUB', { productModuleNumber: 'M-SUB', licenseType: options.templateType ?? 'TIMEVOLUME', timeVolume: '12', timeVolumePeriod: 'MONTH' }),
    entity('LicenseTemplate', 'T-FLOAT', { productModuleNumber: 'M-FLOAT', licenseType: 'FLOATING', maxSessions: '3' }),
  );
  if (options.extraModules) out.push(entity('LicenseTemplate', 'T-EXTRA', { productModuleNumber: 'M-EXTRA', licenseType: 'QUANTITY', quantity: '5' }));
  for (const spec of licensees) {
    out.push(entity('Licensee', spec.number, { productNumber: spec.product ?? product, ...spec.props }));
    for (const number of spec.licenses) {
      out.push(entity('License', number, { licenseeNumber: spec.number, licenseTemplateNumber: 'T-SUB', startDate: '2026-01-01T00:00:00.000Z' }));
    }
  }
  out.push(...(options.tokens ?? []));
  return out;
}

export function header(licensees: string[], overrides: Partial<TransferHeader> = {}): TransferHeader {
  return {
    exportId: 'export-1',
    createdAt: '2026-03-01T12:00:00.000Z',
    sourceHost: 'https://go.netlicensing.io',
    licensees,
    ...overrides,
  };
}

/** A header listing the export's licensees in item order (as export-assets writes it). */
export function headerFor(entities: Entity[], overrides: Partial<TransferHeader> = {}): TransferHeader {
  return header(entities.filter((e) => e.kind === 'Licensee').map((e) => e.number), overrides);
}

export interface RawItem {
  type: string;
  props: [string, string][];
  lists?: RawList[];
}
export interface RawList {
  name: string;
  props: [string, string][];
  lists?: RawList[];
}

export function rawItem(type: string, props: Record<string, string>, lists?: RawList[]): RawItem {
  const item: RawItem = { type, props: Object.entries(props) };
  if (lists) item.lists = lists;
  return item;
}

export function rawHeader(fields: Record<string, string> = {}): RawItem {
  return rawItem(HEADER_TYPE, {
    formatVersion: '2',
    exportId: 'raw-export',
    createdAt: '2026-03-01T12:00:00.000Z',
    sourceHost: 'https://go.netlicensing.io',
    withoutCard: 'true',
    licensees: '["L1"]',
    file: '1',
    files: '1',
    ...fields,
  });
}

/**
 * A transfer file written by hand, one property per line, with a correct
 * digest (unless `digest` overrides it): lets tests break the order and
 * content rules that the writer would refuse.
 */
export function rawTransferFile(items: RawItem[], options: { digest?: string; itemsCount?: string; namespace?: string } = {}): string {
  // The header is hashed from its content; the other items as the bytes from the header's end tag
  // to the last item's end tag (docs/transfer-format.md, "Digest").
  const headerHasher = new CanonicalHasher();
  let out = `<?xml version="1.0" encoding="UTF-8"?>\n<netlicensing xmlns="${options.namespace ?? CONTEXT_NAMESPACE}">\n<infos/>\n<items>\n`;
  let bodyStart = -1;
  let bodyEnd = -1;
  const renderList = (list: RawList, hasher: CanonicalHasher | undefined, indent: string): string => {
    hasher?.beginList(list.name);
    let text = `${indent}<list name="${escapeAttribute(list.name)}">\n`;
    for (const [name, value] of list.props) {
      hasher?.property(name, value);
      text += `${indent}  <property name="${escapeAttribute(name)}">${escapeText(value)}</property>\n`;
    }
    for (const child of list.lists ?? []) text += renderList(child, hasher, `${indent}  `);
    hasher?.endList();
    return `${text}${indent}</list>\n`;
  };
  items.forEach((item, i) => {
    const hasher = i === 0 ? headerHasher : undefined;
    hasher?.beginItem(item.type);
    out += `  <item type="${escapeAttribute(item.type)}">\n`;
    for (const [name, value] of item.props) {
      hasher?.property(name, value);
      out += `    <property name="${escapeAttribute(name)}">${escapeText(value)}</property>\n`;
    }
    for (const list of item.lists ?? []) out += renderList(list, hasher, '    ');
    hasher?.endItem();
    out += '  </item>';
    if (i === 0) bodyStart = out.length;
    bodyEnd = out.length;
    out += '\n';
  });
  const body = createHash('sha256').update(out.slice(bodyStart, bodyEnd), 'utf8').digest();
  const digest = options.digest ?? fileDigest(headerHasher.digest(), body);
  out += `  <item type="TransferDigest">\n    <property name="items">${options.itemsCount ?? items.length}</property>\n`;
  out += `    <property name="sha256">${digest}</property>\n  </item>\n</items>\n</netlicensing>\n`;
  return out;
}

export function writeRaw(dir: string, n: number, text: string | Buffer): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${n}_netlicensing-assets.xml`);
  writeFileSync(path, text);
  return path;
}

/** Entities as plain raw items (props in their order), for rawTransferFile. */
export function toRaw(entities: Entity[]): RawItem[] {
  return entities.map((e) => {
    const item: RawItem = { type: e.kind, props: Object.entries(e.props) };
    if (e.lists) item.lists = e.lists.map(function toRawList(l): RawList {
      const list: RawList = { name: l.name, props: Object.entries(l.props) };
      if (l.lists) list.lists = l.lists.map(toRawList);
      return list;
    });
    return item;
  });
}

/** Everything the store holds that an import may change, as one hash. */
export function storeChecksum(store: AssetStore): string {
  const hash = createHash('sha256');
  for (const kind of ENTITY_KINDS) {
    for (const e of store.listEntities(kind).items) hash.update(JSON.stringify(e));
  }
  for (const r of store.runtimeEntries()) hash.update(JSON.stringify(r));
  const { ...meta } = store.meta();
  hash.update(JSON.stringify(meta));
  return hash.digest('hex');
}

export function counts(store: AssetStore): Record<EntityKind, number> {
  return Object.fromEntries(ENTITY_KINDS.map((k) => [k, store.listEntities(k, { limit: 0 }).total])) as Record<EntityKind, number>;
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export const TEST_NOW_MS = Date.UTC(2026, 5, 1, 8, 0, 0);

/** runCli with captured output and a fixed clock. */
export async function cli(argv: string[], cwd: string, options: { isTTY?: boolean } = {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: (t: string) => void (stdout += t),
    stderr: (t: string) => void (stderr += t),
    isTTY: options.isTTY ?? false,
    env: {},
  };
  const log = createLogger({ stream: { write: (chunk: string) => ((stderr += chunk), true) } as unknown as NodeJS.WritableStream });
  const code = await runCli(argv, io, { cwd, clock: new ManualClock(TEST_NOW_MS), log });
  return { code, stdout, stderr };
}
