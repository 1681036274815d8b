// Goal: the store finds damage instead of serving it or crashing on it. checkIntegrity reads
// every record and names those that cannot be read or do not fit together; opening tells a
// damaged database from one never initialised, and refuses a data file cut short before
// anything reads past its end. Method: real LMDB stores seeded in temp directories; tampering
// through a second handle on the same file (the store's adapter for records, lmdb itself for
// bytes that msgpack cannot decode).
import { describe, expect, test } from 'bun:test';
import { statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { openAssetStore, StoreError } from '../../src/store/asset-store.ts';
import { GENERATION_KEY, generationNames } from '../../src/store/layout.ts';
import { openKvEnvironment, shortFileWaits } from '../../src/store/lmdb.ts';
import { tempDir } from '../helpers.ts';
import { demoEntities, seedStore } from '../support/seed-store.ts';

/** A seeded database with runtime state, closed; its directory. */
async function seeded(): Promise<string> {
  const { store, cwd } = seedStore(demoEntities());
  for (const licensee of ['L-1', 'L 2/ä', 'L-1']) {
    await store.commitRuntime(licensee, 1000, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 1 }], result: null }));
  }
  await store.close();
  return join(cwd, 'database');
}

/** The sub-database names of the served generation. */
function served(path: string): ReturnType<typeof generationNames> {
  const env = openKvEnvironment(path, { readOnly: true });
  const generation = env.open<unknown>('meta').get(GENERATION_KEY) === 1 ? 1 : 0;
  void env.close();
  return generationNames(generation);
}

function openError(path: string, readOnly: boolean): StoreError {
  try {
    void openAssetStore(path, { readOnly }).close();
  } catch (error) {
    expect(error).toBeInstanceOf(StoreError);
    return error as StoreError;
  }
  throw new Error('the database opened');
}

describe('checkIntegrity', () => {
  test('a sound database: every sub-database read, nothing found, the served definitions counted', async () => {
    const path = await seeded();
    const store = openAssetStore(path, { readOnly: true });
    const report = store.checkIntegrity();
    await store.close();
    expect(report.unreadable).toEqual([]);
    expect(report.inconsistent).toEqual([]);
    expect(report.definitions.Product).toBe(1);
    expect(report.definitions.Licensee).toBe(demoEntities().filter((e) => e.kind === 'Licensee').length);
    const records = Object.fromEntries(report.databases.map((d) => [d.name, d.records]));
    // Three sub-databases of state, and definitions, indexes and aliases of both generations.
    expect(report.databases.length).toBe(3 + 2 * (2 * 6 + 1));
    expect(records['runtime']).toBe(2);
    expect(records['journal']).toBe(3);
    expect(records[served(path).alias]).toBe(1);
  });

  test('records that do not fit together are each named; the sound rest is not', async () => {
    const path = await seeded();
    const env = openKvEnvironment(path);
    env.commitSync(() => {
      env.open(served(path).def.Product).removeSync('P-TEST');
      env.open(served(path).rel.License).removeSync('L-1\u001fLIC-PPU');
      env.open<string>(served(path).alias).putSync('ghost', 'NOPE');
      env.open(served(path).def.License).putSync('LIC-X', {
        kind: 'License',
        number: 'LIC-X',
        props: { number: 'LIC-X', licenseeNumber: 'L-1', licenseTemplateNumber: 'T-NONE' },
      });
      env.open(served(path).rel.License).putSync('L-1\u001fLIC-X', 'LIC-X');
      env.open(served(path).def.Licensee).putSync('L-9', { kind: 'Licensee', number: 'L-8', props: { number: 'L-8', productNumber: 'P-TEST' } });
      env.open('runtime').putSync('L 2/ä', { licenseeNumber: 'L-1', state: {} });
    });
    await env.close();
    const store = openAssetStore(path, { readOnly: true });
    const report = store.checkIntegrity(100);
    // At most as many problems as asked for, the first ones found.
    const bounded = store.checkIntegrity(5);
    await store.close();
    expect(bounded.inconsistent).toEqual(report.inconsistent.slice(0, 5));
    expect(report.inconsistent.length).toBeGreaterThan(5);
    expect(report.unreadable).toEqual([]);
    const found = report.inconsistent.join('\n');
    // Every module and licensee of the product lost it.
    expect(report.inconsistent.filter((p) => p.includes('its Product "P-TEST" is missing')).length).toBe(
      demoEntities().filter((e) => e.kind === 'ProductModule' || e.kind === 'Licensee').length,
    );
    expect(found).toContain('License "LIC-PPU" is missing from the index of its Licensee\'s children');
    expect(found).toContain('names licensee "NOPE", which is missing');
    expect(found).toContain('License "LIC-X": its LicenseTemplate "T-NONE" is missing');
    expect(found).toContain('Licensee "L-8" is stored under another number');
    expect(found).toContain('sub-database runtime, record "L 2/ä": not the runtime state of the licensee it is stored under');
    // The sound records raise nothing: templates and other licenses are not mentioned.
    expect(found).not.toContain('def:LicenseTemplate');
    expect(found).not.toContain('License "LIC-SUB"');
  });

  test('a record msgpack cannot decode is unreadable, and its sub-database is read no further', async () => {
    const path = await seeded();
    const raw = open({ path, maxDbs: 48 });
    const licensees = raw.openDB<Buffer, string>({ name: served(path).def.Licensee, encoding: 'binary', compression: false });
    // A map of five entries that ends after its header, in the second record ("L 2/ä" sorts first).
    licensees.putSync('L-1', Buffer.from([0x85]));
    await raw.close();
    const store = openAssetStore(path, { readOnly: true });
    const report = store.checkIntegrity();
    await store.close();
    expect(report.unreadable.length).toBe(1);
    expect(report.unreadable[0]).toStartWith(`sub-database ${served(path).def.Licensee}: cannot decode record 2 (`);
    expect(report.databases.find((d) => d.name === served(path).def.Licensee)?.records).toBe(1);
  });
});

