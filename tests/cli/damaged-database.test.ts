// Goal: a damaged database is reported as damage, with what to do and exit 5, by every action,
// also where LMDB ends the process on it (an assertion, a read past the file's end) instead of
// returning an error; a script never sees the runtime's crash report or "internal error".
// Method: the bundled demo export imported into temp working directories; the database file
// damaged the ways a disk or a copy damages it (pages overwritten with seeded random bytes, the
// file cut short); the real program (src/main.ts) run as an administrator's script runs it; the
// crash guard also driven with a child that crashes the way LMDB makes one crash.
import { describe, expect, test } from 'bun:test';
import { cpSync, existsSync, openSync, closeSync, readFileSync, statSync, truncateSync, writeSync, writeFileSync } from 'node:fs';
import { processExists } from '../../src/platform/process-exists.ts';
import { join } from 'node:path';
import { runInGuardedChild } from '../../src/cli/crash-guard.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { captureIo, seededRandom, tempDir } from '../helpers.ts';
import { cli } from '../importer/helpers.ts';
import { runMain } from '../ops/support.ts';
import { GENERATION_KEY, generationNames } from '../../src/store/layout.ts';
import { openKvEnvironment } from '../../src/store/lmdb.ts';

const DEMO = join(import.meta.dir, '..', '..', 'demo');
const PAGE = 4096;

/** A working directory with the demo export imported (the transfer file stays, for a re-import). */
async function demoDirectory(): Promise<string> {
  const cwd = tempDir();
  cpSync(DEMO, cwd, { recursive: true });
  expect((await cli(['--action=import-assets'], cwd)).code).toBe(EXIT.ok);
  return cwd;
}

/** Overwrites every page after LMDB's two meta pages with bytes from a seeded generator. */
function overwritePages(cwd: string, seed: number): void {
  const file = join(cwd, 'database', 'data.mdb');
  const random = seededRandom(seed);
  const bytes = new Uint8Array(statSync(file).size - 2 * PAGE).map(() => Math.floor(random() * 256));
  const fd = openSync(file, 'r+');
  writeSync(fd, bytes, 0, bytes.length, 2 * PAGE);
  closeSync(fd);
}

describe('a damaged database', () => {
  test('pages overwritten: status, verify-database, backup and import-assets say the database is damaged, exit 5, whichever way LMDB meets it', async () => {
    const sound = await demoDirectory();
    const endings = new Set<string>();
    // Seeds 1-8 give both ways on the demo database: LMDB reports an error (MDB_PAGE_NOTFOUND,
    // MDB_CORRUPTED) or ends the process (SIGBUS, SIGABRT). Should a change of the database's
    // layout make one way disappear, the last assertion says so: choose other seeds.
    for (let seed = 1; seed <= 8; seed++) {
      const cwd = tempDir();
      cpSync(sound, cwd, { recursive: true });
      overwritePages(cwd, seed);
      for (const action of ['status', 'verify-database', 'backup', 'import-assets']) {
        const run = await runMain(cwd, [`--action=${action}`, ...(action === 'backup' ? [`--output=${join(cwd, 'backup')}`] : [])]);
        const context = `seed ${seed}, ${action}: ${run.err}`;
        expect(run.code, context).toBe(EXIT.store);
        expect(run.err, context).toMatch(/is damaged|database verification FAILED/);
        expect(run.err, context).toContain('restore the latest backup');
        expect(run.err, context).not.toContain('Bun has crashed');
        // (LMDB itself may print a line of its own that begins "internal error, …".)
        expect(run.err, context).not.toMatch(/^internal error: /m);
        endings.add(run.err.includes('reading it ended the process') ? 'ended the process' : 'reported an error');
      }
    }
    expect([...endings].sort()).toEqual(['ended the process', 'reported an error']);
  }, 120_000);

  test('a data file cut short: every action, the server included, refuses it at open (exit 5) and reads nothing past its end', async () => {
    const cwd = await demoDirectory();
    truncateSync(join(cwd, 'database', 'data.mdb'), 3 * PAGE);
    for (const argv of [
      ['--action=status'],
      ['--action=verify-database'],
      [`--action=backup`, `--output=${join(cwd, 'backup')}`],
      ['--action=import-assets'],
      ['--action=run-agent-offline', '--host=127.0.0.1', '--port=0', '--admin.port=off'],
    ]) {
      const run = await cli(argv, cwd);
      expect(run.code, argv[0]).toBe(EXIT.store);
      expect(run.stderr, argv[0]).toContain('data.mdb is cut short: 12288 bytes, its pages need');
    }
    // The real program, as a script runs it.
    const status = await runMain(cwd, ['--action=status']);
    expect(status.code).toBe(EXIT.store);
    expect(status.err).toContain('is cut short');
  });

  test('verify-database: a sound database verifies; definitions that lost their product are each named, and the journal is still checked', async () => {
    const cwd = await demoDirectory();
    const sound = await runMain(cwd, ['--action=verify-database']);
    expect(sound.code).toBe(EXIT.ok);
    expect(sound.out).toContain('records read: ');
    expect(sound.out).toContain('definitions: 1 Product, 9 ProductModule, 13 LicenseTemplate, 9 Licensee, 9 License, 2 Token');
    expect(sound.out).toContain('database verified: every record readable, definitions consistent');

    const env = openKvEnvironment(join(cwd, 'database'));
    const served = generationNames(env.open<unknown>('meta').get(GENERATION_KEY) === 1 ? 1 : 0);
    env.commitSync(() => env.open(served.def.Product).removeSync('DEMO-PRODUCT'));
    await env.close();
    const damaged = await runMain(cwd, ['--action=verify-database']);
    expect(damaged.code).toBe(EXIT.store);
    expect(damaged.out).toContain('definitions: 0 Product,');
    expect(damaged.out).toContain('journal entries: 0');
    const problems = damaged.err.split('\n').filter((line) => line.startsWith('problem: '));
    // Nine modules and nine licensees; the templates and licenses still have theirs.
    expect(problems.length).toBe(18);
    for (const problem of problems) expect(problem).toContain('its Product "DEMO-PRODUCT" is missing');
    expect(damaged.err).toContain('database verification FAILED: restore the latest backup');
    expect(damaged.err).not.toContain('verify-database shows');
  });
});

