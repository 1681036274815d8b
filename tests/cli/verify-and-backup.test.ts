// Goal: verify-database recomputes counters from the hash-chained journal and
// finds tampering; backup copies a database that is in use. Method: real LMDB
// stores in temp working directories, runCli with captured output; tampering
// is done by writing raw records through a second store handle.
import { describe, expect, test } from 'bun:test';
import { mkdirSync, readdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../../src/cli/run.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { entriesOfRecord, type JournalRecord } from '../../src/store/journal-records.ts';
import { openKvEnvironment, type KvEnvironment } from '../../src/store/lmdb.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { captureIo, tempDir } from '../helpers.ts';
import { entity, seedStore } from '../support/seed-store.ts';

/**
 * Tampering: replaces the events of journal entry `seq` in its stored record and keeps the
 * record's chain links as they were (what an editor of the file would do), inside a transaction.
 */
function alterJournalEntry(env: KvEnvironment, seq: number, events: unknown[]): void {
  const journal = env.open<JournalRecord>('journal');
  const [key] = journal.getKeys({ start: seq, reverse: true, limit: 1 });
  const record = journal.get(key!) as string;
  const texts = entriesOfRecord(record).map((entry) =>
    JSON.stringify([entry.seq, entry.atMs, entry.licenseeNumber, entry.seq === seq ? events : entry.events]),
  );
  const altered = record.slice(0, 128) + texts.join('\n');
  expect(altered).not.toBe(record);
  journal.putSync(key!, altered);
}

async function seedWithJournal(): Promise<string> {
  const { store, cwd } = seedStore([entity('Product', 'P'), entity('Licensee', 'L', { productNumber: 'P' })]);
  for (let i = 0; i < 5; i++) {
    await store.commitRuntime('L', 1000 + i, () => ({
      events: [
        { type: 'quantityUsed', licenseNumber: 'X', quantity: 2 },
        { type: 'sessionCheckedOut', moduleNumber: 'M', sessionId: `s${i}`, checkedOutMs: 1000, expiresMs: 5000 },
      ],
      result: null,
    }));
  }
  await store.close();
  return cwd;
}

describe('verify-database', () => {
  test('a sound database verifies and prints the recomputed counters', async () => {
    const cwd = await seedWithJournal();
    const io = captureIo();
    expect(await runCli(['--action=verify-database'], io, { cwd, log: silentLogger() })).toBe(0);
    expect(io.out).toContain('journal entries: 5');
    expect(io.out).toContain('used quantity: 10');
    expect(io.out).toContain('open floating sessions: 5');
  });

  test('an altered journal entry and a counter changed outside the journal are both reported', async () => {
    const cwd = await seedWithJournal();
    const env = openKvEnvironment(join(cwd, 'database'));
    const runtime = env.open<{ licenseeNumber: string; state: { usedQuantity: Record<string, number> } }>('runtime');
    env.commitSync(() => {
      alterJournalEntry(env, 3, [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 1 }]);
      const record = runtime.get('L')!;
      runtime.putSync('L', { ...record, state: { ...record.state, usedQuantity: { X: 1 } } });
    });
    await env.close();
    const io = captureIo();
    expect(await runCli(['--action=verify-database'], io, { cwd, log: silentLogger() })).toBe(5);
    expect(io.err).toContain('journal entry 3: content does not match its hash');
    expect(io.err).toContain("runtime state of licensee 'L' differs");
  });
});

describe('verify-database, group commits', () => {
  test('an entry altered inside a group commit is reported with its group', async () => {
    const { store, cwd } = seedStore([entity('Product', 'P'), entity('Licensee', 'L', { productNumber: 'P' })]);
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        store.commitRuntime('L', 1000 + i, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 1 }], result: null })),
      ),
    );
    await store.settled();
    const entries = [...store.journal()];
    await store.close();
    // The first change is committed alone; the seven decided meanwhile share the next commit.
    expect(entries[0]!.hash).not.toBe(entries[1]!.hash);
    expect(new Set(entries.slice(1).map((e) => e.hash)).size).toBe(1);
    const env = openKvEnvironment(join(cwd, 'database'));
    env.commitSync(() => alterJournalEntry(env, 4, [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 2 }]));
    await env.close();
    const io = captureIo();
    expect(await runCli(['--action=verify-database'], io, { cwd, log: silentLogger() })).toBe(5);
    expect(io.err).toContain('journal entries 2–8 (one group commit): content does not match their hash');
  });
});