describe('opening a damaged database', () => {
  test('a lost meta record with the other records still there is damage, read-only or not, and nothing is written', async () => {
    const path = await seeded();
    const env = openKvEnvironment(path);
    env.commitSync(() => env.open('meta').removeSync('meta'));
    await env.close();
    const before = statSync(join(path, 'data.mdb')).mtimeMs;
    for (const readOnly of [true, false]) {
      const error = openError(path, readOnly);
      expect(error.code).toBe('corrupt');
      expect(error.message).toContain('is damaged (its meta record is missing, its other records are there)');
      expect(error.message).toContain('restore the latest backup');
    }
    expect(statSync(join(path, 'data.mdb')).mtimeMs).toBe(before);
  });

  test('a file no transaction was ever committed to is not initialised, not damaged', async () => {
    const path = join(tempDir(), 'database');
    await openKvEnvironment(path).close();
    for (const readOnly of [true, false]) expect(openError(path, readOnly).code).toBe('not_initialised');
  });

  test('a batch of deletes leaves no free pages after the file end: the database opens again (it was taken for one cut short)', async () => {
    // LMDB may count pages a transaction allocated and freed again without writing them ("the file
    // may be shorter if the freeDB lists the final pages", mdb.c). run-agent's cache purge of 100
    // values did that; every commit now covers such pages (KvEnvironment.coverCountedPages).
    const { store, cwd } = seedStore(demoEntities());
    const path = join(cwd, 'database');
    await Promise.all(Array.from({ length: 100 }, (_, k) => store.putProxyValue(`cache:${k}`, { body: 'z'.repeat(300), atMs: 1 })));
    expect(await store.removeProxyValues([...store.proxyValueKeys('cache:')], () => true)).toBe(100);
    await store.close();
    const raw = open({ path, readOnly: true }) as unknown as { getStats(): { lastPageNumber: number; pageSize: number }; close(): Promise<void> };
    const { lastPageNumber, pageSize } = raw.getStats();
    await raw.close();
    expect(statSync(join(path, 'data.mdb')).size).toBeGreaterThanOrEqual((lastPageNumber + 1) * pageSize);
    for (const readOnly of [true, false]) {
      const reopened = openAssetStore(path, { readOnly });
      expect(reopened.proxyValue('cache:1')).toBeUndefined();
      await reopened.close();
    }
  });

  test('a file another process is about to cover (its commit left free pages after the end) opens once covered', async () => {
    // lmdb-js with its default options leaves such a tail after puts and deletes in one transaction.
    const path = join(tempDir(), 'database');
    const raw = open({ path, maxDbs: 4 });
    const db = raw.openDB({ name: 'j' });
    raw.transactionSync(() => {
      for (let i = 0; i < 300; i++) db.putSync(i, 'x'.repeat(500));
    });
    raw.transactionSync(() => {
      for (let i = 0; i < 300; i++) db.removeSync(i);
    });
    raw.transactionSync(() => {
      for (let i = 0; i < 300; i++) db.putSync(i, 'x'.repeat(500));
      for (let i = 0; i < 300; i++) db.removeSync(i);
    });
    const stats = (raw as unknown as { getStats(): { lastPageNumber: number; pageSize: number } }).getStats();
    await raw.close();
    const needed = (stats.lastPageNumber + 1) * stats.pageSize;
    const file = join(path, 'data.mdb');
    expect(statSync(file).size).toBeLessThan(needed);
    expect(() => openKvEnvironment(path, { readOnly: true })).toThrow('is cut short');
    // The other process covers it 60 ms after this open began looking: the open waits for that.
    const coverer = Bun.spawn(
      [
        process.execPath,
        '-e',
        `console.log('ready'); await Bun.sleep(60); const fs = require('node:fs'); const fd = fs.openSync(${JSON.stringify(file)}, 'r+'); fs.writeSync(fd, Buffer.alloc(1), 0, 1, ${needed - 1}); fs.closeSync(fd);`,
      ],
      { stdout: 'pipe' },
    );
    // The child sleeps after 'ready' for longer than it takes this process to get to the open:
    // the open must have waited (counted), else the test proves nothing.
    await coverer.stdout.getReader().read();
    const waitsBefore = shortFileWaits();
    const env = openKvEnvironment(path, { readOnly: true });
    expect(shortFileWaits()).toBeGreaterThan(waitsBefore);
    expect(await coverer.exited).toBe(0);
    expect(env.open<string>('j').get(1)).toBeUndefined();
    await env.close();
  });

  test('a data file cut short is refused at open, before anything reads past its end', async () => {
    const path = await seeded();
    const file = join(path, 'data.mdb');
    const size = statSync(file).size;
    truncateSync(file, 3 * 4096);
    for (const readOnly of [true, false]) {
      const error = openError(path, readOnly);
      expect(error.code).toBe('corrupt');
      expect(error.message).toContain(`${file} is cut short: 12288 bytes, its pages need ${size}`);
    }
  });
});
