// Goal: an import is all or nothing even when the process dies: a child
// killed with SIGKILL in the middle of a large import leaves the database
// holding exactly the old state (or, had it finished, the new one), never a
// mix. Method: import a small export, copy the database, start a child that
// imports a large export into it and kill it once it reports a quarter of
// the bytes read; import the same export fully into the copy; compare entity
// counts and checksums of the reopened databases.
import { describe, expect, test } from 'bun:test';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { importTransferFiles } from '../../src/importer/import-transfer.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import { counts, header, headerFor, smallExport, storeChecksum } from './helpers.ts';

const CHILD = join(import.meta.dir, 'fixtures', 'import-child.ts');

async function stateOf(database: string) {
  const store = openAssetStore(database);
  try {
    return { checksum: storeChecksum(store), counts: counts(store), runtime: store.getRuntime('L0') };
  } finally {
    await store.close();
  }
}

describe('atomicity', () => {
  test('SIGKILL in the middle of an import leaves the old state', async () => {
    const root = tempDir('nla-atomic-');
    const database = join(root, 'database');
    const copy = join(root, 'copy', 'database');

    const small = Array.from({ length: 50 }, (_, i) => ({ number: `L${i}`, licenses: [`X${i}`] }));
    const smallDir = join(root, 'small');
    await writeTransferFiles(header(small.map((l) => l.number)), smallExport(small), { directory: smallDir });
    const store = openAssetStore(database, { create: true });
    importTransferFiles(store, { directory: smallDir, force: false, withoutCard: false, nowMs: 0 });
    await store.commitRuntime('L0', 5, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X0', quantity: 3 }], result: null }));
    await store.close();
    const old = await stateOf(database);
    cpSync(join(root, 'database'), copy, { recursive: true });

    // The large export drops X0..X49 and adds 20k licensees with 3 licenses each (several files).
    const large = Array.from({ length: 20_000 }, (_, i) => ({ number: `L${i}`, licenses: [`N${i}a`, `N${i}b`, `N${i}c`] }));
    const largeDir = join(root, 'large');
    const largeExport = smallExport(large);
    const written = await writeTransferFiles(headerFor(largeExport, { exportId: 'large' }), largeExport, {
      directory: largeDir,
      maxFileBytes: 8 * 1024 * 1024,
    });
    expect(written.files.length).toBeGreaterThan(1);

    const child = Bun.spawn([process.execPath, CHILD, database, largeDir], { stdout: 'pipe', stderr: 'pipe' });
    const reader = child.stdout.getReader();
    let said = '';
    while (!said.includes('midway') && !said.includes('done')) {
      const { value, done } = await reader.read();
      if (done) break;
      said += new TextDecoder().decode(value);
    }
    expect(said).toContain('midway');
    expect(said).not.toContain('done');
    child.kill('SIGKILL');
    await child.exited;
    expect(child.signalCode).toBe('SIGKILL');

    // The same import, completed, on the copy: the "new" state.
    const other = openAssetStore(copy);
    importTransferFiles(other, { directory: largeDir, force: false, withoutCard: false, nowMs: Date.UTC(2026, 5, 2) });
    await other.close();
    const fresh = await stateOf(copy);
    expect(fresh.counts.License).toBe(60_000);
    expect(fresh.checksum).not.toBe(old.checksum);

    const after = await stateOf(database);
    expect([old.checksum, fresh.checksum]).toContain(after.checksum);
    // Killed a quarter of the way in: it cannot have committed.
    expect(after.checksum).toBe(old.checksum);
    expect(after.counts).toEqual(old.counts);
    expect(after.runtime.usedQuantity['X0']).toBe(3);
  });
});
