/**
 * `bun scripts/bench-startup.ts [--licensees=100000] [--runs=5]`: start-up
 * figures of the compiled executable (dist/netlicensing-agent; built first
 * when missing):
 *
 *   1. `--version`: process start to exit (median of 20 runs)
 *   2. run-agent-offline on a database of N licensees: process start to the
 *      "listening" line, and to the first answered validate
 *   3. on the same database: the first and a second GET /metrics (the first
 *      scans every license once per import), and `--action=status`
 *
 * The database is seeded directly through the store's importTransaction with
 * generated entities (no transfer file, no other generator). Everything runs
 * on 127.0.0.1; the figures are printed, nothing is asserted.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seedManyLicensees } from './bench/licensees.ts';

const root = join(import.meta.dir, '..');
const binary = join(root, 'dist', 'netlicensing-agent');
const arg = (name: string, fallback: number) => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  return found ? Number(found.slice(name.length + 3)) : fallback;
};
const LICENSEES = arg('licensees', 100_000);
const RUNS = arg('runs', 5);
const API_KEY = 'bench-0000-4000-8000-000000000000';

process.umask(0o077);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
const ms = (value: number) => `${value.toFixed(1)} ms`;

if (!existsSync(binary)) {
  console.log('dist/netlicensing-agent missing: running npm run build first');
  const build = Bun.spawnSync([process.execPath, join(root, 'scripts', 'build.ts')], { cwd: root, stdout: 'inherit', stderr: 'inherit' });
  if (build.exitCode !== 0) process.exit(1);
}

// 1. --version
const versionRuns: number[] = [];
let versionLine = '';
for (let i = 0; i < 20; i++) {
  const started = performance.now();
  const run = Bun.spawnSync([binary, '--version'], { cwd: '/', stdout: 'pipe', stderr: 'pipe' });
  versionRuns.push(performance.now() - started);
  versionLine = run.stdout.toString().trim();
  if (run.exitCode !== 0) throw new Error(`--version failed: ${run.stderr}`);
}

// 2. seed the database
const cwd = mkdtempSync(join(tmpdir(), 'nla-bench-startup-'));
const seedStarted = performance.now();
const entityCount = await seedManyLicensees(join(cwd, 'database'), LICENSEES, API_KEY, 'bench-startup');
const seedMs = performance.now() - seedStarted;

/**
 * Reads a process's output as it comes; `until` resolves with the first match of a pattern in
 * everything read so far (two lines may arrive in one chunk: the text is kept between calls) and
 * rejects after `timeoutMs` even while nothing arrives.
 */
function outputOf(stream: ReadableStream<Uint8Array>) {
  let text = '';
  let ended = false;
  let changed = () => {};
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      changed();
    }
    ended = true;
    changed();
  })();
  return {
    async until(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(text);
        if (match) return match;
        if (ended) throw new Error(`agent exited: ${text}`);
        const left = deadline - performance.now();
        if (left <= 0) throw new Error(`timed out waiting for ${pattern}: ${text}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          changed = () => (clearTimeout(timer), resolve());
        });
      }
    },
  };
}

// Probe: a compiled binary whose bundled msgpackr cannot load its native string
// extractor fails on the first read; it then runs with the pure-JS decoder (said below).
const agentEnv: Record<string, string> = { ...(process.env as Record<string, string>) };
let note = '';
const probe = Bun.spawnSync([binary, '--action=status'], { cwd, stdout: 'pipe', stderr: 'pipe', env: agentEnv });
if (probe.exitCode !== 0 && /extractStrings/.test(probe.stderr.toString())) {
  agentEnv['MSGPACKR_NATIVE_ACCELERATION_DISABLED'] = 'true';
  note = 'NOTE: this binary cannot read the database as built (msgpackr-extract missing in the bundle); measured with MSGPACKR_NATIVE_ACCELERATION_DISABLED=true';
}

const authorization = `Basic ${Buffer.from(`apiKey:${API_KEY}`).toString('base64')}`;
const listenRuns: number[] = [];
const firstValidateRuns: number[] = [];
let metricsFirst = 0;
let metricsSecond = 0;
let metricsBytes = 0;
let validateDuringScan = '';
for (let run = 0; run < RUNS; run++) {
  const started = performance.now();
  const agent = Bun.spawn([binary, '--action=run-agent-offline', '--host=127.0.0.1', '--port=0', '--admin.port=0'], {
    cwd,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'ignore',
    env: agentEnv,
  });
  const output = outputOf(agent.stdout);
  try {
    const listening = await output.until(/^listening on [^\n]+:(\d+)\n/m, 60_000);
    listenRuns.push(performance.now() - started);
    const port = Number(listening[1]);
    const response = await fetch(`http://127.0.0.1:${port}/rest/licensee/L-${String(LICENSEES).padStart(7, '0')}/validate`, {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'productModuleNumber0=M-SUB',
    });
    await response.text();
    if (response.status !== 200) throw new Error(`validate answered ${response.status}`);
    firstValidateRuns.push(performance.now() - started);
    if (run === 0) {
      const admin = await output.until(/^admin listening on [^\n]+:(\d+)\n/m, 10_000);
      const adminUrl = `http://127.0.0.1:${admin[1]}/metrics`;
      // Validate keeps being answered while the first scrape scans every license in pages.
      let scanning = true;
      const during: number[] = [];
      const validating = (async () => {
        while (scanning) {
          const t0 = performance.now();
          const r = await fetch(`http://127.0.0.1:${port}/rest/licensee/L-0000001/validate`, {
            method: 'POST',
            headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
            body: 'productModuleNumber0=M-SUB',
          });
          await r.text();
          during.push(performance.now() - t0);
        }
      })();
      let t = performance.now();
      metricsBytes = (await (await fetch(adminUrl)).text()).length;
      metricsFirst = performance.now() - t;
      scanning = false;
      await validating;
      validateDuringScan = `${during.length} validates answered meanwhile, median ${ms(median(during))}, max ${ms(Math.max(...during))}`;
      t = performance.now();
      await (await fetch(adminUrl)).text();
      metricsSecond = performance.now() - t;
    }
  } finally {
    agent.kill('SIGTERM');
    await agent.exited;
  }
}

const statusStarted = performance.now();
const status = Bun.spawnSync([binary, '--action=status'], { cwd, stdout: 'pipe', stderr: 'pipe', env: agentEnv });
const statusMs = performance.now() - statusStarted;
if (status.exitCode !== 0) throw new Error(`status failed: ${status.stderr}`);
const sizeLine = /^database: .*$/m.exec(status.stdout.toString())?.[0] ?? '';
rmSync(cwd, { recursive: true, force: true });

console.log(`binary: ${versionLine}`);
console.log(`--version, process start to exit:            median ${ms(median(versionRuns))}, min ${ms(Math.min(...versionRuns))} (20 runs)`);
console.log(`seeded ${LICENSEES} licensees (${entityCount} entities) in ${ms(seedMs)}; ${sizeLine}`);
console.log(`run-agent-offline, start to "listening":      median ${ms(median(listenRuns))}, min ${ms(Math.min(...listenRuns))} (${RUNS} runs)`);
console.log(`run-agent-offline, start to first validate:   median ${ms(median(firstValidateRuns))}, min ${ms(Math.min(...firstValidateRuns))} (${RUNS} runs)`);
console.log(`GET /metrics, first after start (full scan):  ${ms(metricsFirst)} (${metricsBytes} bytes); second: ${ms(metricsSecond)}`);
console.log(`  during that scan: ${validateDuringScan}`);
console.log(`--action=status, process start to exit:       ${ms(statusMs)}`);
if (note) console.log(note);
