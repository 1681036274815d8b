// Goal: every kind of bad input is refused with exit code 3 (EXIT.input), a
// message naming file, line and column (pointing at the offending place),
// and the database left exactly as it was, whether the files are parsed on
// the importing thread or on a reader thread. Method: a database with a prior
// import and runtime state; each case writes broken transfer files (by hand,
// with a valid digest where the digest is not the point) and runs
// `runCli --action=import-assets` (small files: parsed inline), then the same
// import with the reader thread, which must fail with the same message; the
// store checksum is compared afterwards.
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, test } from 'bun:test';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { TransferInputError } from '../../src/importer/errors.ts';
import { importTransferFiles } from '../../src/importer/import-transfer.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import {
  cli,
  entity,
  header,
  headerFor,
  rawHeader,
  rawItem,
  rawTransferFile,
  smallExport,
  storeChecksum,
  toRaw,
  writeRaw,
  type RawItem,
} from './helpers.ts';

const FILE = '1_netlicensing-assets.xml';

/** A working directory with a database holding one import and some runtime state. */
let cwd: string;
let checksum: string;

beforeAll(async () => {
  cwd = tempDir('nla-bad-input-');
  const input = join(cwd, 'good');
  await writeTransferFiles(header(['L1']), smallExport([{ number: 'L1', licenses: ['X1'] }]), { directory: input });
  const first = await cli(['--action=import-assets', '--input=good'], cwd);
  expect(first.code).toBe(EXIT.ok);
  const store = openAssetStore(join(cwd, 'database'));
  await store.commitRuntime('L1', 1, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X1', quantity: 2 }], result: null }));
  await store.settled();
  checksum = storeChecksum(store);
  await store.close();
});

async function databaseChecksum(): Promise<string> {
  const store = openAssetStore(join(cwd, 'database'));
  try {
    return storeChecksum(store);
  } finally {
    await store.close();
  }
}

let caseNumber = 0;
function inputDir(): { dir: string; name: string } {
  const name = `case-${++caseNumber}`;
  const dir = join(cwd, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  return { dir, name };
}

/** Valid entity items after a header requesting L1. */
function goodItems(): RawItem[] {
  return toRaw(smallExport([{ number: 'L1', licenses: ['X1', 'X2'] }]));
}

interface Expectation {
  /** Regular expression the reason must match. */
  reason: RegExp;
  file?: string;
  /** A fragment the reported line must contain (checks the position). */
  lineHas?: string | RegExp;
  /** The exact 1-based column, where the test knows it. */
  column?: number;
  /** Whole-file errors carry no line. */
  noLine?: boolean;
  exit?: number;
}

async function expectRefused(name: string, dir: string, expected: Expectation): Promise<void> {
  const result = await cli(['--action=import-assets', `--input=${name}`], cwd);
  const file = join(name, expected.file ?? FILE);
  expect(result.code).toBe(expected.exit ?? EXIT.input);
  expect(result.stdout).toBe('');
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = expected.noLine ? new RegExp(`error: ${escaped}: (.*)`) : new RegExp(`error: ${escaped}:(\\d+):(\\d+): (.*)`);
  const match = pattern.exec(result.stderr);
  if (!match) throw new Error(`unexpected message: ${result.stderr}`);
  expect(match[match.length - 1]!).toMatch(expected.reason);
  if (expected.lineHas !== undefined) {
    const line = Number(match[1]);
    const text = readFileSync(join(dir, expected.file ?? FILE), 'latin1').split('\n')[line - 1] ?? '';
    if (typeof expected.lineHas === 'string') expect(text).toContain(expected.lineHas);
    else expect(text).toMatch(expected.lineHas);
  }
  if (expected.column !== undefined) expect(Number(match[2])).toBe(expected.column);
  if ((expected.exit ?? EXIT.input) === EXIT.input) {
    // Parsed on the reader thread: the same refusal, word for word.
    const store = openAssetStore(join(cwd, 'database'));
    let error: unknown;
    try {
      importTransferFiles(store, { directory: join(cwd, name), displayDirectory: name, force: false, withoutCard: false, nowMs: Date.parse('2026-12-01T00:00:00Z'), readThread: 'worker' });
    } catch (caught) {
      error = caught;
    } finally {
      await store.close();
    }
    expect(error).toBeInstanceOf(TransferInputError);
    expect(`error: ${(error as Error).message}`).toBe(/error: .*/.exec(result.stderr)![0]);
  }
  expect(await databaseChecksum()).toBe(checksum);
}

describe('bad input is refused with file:line:column and the database unchanged', () => {
  test('truncated file', async () => {
    const { dir, name } = inputDir();
    const text = rawTransferFile([rawHeader({ licensees: '["L1"]' }), ...goodItems()]);
    writeRaw(dir, 1, text.slice(0, Math.floor(text.length * 0.7)));
    await expectRefused(name, dir, { reason: /ends early \(truncated\?\)/ });
  });

  test('truncated exactly at an item boundary: no digest', async () => {
    const { dir, name } = inputDir();
    const text = rawTransferFile([rawHeader({ licensees: '["L1"]' }), ...goodItems()]);
    writeRaw(dir, 1, `${text.slice(0, text.indexOf('  <item type="TransferDigest">'))}</items>\n</netlicensing>\n`);
    await expectRefused(name, dir, { reason: /no TransferDigest item/, lineHas: '</items>' });
  });

  test('wrong root element', async () => {
    const { dir, name } = inputDir();
    const text = rawTransferFile([rawHeader(), ...goodItems()]).replace('<netlicensing ', '<netlicense ').replace('</netlicensing>', '</netlicense>');
    writeRaw(dir, 1, text);
    await expectRefused(name, dir, { reason: /root element must be <netlicensing>, found <netlicense>/, lineHas: '<netlicense ' });
  });

  test('wrong namespace', async () => {
    const { dir, name } = inputDir();
    writeRaw(dir, 1, rawTransferFile([rawHeader(), ...goodItems()], { namespace: 'http://example.com/other' }));
    await expectRefused(name, dir, { reason: /namespace "http:\/\/netlicensing\.labs64\.com\/schema\/context"/, lineHas: 'example.com' });
  });

  test('unknown item type', async () => {
    const { dir, name } = inputDir();
    const items = goodItems();
    items.splice(3, 0, rawItem('Transaction', { number: 'TR1', status: 'CLOSED' }));
    writeRaw(dir, 1, rawTransferFile([rawHeader(), ...items]));
    await expectRefused(name, dir, { reason: /unknown item type "Transaction"/, lineHas: 'type="Transaction"' });
  });

  test('missing required property', async () => {
    const { dir, name } = inputDir();
    const items = goodItems();
    const licensee = items.find((i) => i.type === 'Licensee')!;
    licensee.props = licensee.props.filter(([n]) => n !== 'productNumber');
    writeRaw(dir, 1, rawTransferFile([rawHeader({ licensees: '["L1"]' }), ...items]));
    await expectRefused(name, dir, { reason: /Licensee "L1" has no productNumber property/, lineHas: 'type="Licensee"' });
  });

  test('DOCTYPE with entity declarations', async () => {
    const { dir, name } = inputDir();
    const text = rawTransferFile([rawHeader(), ...goodItems()]).replace(
      '?>\n',
      '?>\n<!DOCTYPE netlicensing [<!ENTITY boom "boom">]>\n',
    );
    writeRaw(dir, 1, text);
    await expectRefused(name, dir, { reason: /DOCTYPE declarations are not allowed/, lineHas: '<!DOCTYPE' });
  });

  test('undefined entity reference', async () => {
    const { dir, name } = inputDir();
    const text = rawTransferFile([rawHeader(), ...goodItems()]).replace('>Product<', '>&boom;<');
    writeRaw(dir, 1, text);
    await expectRefused(name, dir, { reason: /undefined entity|boom/, lineHas: '&boom;' });
  });

  test('invalid UTF-8 is located to the line', async () => {
    const { dir, name } = inputDir();
    const text = rawTransferFile([rawHeader(), ...goodItems()]);
    const bytes = Buffer.from(text, 'utf8');
    // "Grüße": replace the second byte of "ü" (C3 BC) with an invalid continuation.
    const at = bytes.indexOf(Buffer.from('Grüße', 'utf8')) + 3;
    bytes[at] = 0x28;
    writeRaw(dir, 1, bytes);
    await expectRefused(name, dir, { reason: /invalid UTF-8 byte sequence \(byte offset \d+\)/, lineHas: 'name="custom prop"' });
  });

  test('invalid UTF-8 across a chunk boundary is still located', async () => {
    const { dir, name } = inputDir();
    // Long enough that the bad byte lies beyond the first 256 KiB chunk.
    const filler = rawItem('Product', { number: 'FILL', padding: 'x'.repeat(300 * 1024) });
    const text = rawTransferFile([rawHeader(), filler, ...goodItems()]);
    const bytes = Buffer.from(text, 'utf8');
    const at = bytes.indexOf(Buffer.from('Grüße', 'utf8')) + 2;
    bytes[at] = 0xff;
    writeRaw(dir, 1, bytes);
    await expectRefused(name, dir, { reason: /invalid UTF-8/, lineHas: 'name="custom prop"' });
  });

  test('an encoding other than UTF-8', async () => {
    const { dir, name } = inputDir();
    writeRaw(dir, 1, rawTransferFile([rawHeader(), ...goodItems()]).replace('encoding="UTF-8"', 'encoding="ISO-8859-1"'));
    await expectRefused(name, dir, { reason: /encoding "ISO-8859-1" is not supported/, lineHas: 'ISO-8859-1' });
  });

  test('XML 1.1, and the control characters only 1.1 admits', async () => {
    // XML 1.1 admits character references to U+0001–U+001F; the reader's item tokens rely on
    // names never holding U+0001–U+0003 (transfer-file.ts): a 1.1 file is refused outright.
    // Read as 1.1, a property named "&#x3;" would be the reader's scope-end token (U+0003): its item
    // would end there, and the tokens after it would be read as a made-up item.
    const declared = inputDir();
    const text = rawTransferFile([rawHeader(), ...goodItems()]);
    const withReference = text.replace('<property name="name">', '<property name="&#x3;">');
    expect(withReference).not.toBe(text);
    const xml11 = withReference.replace('<?xml version="1.0"', '<?xml version="1.1"');
    expect(xml11).not.toBe(withReference);
    writeRaw(declared.dir, 1, xml11);
    // Refused at the declaration (the position just after it), before any item is read.
    const declaration = xml11.split('\n')[0]!;
    await expectRefused(declared.name, declared.dir, {
      reason: /XML version "1\.1" is not supported: transfer files are XML 1\.0/,
      lineHas: /^<\?xml version="1\.1"/,
      column: declaration.length + 1,
    });
    // In an XML 1.0 file the same reference is not well-formed: refused just after it.
    const reference = inputDir();
    writeRaw(reference.dir, 1, withReference);
    const referenceLine = withReference.split('\n').find((line) => line.includes('&#x3;'))!;
    await expectRefused(reference.name, reference.dir, {
      reason: /malformed character entity/,
      lineHas: '&#x3;',
      column: referenceLine.indexOf('&#x3;') + '&#x3;'.length + 1,
    });
  });

  test('numbers containing "," or ";"', async () => {
    for (const bad of ['L,1', 'L;1']) {
      const { dir, name } = inputDir();
      const items = toRaw(smallExport([{ number: bad, licenses: [] }]));
      writeRaw(dir, 1, rawTransferFile([rawHeader({ licensees: JSON.stringify([bad]) }), ...items]));
      await expectRefused(name, dir, { reason: /numbers must not contain "," or ";"/, lineHas: 'type="Licensee"' });
    }
  });

  test('the number "__proto__", which JavaScript keeps apart from other keys', async () => {
    const { dir, name } = inputDir();
    const items = toRaw(smallExport([{ number: 'L1', licenses: ['__proto__'] }]));
    writeRaw(dir, 1, rawTransferFile([rawHeader({ licensees: '["L1"]' }), ...items]));
    await expectRefused(name, dir, { reason: /License "__proto__": "__proto__" cannot be an entity number in the agent/, lineHas: 'type="License"' });
  });

  test('a number spelled as the key of a long number ("#sha256:" and 64 hex digits) is refused: the two shared one key', async () => {
    const hashed = `#sha256:${createHash('sha256').update('x'.repeat(500)).digest('hex')}`;
    const { dir, name } = inputDir();
    const items = toRaw(smallExport([{ number: 'L1', licenses: [hashed] }]));
    writeRaw(dir, 1, rawTransferFile([rawHeader({ licensees: '["L1"]' }), ...items]));
    await expectRefused(name, dir, { reason: /numbers of the form "#sha256:<64 hex digits>" are reserved in the agent/, lineHas: 'type="License"' });
  });

  test('a very long number is quoted in part in a message, with its length', async () => {
    const long = `${'n'.repeat(10_000)},`;
    const { dir, name } = inputDir();
    const items = toRaw(smallExport([{ number: 'L1', licenses: [long] }]));
    writeRaw(dir, 1, rawTransferFile([rawHeader({ licensees: '["L1"]' }), ...items]));
    await expectRefused(name, dir, { reason: new RegExp(`License "${'n'.repeat(200)}…" \\(10001 characters\\): numbers must not contain`), lineHas: 'type="License"' });
  });

  test('an item with more properties and lists, or more characters, than any entity has is refused at its position', async () => {
    for (const [extra, reason] of [
      [Array.from({ length: 100_001 }, (_, i) => [`p${i}`, 'v'] as [string, string]), /an item with more than 100000 properties and lists/],
      [Array.from({ length: 17 }, (_, i) => [`big${i}`, 'x'.repeat(1024 * 1024)] as [string, string]), /an item with more than 16777216 characters of names and values/],
    ] as const) {
      const { dir, name } = inputDir();
      const items = goodItems();
      items[0]!.props.push(...extra);
      writeRaw(dir, 1, rawTransferFile([rawHeader(), ...items]));
      await expectRefused(name, dir, { reason, lineHas: 'name=' });
    }
  });

  test('duplicate numbers, also in different licensees and files', async () => {
    const { dir, name } = inputDir();
    const items = toRaw(
      smallExport([
        { number: 'L1', licenses: ['X1'] },
        { number: 'L2', licenses: ['X1'] },
      ]),
    );
    writeRaw(dir, 1, rawTransferFile([rawHeader({ licensees: '["L1","L2"]' }), ...items]));
    await expectRefused(name, dir, { reason: /License "X1" appears twice in this export/, lineHas: 'type="License"' });

    const second = inputDir();
    const licensees = toRaw(smallExport([{ number: 'L1', licenses: [] }]));
    writeRaw(second.dir, 1, rawTransferFile([rawHeader({ licensees: '["L1","L1"]', exportId: 'dup', files: '2' }), ...licensees]));
    writeRaw(
      second.dir,
      2,
      rawTransferFile([rawHeader({ exportId: 'dup', file: '2', files: '2' }), rawItem('Licensee', { number: 'L1', productNumber: 'P' })]),
    );
    await expectRefused(second.name, second.dir, { reason: /Licensee "L1" appears twice/, file: '2_netlicensing-assets.xml' });
  });

  test('digest mismatch after a change of a value', async () => {
    const { dir, name } = inputDir();
    const text = rawTransferFile([rawHeader(), ...goodItems()]);
    writeRaw(dir, 1, text.replace('>Product<', '>Produkt<'));
    await expectRefused(name, dir, { reason: /digest mismatch: the file was altered/, lineHas: 'type="TransferDigest"' });
  });

  test('digest mismatch after a change between or inside entity items that XML would ignore', async () => {
    // The digest covers the entity items' bytes: reformatting or another namespace prefix is a change too.
    const text = rawTransferFile([rawHeader(), ...goodItems()]);
    const bodyStart = text.indexOf('</item>') + '</item>'.length;
    const changes: [string, (t: string) => string][] = [
      ['indentation', (t) => t.slice(0, bodyStart) + t.slice(bodyStart).replace('\n  <item type="License">', '\n    <item type="License">')],
      ['a prefix', (t) => t.slice(0, bodyStart) + t.slice(bodyStart).replace('<item type="License">', '<n:item xmlns:n="http://netlicensing.labs64.com/schema/context" type="License">').replace(/(<n:item[^]*?)<\/item>/, '$1</n:item>')],
      ['a character reference', (t) => t.replace('>Product<', '>&#80;roduct<')],
    ];
    for (const [, change] of changes) {
      const { dir, name } = inputDir();
      const changed = change(text);
      expect(changed).not.toBe(text);
      writeRaw(dir, 1, changed);
      await expectRefused(name, dir, { reason: /digest mismatch: the file was altered/, lineHas: 'type="TransferDigest"' });
    }
  });

  test('white space inside the header, outside the digest, is not a change', async () => {
    const { dir, name } = inputDir();
    const text = rawTransferFile([rawHeader({ licensees: '["L1"]' }), ...goodItems()]);
    const spaced = text.replace('<item type="TransferHeader">\n', '<item type="TransferHeader">\n\n      ');
    expect(spaced).not.toBe(text);
    writeRaw(dir, 1, spaced);
    const result = await cli(['--action=import-assets', `--input=${name}`], cwd);
    expect(result.code).toBe(EXIT.ok);
    // Imported: put the database back for the other cases.
    const redo = await cli(['--action=import-assets', '--input=good'], cwd);
    expect(redo.code).toBe(EXIT.ok);
  });

  test('item count mismatch', async () => {
    const { dir, name } = inputDir();
    writeRaw(dir, 1, rawTransferFile([rawHeader(), ...goodItems()], { itemsCount: '3' }));
    await expectRefused(name, dir, { reason: /counts 3 items, the file has \d+/, lineHas: 'type="TransferDigest"' });
  });

  test('a missing file of a multi-file export, and a file beyond N', async () => {
    const { dir, name } = inputDir();
    const licensees = Array.from({ length: 20 }, (_, i) => ({ number: `L${i}`, licenses: [`X${i}`] }));
    const entities = smallExport(licensees);
    const result = await writeTransferFiles(headerFor(entities), entities, { directory: dir, maxFileBytes: 3000 });
    expect(result.files.length).toBeGreaterThan(2);
    const second = readFileSync(result.files[1]!);
    rmSync(result.files[1]!);
    await expectRefused(name, dir, { reason: /missing: export export-1 has \d+ files/, file: '2_netlicensing-assets.xml', noLine: true });
    writeFileSync(result.files[1]!, second);
    copyFileSync(result.files[1]!, join(dir, `${result.files.length + 1}_netlicensing-assets.xml`));
    await expectRefused(name, dir, { reason: /header says this is file 2/, file: `${result.files.length + 1}_netlicensing-assets.xml` });
  });

  test('file 1 missing', async () => {
    const { dir, name } = inputDir();
    writeRaw(dir, 2, rawTransferFile([rawHeader({ file: '2', files: '2' })]));
    await expectRefused(name, dir, { reason: /missing: the input directory has 2_netlicensing-assets\.xml but not file 1/, noLine: true });
  });

  test('files of two different exports', async () => {
    const { dir, name } = inputDir();
    const other = tempDir();
    const licensees = Array.from({ length: 20 }, (_, i) => ({ number: `L${i}`, licenses: [`X${i}`] }));
    const entities = smallExport(licensees);
    const a = await writeTransferFiles(headerFor(entities, { exportId: 'export-A' }), entities, { directory: dir, maxFileBytes: 3000 });
    const b = await writeTransferFiles(headerFor(entities, { exportId: 'export-B' }), entities, { directory: other, maxFileBytes: 3000 });
    expect(a.files.length).toBe(b.files.length);
    copyFileSync(b.files[1]!, a.files[1]!);
    await expectRefused(name, dir, {
      reason: /belongs to export export-B, .* to export export-A: the input directory mixes two exports/,
      file: '2_netlicensing-assets.xml',
      lineHas: 'type="TransferHeader"',
    });
  });

  test('badly numbered file names and an empty directory', async () => {
    const { dir, name } = inputDir();
    await expectRefused(name, dir, { reason: /no transfer files/, file: '', noLine: true });
    writeRaw(dir, 1, rawTransferFile([rawHeader()]));
    writeFileSync(join(dir, '01_netlicensing-assets.xml'), 'x');
    await expectRefused(name, dir, { reason: /not a valid transfer file name/, file: '01_netlicensing-assets.xml', noLine: true });
  });

  test('entity order violations', async () => {
    const product = toRaw(smallExport([]));
    const licensee = (n: string) => rawItem('Licensee', { number: n, productNumber: 'P' });
    const license = (n: string, l: string) => rawItem('License', { number: n, licenseeNumber: l, licenseTemplateNumber: 'T-SUB' });
    const cases: [RawItem[], RegExp, string][] = [
      [[...product, licensee('L1'), licensee('L2'), license('X1', 'L1')], /License "X1" is not after its Licensee "L1"/, 'type="License"'],
      [[...product, license('X1', 'L1'), licensee('L1')], /License "X1" may not follow a LicenseTemplate/, 'type="License"'],
      [[...product, licensee('L1'), rawItem('ProductModule', { number: 'M9', productNumber: 'P', licensingModel: 'Quota' })], /ProductModule "M9" may not follow a Licensee/, 'type="ProductModule"'],
      [[licensee('L1'), ...product], /Licensee "L1": its product "P" is not in this export/, 'type="Licensee"'],
      [[...product, rawItem('Licensee', { number: 'L1', productNumber: 'OTHER' })], /its product "OTHER" is not in this export/, 'type="Licensee"'],
      [[...product, licensee('L1'), rawItem('License', { number: 'X1', licenseeNumber: 'L1', licenseTemplateNumber: 'T-NONE' })], /license template "T-NONE" is not a template of product "P"/, 'type="License"'],
      [[...product, rawItem('Token', { number: 'K', tokenType: 'APIKEY', licenseeNumber: 'L9' })], /Token "K": its licensee "L9" is not in this export/, 'type="Token"'],
      [[rawItem('Product', { number: 'P' }), rawItem('ProductModule', { number: 'M', productNumber: 'Q', licensingModel: 'Quota' })], /ProductModule "M" belongs to product "Q"/, 'type="ProductModule"'],
    ];
    for (const [items, reason, lineHas] of cases) {
      const { dir, name } = inputDir();
      const listed = items.filter((i) => i.type === 'Licensee').map((i) => i.props.find(([n]) => n === 'number')![1]);
      writeRaw(dir, 1, rawTransferFile([rawHeader({ licensees: JSON.stringify(listed) }), ...items]));
      await expectRefused(name, dir, { reason, lineHas });
    }
  });

  test('header problems', async () => {
    const cases: [Record<string, string>, RegExp, string?][] = [
      [{ formatVersion: '1' }, /transfer format version 1 is not supported \(this agent reads version 2\)/],
      [{ formatVersion: '3' }, /transfer format version 3 is not supported/],
      [{ file: '3', files: '3' }, /header says this is file 3, but the file is named 1_netlicensing-assets\.xml/],
      [{ licensees: '{"a":1}' }, /licensees must be a JSON array/],
      [{ cardSerial: 'C1' }, /both cardSerial and withoutCard/],
      [{ createdAt: 'yesterday' }, /createdAt is not an ISO-8601 time with a zone/],
      // Imported, these replaced the vendor's working credentials with ones nothing matches.
      [{ vendorUser: 'demo', vendorSalt: 'zz', vendorHash: 'not-hex' }, /vendorSalt and vendorHash must be 32 and 64 hexadecimal digits/],
      [{ vendorUser: 'demo', vendorSalt: '0'.repeat(32), vendorHash: 'A'.repeat(64) }, /vendorSalt and vendorHash must be 32 and 64 hexadecimal digits/],
      // Date.parse took these for dates.
      [{ createdAt: '1' }, /createdAt is not an ISO-8601 time with a zone/],
      [{ createdAt: '2026-02-30T12:00:00.000Z' }, /createdAt is not an ISO-8601 time with a zone/],
      [{ createdAt: '2026-03-01 12:00' }, /createdAt is not an ISO-8601 time with a zone/],
      [{ licensees: '["L1","NOT-THERE"]' }, /requests licensee "NOT-THERE", which is not in the export/],
      [{ licensees: '[]' }, /Licensee "L1" is not in the header's licensees list/, 'type="Licensee"'],
      [{ licensees: '["L0","L1"]' }, /Licensee "L1" comes where the header's licensees list has "L0"/, 'type="Licensee"'],
    ];
    for (const [fields, reason, lineHas] of cases) {
      const { dir, name } = inputDir();
      writeRaw(dir, 1, rawTransferFile([rawHeader(fields), ...goodItems()]));
      await expectRefused(name, dir, { reason, lineHas: lineHas ?? 'type="TransferHeader"' });
    }
  });

  test('structure problems: no header first, stray text, unknown elements, property after list', async () => {
    const cases: [(text: string) => string, RegExp, string, number?][] = [
      [(t) => t.replace('<item type="TransferHeader">', '<item type="Product">'), /first item must be the TransferHeader/, 'type="Product"'],
      [(t) => t.replace('<infos/>', '<infos/>stray'), /unexpected text "stray"/, 'stray', 9],
      [(t) => t.replace('<infos/>', '<infos/>  x<!-- -->'), /unexpected text "x"/, 'x<!--', 11],
      // A no-break space is not XML whitespace: stray text, shown so that it can be seen.
      [(t) => t.replace('<infos/>', '<infos/>\u00a0'), /unexpected text "\\u00a0"/, '\u00a0', 9],
      [(t) => t.replace('<infos/>', '<infos/><extra/>'), /unexpected element <extra>/, '<extra/>'],
      [(t) => t.replace('</list>\n', '</list>\n    <property name="late">1</property>\n'), /a <property> after a <list>/, 'name="late"'],
      [(t) => t.replace('<property name="name">Product</property>', '<property name="name">Product<b/></property>'), /unexpected element <b> inside a <property>/, '<b/>'],
      [(t) => t.replace('<property name="name">Product</property>', '<property name="name">Product</property><property name="name">Again</property>'), /property "name" appears twice/, 'Again'],
    ];
    for (const [mutate, reason, lineHas, column] of cases) {
      const { dir, name } = inputDir();
      writeRaw(dir, 1, mutate(rawTransferFile([rawHeader(), ...goodItems()])));
      await expectRefused(name, dir, { reason, lineHas, ...(column === undefined ? {} : { column }) });
    }
  });

  test('the input directory does not exist; a failed first import leaves no database', async () => {
    const fresh = tempDir();
    const missing = await cli(['--action=import-assets', '--input=nowhere'], fresh);
    expect(missing.code).toBe(EXIT.input);
    expect(missing.stderr).toContain('nowhere: cannot read the input directory');
    // A body error is found only inside the transaction, after the database was created.
    writeRaw(join(fresh, 'in'), 1, rawTransferFile([rawHeader(), rawItem('Transaction', { number: 'T' })]));
    const bad = await cli(['--action=import-assets', '--input=in'], fresh);
    expect(bad.code).toBe(EXIT.input);
    expect(existsSync(join(fresh, 'database'))).toBe(false);
    // A database directory the operator made (a mount point, say) stays, with what else is in it;
    // only the database files and the import lock go.
    mkdirSync(join(fresh, 'database'));
    writeFileSync(join(fresh, 'database', 'operator-note.txt'), 'mounted from /srv');
    expect((await cli(['--action=import-assets', '--input=in'], fresh)).code).toBe(EXIT.input);
    expect(readdirSync(join(fresh, 'database'))).toEqual(['operator-note.txt']);
  });

  test('--force does not override bad input', async () => {
    const { dir, name } = inputDir();
    writeRaw(dir, 1, rawTransferFile([rawHeader(), ...goodItems()]).replace('>Product<', '>Produkt<'));
    const result = await cli(['--action=import-assets', `--input=${name}`, '--force'], cwd);
    expect(result.code).toBe(EXIT.input);
    expect(await databaseChecksum()).toBe(checksum);
  });

  test('--force accepts "," and ";" in numbers', async () => {
    const fresh = tempDir();
    const items = toRaw(smallExport([{ number: 'L,1', licenses: ['X;1'] }], { tokens: [entity('Token', 'K', { tokenType: 'APIKEY' })] }));
    writeRaw(join(fresh, 'in'), 1, rawTransferFile([rawHeader({ licensees: '["L,1"]' }), ...items]));
    const result = await cli(['--action=import-assets', '--input=in', '--force'], fresh);
    expect(result.code).toBe(EXIT.ok);
    expect(result.stderr).toContain('number contains "," or ";", accepted because of --force');
    const store = openAssetStore(join(fresh, 'database'));
    expect(store.children('License', 'L,1').map((l) => l.number)).toEqual(['X;1']);
    await store.close();
  });
});
