// Goal: what the XML reader cannot read is reported with the file's name, on either thread,
// like every other bad input (the importer's messages name file, line and column).
// Method: a path that opens but cannot be read (a directory: read(2) fails with EISDIR).
import { expect, test } from 'bun:test';
import { TransferInputError } from '../../src/importer/errors.ts';
import { readBatchesInline, readBatchesInWorker } from '../../src/importer/read-batches.ts';
import { readXmlFile } from '../../src/importer/sax-source.ts';
import { tempDir } from '../helpers.ts';

const noEvents = { open() {}, close() {}, text() {} };

test('a read error names the file', () => {
  const directory = tempDir('nla-unreadable-');
  let error: unknown;
  try {
    readXmlFile(directory, 'in/1_netlicensing-assets.xml', () => noEvents);
  } catch (caught) {
    error = caught;
  }
  expect(error).toBeInstanceOf(TransferInputError);
  expect((error as Error).message).toMatch(/^in\/1_netlicensing-assets\.xml: cannot read: .*EISDIR/);
});

test('on the reader thread, the same error with the same words', () => {
  const directory = tempDir('nla-unreadable-');
  const files = [{ path: directory, display: 'in/1_netlicensing-assets.xml' }];
  const messages: string[] = [];
  for (const read of [() => readBatchesInline(files, { batchBytes: 1 << 20 }, () => {}), () => readBatchesInWorker(files, { batchBytes: 1 << 20 }, () => {})]) {
    try {
      read();
      messages.push('read without error');
    } catch (caught) {
      expect(caught).toBeInstanceOf(TransferInputError);
      messages.push((caught as Error).message);
    }
  }
  expect(messages[0]).toMatch(/^in\/1_netlicensing-assets\.xml: cannot read: /);
  expect(messages[1]).toBe(messages[0]!);
});