/** A working directory with a database holding licensee L (closed). */
async function seededDirectory(): Promise<string> {
  const { store, cwd } = seedStore([entity('Product', 'P'), entity('Licensee', 'L', { productNumber: 'P' })]);
  await store.close();
  return cwd;
}

/** `--action=backup --output=<output>` run in `cwd`: exit code and stderr. */
async function backup(cwd: string, output: string, ...extra: string[]): Promise<{ code: number; err: string }> {
  const io = captureIo();
  const code = await runCli(['--action=backup', `--output=${output}`, ...extra], io, { cwd, log: silentLogger() });
  return { code, err: io.err };
}

describe('backup', () => {
  test('copies a database that is open and in use; the copy holds every acknowledged change', async () => {
    const { store, cwd } = seedStore([entity('Product', 'P'), entity('Licensee', 'L', { productNumber: 'P' })]);
    await store.commitRuntime('L', 1, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 7 }], result: null }));
    const target = tempDir();
    const io = captureIo();
    expect(await runCli(['--action=backup', `--output=${target}`], io, { cwd, log: silentLogger() })).toBe(0);
    expect(io.out).toContain('journal sequence 1');
    // Still serving: the original keeps working after the copy.
    await store.commitRuntime('L', 2, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 1 }], result: null }));
    await store.close();
    const copy = openAssetStore(join(target, 'database'));
    expect(copy.getRuntime('L').usedQuantity['X']).toBe(7);
    expect(copy.getEntity('Licensee', 'L')?.number).toBe('L');
    await copy.close();
    // A second backup into the same place needs --force.
    const again = captureIo();
    expect(await runCli(['--action=backup', `--output=${target}`], again, { cwd, log: silentLogger() })).toBe(4);
    expect(await runCli(['--action=backup', `--output=${target}`, '--force'], captureIo(), { cwd, log: silentLogger() })).toBe(0);
    // Nothing of the copy's temporary names is left beside it.
    expect(readdirSync(target)).toEqual(['database']);
  });

  test('the working directory under another name (a symlink) is refused, with or without --force, and stays intact', async () => {
    const cwd = await seededDirectory();
    const alias = join(tempDir(), 'alias');
    symlinkSync(cwd, alias);
    for (const output of [alias, join(alias, '.'), cwd]) {
      for (const force of [[], ['--force']]) {
        const result = await backup(cwd, output, ...force);
        expect(result.code).toBe(2);
        expect(result.err).toContain('is the working directory');
      }
    }
    const still = openAssetStore(join(cwd, 'database'));
    expect(still.getEntity('Licensee', 'L')?.number).toBe('L');
    await still.close();
  });

  test('a backup that cannot be made leaves the previous one as it was', async () => {
    const { store, cwd } = seedStore([entity('Product', 'P'), entity('Licensee', 'L', { productNumber: 'P' })]);
    await store.commitRuntime('L', 1, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X', quantity: 7 }], result: null }));
    await store.close();
    const target = tempDir();
    expect((await backup(cwd, target)).code).toBe(0);
    // Run from a directory without a database, with --force: refused (exit 5), the old backup untouched.
    expect((await backup(tempDir(), target, '--force')).code).toBe(5);
    expect(readdirSync(target)).toEqual(['database']);
    const copy = openAssetStore(join(target, 'database'));
    expect(copy.getRuntime('L').usedQuantity['X']).toBe(7);
    await copy.close();
  });

  test('what a killed backup left is cleared: an unfinished copy removed, an old backup moved aside put back', async () => {
    const cwd = await seededDirectory();
    const target = tempDir();
    expect((await backup(cwd, target)).code).toBe(0);
    // Killed right after moving the old copy aside (pid 2^22 + 1 is above Linux's pid_max: never running).
    const gone = 4_194_305;
    renameSync(join(target, 'database'), join(target, `.database-previous-${gone}`));
    mkdirSync(join(target, `.database-partial-${gone}`));
    // The next backup clears them before anything else, even one that then fails (no database where it runs).
    expect((await backup(tempDir(), target, '--force')).code).toBe(5);
    expect(readdirSync(target)).toEqual(['database']);
    expect((await backup(cwd, target, '--force')).code).toBe(0);
    expect(readdirSync(target)).toEqual(['database']);
  });

  test('an output that is a file is a usage error, not an internal one', async () => {
    const file = join(tempDir(), 'file');
    writeFileSync(file, 'x');
    const result = await backup(await seededDirectory(), file);
    expect(result.code).toBe(2);
    expect(result.err).toContain('is not a directory');
  });
});
