// Goal: no transfer file, however mangled, crashes or hangs the importer or
// changes the database when refused. Method: a valid file written by the
// project's writer is mutated by fast-check (seeded, bounded: byte changes,
// truncation, insertions of DOCTYPE/entity/deep-nesting/CDATA/invalid UTF-8);
// each import must end in success or a documented import error, and a refused
// import leaves the database byte-for-byte equal in content.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { ENTITY_KINDS } from '../../src/core/entities.ts';
import { ImportCardError, ImportConflictError, TransferInputError } from '../../src/importer/errors.ts';
import { importTransferFiles } from '../../src/importer/import-transfer.ts';
import { openAssetStore, type AssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import { demoEntities, entity, transferOrder } from '../support/seed-store.ts';

const seed = Number(process.env['AGENT_SEED'] ?? Date.now() % 2 ** 31);
let store: AssetStore;
let original: Buffer;
let work: string;

function snapshot(s: AssetStore): string {
  return JSON.stringify(ENTITY_KINDS.map((k) => s.listEntities(k).items.map((e) => [e.number, e.props])));
}

beforeAll(async () => {
  work = tempDir('nla-fuzz-import-');
  const source = join(work, 'source');
  const entities = demoEntities().filter((e) => e.kind !== 'Token');
  entities.push(entity('Token', 'k', { tokenType: 'APIKEY' }));
  await writeTransferFiles(
    { exportId: crypto.randomUUID(), createdAt: '2026-01-01T00:00:00.000Z', sourceHost: 'fuzz', licensees: ['L-1', 'L 2/ä'] },
    transferOrder(entities),
    { directory: source },
  );
  original = readFileSync(join(source, '1_netlicensing-assets.xml'));
  store = openAssetStore(join(work, 'database'), { create: true });
  importTransferFiles(store, { directory: source, force: false, withoutCard: true, nowMs: Date.parse('2026-12-01T00:00:00Z') });
});
afterAll(async () => {
  await store.close();
});

const insertion = fc.constantFrom(
  '<!DOCTYPE netlicensing [<!ENTITY x "boom">]>',
  '&x;',
  '<!ENTITY a SYSTEM "file:///etc/passwd">',
  '<![CDATA[<item type="License">]]>',
  '<item type="Evil">',
  '</items>',
  '<property name="number">dup</property>',
  '<list name="l">'.repeat(50),
  '\u0000',
  '\uFFFE',
  '&#0;',
  '&amp;',
  ',;',
  '"',
);
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: insertion }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
);

function mutate(input: Buffer, m: { kind: string; at: number; byte?: number; text?: string; length?: number }): Buffer {
  const at = m.at % input.length;
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(input);
      out[at] = m.byte!;
      return out;
    }
    case 'truncate':
      return input.subarray(0, at);
    case 'insert':
      return Buffer.concat([input.subarray(0, at), Buffer.from(m.text!, 'utf8'), input.subarray(at)]);
    default:
      return Buffer.concat([input.subarray(0, at), input.subarray(at + m.length!)]);
  }
}

test('mutated transfer files: success or a documented refusal, never a crash, never a partial write', () => {
  const before = snapshot(store);
  let refused = 0;
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (mutations) => {
      let bytes = original;
      for (const m of mutations) bytes = mutate(bytes, m);
      const dir = join(work, 'case');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      writeFileSync(join(dir, '1_netlicensing-assets.xml'), bytes);
      try {
        importTransferFiles(store, { directory: dir, force: false, withoutCard: true, nowMs: Date.parse('2026-12-01T00:00:00Z') });
      } catch (error) {
        const known = error instanceof TransferInputError || error instanceof ImportConflictError || error instanceof ImportCardError;
        if (!known) throw error;
        refused++;
        expect(snapshot(store)).toBe(before);
        return;
      }
      // Accepted (a change the digest does not cover, e.g. whitespace): content must be the original.
      expect(snapshot(store)).toBe(before);
    }),
    { seed, numRuns: 400 },
  );
  expect(refused).toBeGreaterThan(300);
});
