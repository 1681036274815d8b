#!/usr/bin/env bun
/**
 * Memory of a serving agent with many active licensees: the resident set
 * (VmRSS, its anonymous part RssAnon, and its peak VmHWM, from /proc) of
 * `run-agent-offline` right after start, after every licensee was validated
 * once, after as many again at random, and 15 s after that load stopped — so
 * that operators can size a host.
 *
 *   bun scripts/bench-serving-memory.ts [--licensees=10000,100000]
 *
 * The database of each size is seeded as bench-startup.ts seeds it
 * (bench/licensees.ts: every licensee a Subscription license, every tenth a
 * Floating, every twentieth a Pay-per-Use one). The agent runs as
 * `bun src/main.ts --action=run-agent-offline` on 127.0.0.1; this process
 * sends read-only validates (every module of the product decided), 64 at a
 * time. Linux only (/proc). Nothing is asserted.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seedManyLicensees } from './bench/licensees.ts';
import { fixedRandomInts } from './bench/random.ts';

const arg = (name: string) => Bun.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const SIZES = (arg('licensees') ?? '10000,100000').split(',').map(Number);
const API_KEY = 'bench-0000-4000-8000-000000000000';
const IN_FLIGHT = 64;
const IDLE_MS = 15_000;
const root = join(import.meta.dir, '..');

// Owner-only files, as src/main.ts makes them (the agent warns about a database others can read).
process.umask(0o077);

/** VmRSS, its anonymous part (the process's own memory; the rest is mapped files: the database, the executable), and VmHWM of `pid`, in MB. */
function residentMb(pid: number): { rss: number; anon: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, anon: kb('RssAnon') / 1024, peak: kb('VmHWM') / 1024 };
}

async function portOf(stdout: ReadableStream<Uint8Array>): Promise<number> {
  const reader = stdout.getReader();
  let text = '';
  try {
    for (;;) {
      const match = /^listening on [^\n]+:(\d+)\n/m.exec(text);
      if (match) return Number(match[1]);
      const { value, done } = await reader.read();
      if (done) throw new Error(`agent exited: ${text}`);
      text += new TextDecoder().decode(value);
    }
  } finally {
    reader.releaseLock();
  }
}

const authorization = `Basic ${Buffer.from(`apiKey:${API_KEY}`).toString('base64')}`;
const licenseeNumber = (i: number) => `L-${String(i + 1).padStart(7, '0')}`;

console.log(`run-agent-offline's resident memory (VmRSS; peak VmHWM), read-only validates ${IN_FLIGHT} at a time\n`);
console.log(`${'licensees'.padStart(10)} ${'database'.padStart(9)}  ${'started'.padStart(17)}  ${'each once'.padStart(17)}  ${'again'.padStart(17)}  ${`${IDLE_MS / 1000} s idle`.padStart(17)}  ${'peak'.padStart(9)}`);
console.log(`${''.padStart(10)} ${''.padStart(9)}  ${'(RSS / anonymous)'.padStart(17)}  ${'(RSS / anonymous)'.padStart(17)}  ${'(RSS / anonymous)'.padStart(17)}  ${'(RSS / anonymous)'.padStart(17)}`);
for (const licensees of SIZES) {
  const cwd = mkdtempSync(join(tmpdir(), 'nla-bench-serving-memory-'));
  try {
    await seedManyLicensees(join(cwd, 'database'), licensees, API_KEY, 'bench-serving-memory');
    const agent = Bun.spawn([process.execPath, join(root, 'src', 'main.ts'), '--action=run-agent-offline', '--host=127.0.0.1', '--port=0', '--admin.port=off'], {
      cwd,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'ignore',
    });
    try {
      const port = await portOf(agent.stdout);
      const started = residentMb(agent.pid);
      /** Validates `count` licensees, `pick(i)` the i-th, IN_FLIGHT at a time. */
      const validate = async (count: number, pick: (i: number) => number) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: IN_FLIGHT }, async () => {
            while (next < count) {
              const response = await fetch(`http://127.0.0.1:${port}/rest/licensee/${licenseeNumber(pick(next++))}/validate`, {
                method: 'POST',
                headers: { authorization, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
                body: '',
              });
              const text = await response.text();
              if (response.status !== 200) throw new Error(`validate answered ${response.status}: ${text}`);
            }
          }),
        );
      };
      await validate(licensees, (i) => i);
      const once = residentMb(agent.pid);
      await validate(licensees, fixedRandomInts(licensees));
      const again = residentMb(agent.pid);
      // The heap gives memory back some time after the load stops.
      await Bun.sleep(IDLE_MS);
      const idle = residentMb(agent.pid);
      const mb = (value: number) => `${value.toFixed(0)} MB`;
      const both = (figures: { rss: number; anon: number }) => `${mb(figures.rss)} / ${mb(figures.anon)}`.padStart(17);
      const databaseMb = statSync(join(cwd, 'database', 'data.mdb')).size / 2 ** 20;
      console.log(`${licensees.toLocaleString('en-US').padStart(10)} ${mb(databaseMb).padStart(9)}  ${both(started)}  ${both(once)}  ${both(again)}  ${both(idle)}  ${mb(idle.peak).padStart(9)}`);
    } finally {
      agent.kill('SIGTERM');
      await agent.exited;
    }
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}