describe('the crash guard (cli/crash-guard.ts)', () => {
  /** A program for the guard's child, written to a temp file. */
  const program = (source: string): string[] => {
    const file = join(tempDir(), 'child.ts');
    writeFileSync(file, source);
    return [process.execPath, file];
  };

  test("a child that crashes the way LMDB makes one crash: exit 5 and what it means, LMDB's line kept, the runtime's crash report left out", async () => {
    const io = captureIo();
    const cwd = tempDir();
    const code = await runInGuardedChild(
      { action: 'status', argv: ['--action=status'], cwd, logJson: false },
      io,
      program(`
        process.stderr.write("mdb.c:8587: Assertion 'IS_LEAF(mp)' failed in mdb_cursor_next()\\n");
        process.stderr.write('${'='.repeat(60)}\\nBun v1.4.5 (a7733435c) Linux x64\\n\\npanic(main thread): Bus error at address 0x1\\noh no: Bun has crashed. This indicates a bug in Bun, not your code.\\n');
        process.abort();
      `),
    );
    expect(code).toBe(EXIT.store);
    expect(io.err).toStartWith("mdb.c:8587: Assertion 'IS_LEAF(mp)' failed in mdb_cursor_next()\n");
    expect(io.err).toContain(`error: the database in ${join(cwd, 'database')} is damaged: reading it ended the process (SIGABRT, panic(main thread): Bus error at address 0x1)`);
    expect(io.err).toContain('--action=verify-database shows what is damaged');
    expect(io.err).not.toContain('Bun has crashed');
    expect(io.err).not.toContain('====');
  });

  test('with --log.json the message that replaces the crash report is a JSON line as well', async () => {
    const io = captureIo();
    const code = await runInGuardedChild({ action: 'backup', argv: [], cwd: tempDir(), logJson: true }, io, program('process.abort();'));
    expect(code).toBe(EXIT.store);
    const line = JSON.parse(io.err.trim()) as { level: string; message: string };
    expect(line.level).toBe('error');
    expect(line.message).toStartWith('error: the database in ');
    expect(line.message).toContain('is damaged: reading it ended the process (SIGABRT)');
  });

  test('a child whose starting process is killed by a signal it cannot pass on (kill -9) ends too', async () => {
    // An import the caller saw fail (137) committed seconds later in its orphaned child (the import review).
    const dir = tempDir();
    const childPidFile = join(dir, 'child.pid');
    const crashGuard = join(import.meta.dir, '..', '..', 'src', 'cli', 'crash-guard.ts');
    const childProgram = program(`
      import { endWithParent, GUARDED_CHILD_ENV } from ${JSON.stringify(crashGuard)};
      endWithParent(Number(process.env[GUARDED_CHILD_ENV]));
      require('node:fs').writeFileSync(${JSON.stringify(childPidFile)}, String(process.pid));
      // Busy as an import is, with no timer run for seconds: only the kernel can end it in time.
      const until = Date.now() + 20_000;
      while (Date.now() < until);
    `);
    const parent = Bun.spawn([
      process.execPath,
      '-e',
      `import { runInGuardedChild } from ${JSON.stringify(crashGuard)};
       await runInGuardedChild({ action: 'import-assets', argv: [], cwd: ${JSON.stringify(dir)}, logJson: false },
         { stdout: () => {}, stderr: () => {}, env: process.env, isTTY: false }, ${JSON.stringify(childProgram)});`,
    ]);
    let childPid = 0;
    for (let i = 0; i < 200 && childPid === 0; i++) {
      await Bun.sleep(50);
      childPid = existsSync(childPidFile) ? Number(readFileSync(childPidFile, 'utf8')) : 0;
    }
    expect(childPid).toBeGreaterThan(0);
    parent.kill('SIGKILL');
    await parent.exited;
    let alive = true;
    for (let i = 0; i < 200 && alive; i++) {
      await Bun.sleep(50);
      alive = processExists(childPid);
    }
    // Left running, it would outlive the test run: stopped here (this test started it).
    if (alive) process.kill(childPid, 'SIGKILL');
    expect(alive).toBe(false);
  }, 30_000);

  test('a child that ends normally: its exit code and its whole stderr, a last line without a newline included', async () => {
    const io = captureIo();
    const code = await runInGuardedChild({ action: 'status', argv: [], cwd: tempDir(), logJson: false }, io, program(`process.stderr.write('first\\nsecond'); process.exit(3);`));
    expect(code).toBe(3);
    expect(io.err).toBe('first\nsecond');
  });
});
