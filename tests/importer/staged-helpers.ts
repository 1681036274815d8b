/**
 * Helpers of the staged-import tests: a child process that imports with
 * stops (fixtures/staged-child.ts), the old state and the new export they
 * import, and a way to see the newest commits from this process.
 */
import { join } from 'node:path';
import { importTransferFiles } from '../../src/importer/import-transfer.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { header, headerFor, smallExport } from './helpers.ts';

const CHILD = join(import.meta.dir, 'fixtures', 'staged-child.ts');
/**
 * A child importing with stops (see fixtures/staged-child.ts), or another
 * child script given the same arguments (fixtures/import-child.ts, which
 * has no stops and ignores them).
 */
export class ImportChild {
  readonly proc;
  private readonly reader;
  private said = '';

  constructor(database: string, input: string, stops: string[], script = CHILD) {
    this.proc = Bun.spawn([process.execPath, script, database, input, stops.join(',')], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
    this.reader = this.proc.stdout.getReader();
  }

  /** What the child has printed so far (as read by `until`). */
  get output(): string {
    return this.said;
  }

  /** Reads the child's output until it contains `text`; throws if the child ends first. */
  async until(text: string): Promise<void> {
    while (!this.said.includes(text)) {
      const { value, done } = await this.reader.read();
      if (done) throw new Error(`the child ended before "${text}": ${this.said}${await new Response(this.proc.stderr).text()}`);
      this.said += new TextDecoder().decode(value);
    }
  }

  resume(): void {
    void this.proc.stdin.write('\n');
    void this.proc.stdin.flush();
  }
}

/**
 * lmdb renews a process's read snapshot on a timer of the event loop; a
 * timer queued after it runs after it, so the next reads see the newest
 * commits (ordering, not timing).
 */
export const freshSnapshot = () => new Promise((resolve) => setTimeout(resolve, 0));

/** The old state: 50 licensees with one license X<i> each, and runtime state on L0. */
export async function oldState(root: string): Promise<string> {
  const database = join(root, 'database');
  const small = Array.from({ length: 50 }, (_, i) => ({ number: `L${i}`, licenses: [`X${i}`] }));
  const dir = join(root, 'small');
  await writeTransferFiles(header(small.map((l) => l.number)), smallExport(small), { directory: dir });
  const store = openAssetStore(database, { create: true });
  importTransferFiles(store, { directory: dir, force: false, withoutCard: false, nowMs: Date.parse('2026-12-01T00:00:00Z') });
  await store.commitRuntime('L0', 5, () => ({ events: [{ type: 'quantityUsed', licenseNumber: 'X0', quantity: 3 }], result: null }));
  await store.close();
  return database;
}

/**
 * The new export: licensees L0…L<n-1> with licenses N<i>a/b/c (X<i> are dropped), in several
 * files, in <root>/large (or `variant.directory`, with the header's source host `variant.sourceHost`).
 */
export async function newExport(
  root: string,
  licensees: number,
  maxFileBytes = 256 * 1024,
  variant: { directory?: string; sourceHost?: string } = {},
): Promise<string> {
  const large = Array.from({ length: licensees }, (_, i) => ({ number: `L${i}`, licenses: [`N${i}a`, `N${i}b`, `N${i}c`] }));
  const dir = join(root, variant.directory ?? 'large');
  const entities = smallExport(large);
  const overrides = { exportId: 'large', ...(variant.sourceHost === undefined ? {} : { sourceHost: variant.sourceHost }) };
  await writeTransferFiles(headerFor(entities, overrides), entities, { directory: dir, maxFileBytes });
  return dir;
}

