/** Shared test helpers: temporary directories that are removed when the test process ends. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const created: string[] = [];
process.on('exit', () => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix = 'nla-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/**
 * Copies of the reference fixtures from ../shared/fixtures (real and official
 * NetLicensing responses; origins in tests/fixtures/shared/fixtures/SOURCES.md),
 * kept in the repository so tests do not depend on where shared/ lies.
 */
export const SHARED_FIXTURES = join(import.meta.dir, 'fixtures', 'shared', 'fixtures');
