// Goal: an import is all or nothing even when the process dies: a child
// killed with SIGKILL in the middle of a large import leaves the database
// holding exactly the old state (or, had it finished, the new one), never a
// mix; killed while staging batches it leaves the old state, killed right
// after the switch transaction the new one; what a killed import leaves
// behind (staged definitions, its claim, or the previous generation) is
// cleared by the next import. Method: import a small export, copy the
// database, start a child that imports a large export into it and kill it
// once it reports a quarter of the bytes read, or at a fixed stop (after
// batch 3, after the switch); import the same export fully into the copy;
// compare entity counts and checksums of the reopened databases.
import { describe, expect, test } from 'bun:test';
import { cpSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { importTransferFiles } from '../../src/importer/import-transfer.ts';
import { openAssetStore, type DefinitionsGenerations } from '../../src/store/asset-store.ts';
import { MAIN } from '../ops/support.ts';
import { tempDir } from '../helpers.ts';
import { counts, storeChecksum } from './helpers.ts';
import { ImportChild, newExport, oldState } from './staged-helpers.ts';

/** Imports and stops for good once a quarter of the bytes is read (fixtures/import-child.ts). */
const MIDWAY_CHILD = join(import.meta.dir, 'fixtures', 'import-child.ts');

async function stateOf(database: string) {
  const store = openAssetStore(database);
  try {
    return { checksum: storeChecksum(store), counts: counts(store), runtime: store.getRuntime('L0'), generations: store.definitionsGenerations() };
  } finally {
    await store.close();
  }
}

/** The state of `database` after importing `input` completely (done on a copy made now). */
async function completedImport(database: string, input: string): Promise<Awaited<ReturnType<typeof stateOf>>> {
  const copy = join(database, '..', 'completed', 'database');
  cpSync(database, copy, { recursive: true });
  const store = openAssetStore(copy);
  importTransferFiles(store, { directory: input, force: false, withoutCard: false, nowMs: Date.UTC(2026, 5, 2) });
  await store.close();
  return stateOf(copy);
}

/** Kills a child import at a stop; returns the database's state and what the next import makes of it. */
async function killAt(stop: string) {
  const root = tempDir('nla-atomic-');
  const database = await oldState(root);
  const input = await newExport(root, 2000);
  const old = await stateOf(database);
  const fresh = await completedImport(database, input);
  expect(fresh.checksum).not.toBe(old.checksum);

  const child = new ImportChild(database, input, [stop]);
  try {
    await child.until(`paused ${stop}`);
  } finally {
    child.proc.kill('SIGKILL');
  }
  await child.proc.exited;
  expect(child.proc.signalCode).toBe('SIGKILL');
  const after = await stateOf(database);

  // The next import of the same export clears what the killed one left and ends in the new state.
  const store = openAssetStore(database);
  importTransferFiles(store, { directory: input, force: false, withoutCard: false, nowMs: Date.UTC(2026, 5, 2) });
  await store.close();
  const next = await stateOf(database);
  const clean: Partial<DefinitionsGenerations> = { spareEntities: 0 };
  expect(next.generations).toMatchObject(clean);
  expect(next.generations.staging).toBeUndefined();
  expect(next.checksum).toBe(fresh.checksum);
  return { old, fresh, after, childPid: child.proc.pid };
}

describe('atomicity', () => {
  test('SIGKILL in the middle of an import leaves the old state', async () => {
    const root = tempDir('nla-atomic-');
    const database = await oldState(root);
    const old = await stateOf(database);
    // The large export drops X0..X49 and adds 20k licensees with 3 licenses each (several files).
    const largeDir = await newExport(root, 20_000, 8 * 1024 * 1024);
    expect(readdirSync(largeDir).length).toBeGreaterThan(1);
    // The same import, completed, on a copy of the old state: the "new" state.
    const fresh = await completedImport(database, largeDir);
    expect(fresh.counts.License).toBe(60_000);
    expect(fresh.checksum).not.toBe(old.checksum);

    const child = new ImportChild(database, largeDir, [], MIDWAY_CHILD);
    try {
      await child.until('midway');
    } finally {
      // The child waits at "midway" until killed (fixtures/import-child.ts).
      child.proc.kill('SIGKILL');
    }
    expect(child.output).not.toContain('done');
    await child.proc.exited;
    expect(child.proc.signalCode).toBe('SIGKILL');

    // Old or new, never a mix; killed a quarter of the way in, it cannot have committed: old.
    const after = await stateOf(database);
    expect(after.checksum).toBe(old.checksum);
    expect(after.counts).toEqual(old.counts);
    expect(after.runtime.usedQuantity['X0']).toBe(3);
    // Two imports of 20,000 licensees: 3.1–4.8 s on the 2-core machine, close to bun's default 5 s.
  }, 60_000);

  test('Ctrl-C (SIGINT) ends an import at once, not after it committed: the old state stays', async () => {
    // Once it has started importing, the signal is made pending while the importing process is
    // stopped, so it arrives in the middle of the import, however fast this machine is. The
    // import runs in a child of the process started (cli/crash-guard.ts); Ctrl-C in a terminal
    // signals both, as here.
    const { signal, old, after } = await interruptedImport(async (started, importer) => {
      for (const pid of [importer, started]) await stop(pid);
      for (const pid of [importer, started]) process.kill(pid, 'SIGINT');
      for (const pid of [importer, started]) process.kill(pid, 'SIGCONT');
    });
    // Before: a handler only noted the signal, and the import went on to commit and exit 0.
    expect(signal).toBe('SIGINT');
    expect(after.checksum).toBe(old.checksum);
    expect(after.runtime.usedQuantity['X0']).toBe(3);
  }, 60_000);

  test('SIGTERM to the process started alone (`timeout`, `kill`) ends the import in its child as well: the old state stays', async () => {
    const { signal, old, after } = await interruptedImport(async (started, importer) => {
      // The importer is stopped, so that the signal the started process passes on waits for it mid-import.
      await stop(importer);
      process.kill(started, 'SIGTERM');
      for (let i = 0; i < 100 && !pendingSignals(importer).includes('SIGTERM'); i++) await Bun.sleep(20);
      process.kill(importer, 'SIGCONT');
    });
    expect(signal).toBe('SIGTERM');
    expect(after.checksum).toBe(old.checksum);
  }, 60_000);

  test('SIGKILL while staging batches leaves the old state; the next import clears the staging', async () => {
    const { old, after, childPid } = await killAt('batch:3');
    expect(after.checksum).toBe(old.checksum);
    expect(after.counts).toEqual(old.counts);
    expect(after.runtime.usedQuantity['X0']).toBe(3);
    // Left behind: the staged batches and the dead import's claim (readers never see them).
    expect(after.generations.staging?.pid).toBe(childPid);
    expect(after.generations.spareEntities).toBeGreaterThan(0);
    expect(after.generations.served).toBe(old.generations.served);
  });

  test('SIGKILL right after the switch leaves the new state; the next import clears the previous generation', async () => {
    const { old, fresh, after } = await killAt('switched');
    expect(after.checksum).toBe(fresh.checksum);
    expect(after.counts).toEqual(fresh.counts);
    expect(after.runtime.usedQuantity['X0']).toBe(3);
    // Left behind: the previous generation, no longer served.
    expect(after.generations.staging).toBeUndefined();
    // Every definition of the old state: its licensees and licenses, product, modules and templates.
    const oldDefinitions = Object.values(old.counts).reduce((sum, n) => sum + n, 0);
    expect(after.generations.spareEntities).toBe(oldDefinitions);
    expect(after.generations.served).not.toBe(old.generations.served);
  });
});

/**
 * An import of 20,000 licensees over the old state, started through src/main.ts and given to
 * `interrupt` (the pid started and the importer's, its child) once it says it is importing; how
 * the process started ended, and the states before and after.
 */
async function interruptedImport(interrupt: (started: number, importer: number) => Promise<void>) {
  const root = tempDir('nla-atomic-');
  const database = await oldState(root);
  const old = await stateOf(database);
  const child = await startedImport(root, await newExport(root, 20_000, 8 * 1024 * 1024));
  await interrupt(child.pid, guardedChildOf(child.pid));
  await child.exited;
  return { signal: child.signalCode, old, after: await stateOf(database) };
}

/** `import-assets` started through src/main.ts, once it says it is importing (its stderr is read on in the background). */
async function startedImport(root: string, input: string): Promise<Bun.Subprocess<'ignore', 'pipe', 'pipe'>> {
  const child = Bun.spawn([process.execPath, MAIN, '--action=import-assets', `--input=${input}`], { cwd: root, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
  const decoder = new TextDecoder();
  let stderr = '';
  const { promise: started, resolve } = Promise.withResolvers<void>();
  void (async () => {
    for await (const chunk of child.stderr) {
      stderr += decoder.decode(chunk);
      if (stderr.includes('importing export')) resolve();
    }
    resolve();
  })();
  await started;
  return child;
}

/** The process the CLI started to run the action in (cli/crash-guard.ts): the only child of `pid`. */
function guardedChildOf(pid: number): number {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  expect(children.length).toBe(1);
  return children[0]!;
}

/** Stops a process and waits until it is stopped (a signal sent before then may find it running). */
async function stop(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  for (let i = 0; i < 250 && !/^State:\s+T/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')); i++) await Bun.sleep(4);
  expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^State:\s+T/m);
}

/** Signals pending for a process (SigPnd and ShdPnd of /proc/<pid>/status), by name: SIGINT and SIGTERM only. */
function pendingSignals(pid: number): string[] {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return [];
  }
  const mask = ['SigPnd', 'ShdPnd'].reduce((all, field) => all | BigInt(`0x${new RegExp(`^${field}:\\s*([0-9a-f]+)`, 'm').exec(status)?.[1] ?? '0'}`), 0n);
  return (
    [
      ['SIGINT', 2],
      ['SIGTERM', 15],
    ] as const
  )
    .filter(([, n]) => (mask >> BigInt(n - 1)) & 1n)
    .map(([name]) => name);
}
