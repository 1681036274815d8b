/**
 * Validate throughput and latency, measured with wrk (Debian package `wrk`)
 * against 127.0.0.1, 64 keep-alive connections, one wrk thread (the machine
 * has 2 cores: one for wrk, one for the server).
 *
 * Prints requests/s and p50/p99 latency for Subscription validate (JSON and
 * XML), Floating check-out/check-in pairs and Pay-per-Use usedQuantity=1
 * (durable writes), each as a ratio to a bare Bun.serve constant response
 * (the ceiling, measured in the same run right before and right after each
 * scenario); and, for information, Subscription JSON with answer and module
 * reuse off (every answer decided in full).
 * The agent is the real run-agent-offline action (bun src/main.ts) over the
 * data set of bench/seed.ts, started as an administrator would start it.
 * Targets: read-only validate ≥ 0.5 × ceiling; durable writes ≥ 0.25 × ceiling
 * with p99 < 10 ms. Every scenario runs in several rounds; a row shows the
 * median round and the worst p99; before the rounds each scenario runs
 * --warmup seconds, printed and not counted. Usage:
 * bun scripts/bench-validate.ts [--seconds=5] [--rounds=3] [--warmup=3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measureCommitIo, measureJournalWrite } from './bench/commit-io.ts';
import { seedBenchDatabase } from './bench/seed.ts';
import { BENCH_AUTH, CONNECTIONS, luaScript, postScript as writePostScript, requireWrk, runWrk, startPortPrinter, type Figures } from './bench/wrk.ts';

const option = (name: string, fallback: string) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const seconds = option('seconds', '5');
const rounds = option('rounds', '3');
/** Each scenario runs this long once before its measured rounds (0: none): see the warm-up below. */
const warmupSeconds = option('warmup', '3');
const connections = CONNECTIONS;
const work = mkdtempSync(join(tmpdir(), 'nla-bench-validate-'));
requireWrk();

const startServer = (script: string, args: string[] = []) => startPortPrinter([join(import.meta.dir, 'bench', script), ...args]);
const wrk = (url: string, script?: string): Figures => runWrk(url, seconds, script);
const postScript = (name: string, accept: string, body: string) => writePostScript(work, name, accept, body);
const auth = BENCH_AUTH;

// Check-outs and check-ins in pairs: a session is checked in once 64 newer requests
// have been sent (so its check-out has been answered), keeping about 64 seats in
// use, as 64 clients that each hold one seat would.
const floatingScript = luaScript(
  work,
  'floating',
  `local counter = 0
local queue = {}
local first, last = 1, 0
local prefix = tostring(math.random(1, 1000000000))
local headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["Accept"] = "application/json", ["Authorization"] = "${auth}"}
request = function()
  local body
  if last - first + 1 > ${connections} then
    local id = queue[first]
    queue[first] = nil
    first = first + 1
    body = "productModuleNumber0=M-FLOAT&sessionId0=" .. id .. "&action0=checkIn"
  else
    counter = counter + 1
    local id = prefix .. "-" .. counter
    last = last + 1
    queue[last] = id
    body = "productModuleNumber0=M-FLOAT&sessionId0=" .. id .. "&action0=checkOut"
  end
  return wrk.format("POST", nil, headers, body)
end
`,
);

// This machine's speed changes from run to run and in phases within a run (the bare ceiling
// measured 121,000 and 157,000 req/s minutes apart). So the ceiling server runs throughout and is
// measured right before and right after every scenario; a scenario's ratio uses the higher of its
// two neighbours, so a slow phase cannot flatter it. And every scenario runs in several rounds
// (all scenarios in turn, `--rounds`): its ratio is the median of its rounds, every round's ratio
// is printed, and its p99 is the worst round's.
interface Run {
  figures: Figures;
  ceilingRps: number;
}
const runsByScenario = new Map<string, Run[]>();
const ceilings: Figures[] = [];
const warmups: { name: string; figures: Figures }[] = [];
// The disk's own figures (a journal record's write, an LMDB commit), measured before any server is started.
const journalWrite = measureJournalWrite(work);
const commitIo = measureCommitIo(work);
const ceiling = await startServer('ceiling-server.ts');
// The scenarios run against the real run-agent-offline action (metrics, trusted clock, signer and
// all), over the benchmark data set; only the "every answer computed" row uses the in-process
// wiring, because the action has no switch for answer reuse.
const agentDir = join(work, 'agent');
await seedBenchDatabase(join(agentDir, 'database')).close();
const agent = await startPortPrinter(
  [join(import.meta.dir, '..', 'src', 'main.ts'), '--action=run-agent-offline', '--without-card', '--host=127.0.0.1', '--port=0', '--admin.port=off'],
  { cwd: agentDir, portPattern: /listening on 127\.0\.0\.1:(\d+)/ },
);
const computing = await startServer('agent-server.ts', [join(work, 'agent-computing'), '--compute-every-answer']);
const measureCeiling = (): number => {
  const figures = wrk(`http://127.0.0.1:${ceiling.port}/`);
  ceilings.push(figures);
  return figures.rps;
};
try {
  const url = `http://127.0.0.1:${agent.port}/rest/licensee/L/validate`;
  // Answer reuse off: what a request costs when the agent decides it in full (first request of a
  // client, or after any change). Reported, no target.
  const computingUrl = `http://127.0.0.1:${computing.port}/rest/licensee/L/validate`;
  const scenarios: { name: string; url: string; script: string }[] = [
    { name: 'Subscription validate, JSON', url, script: postScript('sub-json', 'application/json', 'productModuleNumber0=M-SUB') },
    { name: 'Subscription validate, XML', url, script: postScript('sub-xml', 'application/xml', 'productModuleNumber0=M-SUB') },
    { name: 'Floating checkOut/checkIn pairs (durable)', url, script: floatingScript },
    { name: 'Pay-per-Use usedQuantity=1 (durable)', url, script: postScript('ppu', 'application/json', 'productModuleNumber0=M-PPU&usedQuantity0=1') },
    { name: 'Subscription JSON, every answer computed*', url: computingUrl, script: postScript('sub-json-computed', 'application/json', 'productModuleNumber0=M-SUB') },
  ];
  // Warm-up: the first seconds of a code path under load are slower (JavaScriptCore compiles its
  // hot functions on background threads, which take one of the two cores): a Floating round run
  // first after the start gave 13,200 req/s with p99 18.8 ms, the next seven 14,700-16,300 with
  // p99 10.7-13.5 ms (hand-run, session 12), and the JIT's worker threads used 0.96 s of CPU in a
  // first 5 s round, 0.13 s in the second, none in the third. The rounds measure the agent as it
  // serves after that; the warm-up figures are printed too.
  if (warmupSeconds > 0) {
    for (const scenario of scenarios) warmups.push({ name: scenario.name, figures: runWrk(scenario.url, warmupSeconds, scenario.script) });
  }
  let before = measureCeiling();
  for (let round = 0; round < rounds; round++) {
    for (const scenario of scenarios) {
      const figures = wrk(scenario.url, scenario.script);
      const after = measureCeiling();
      const runs = runsByScenario.get(scenario.name) ?? [];
      runs.push({ figures, ceilingRps: Math.max(before, after) });
      runsByScenario.set(scenario.name, runs);
      before = after;
    }
  }
} finally {
  for (const server of [ceiling, agent, computing]) {
    server.proc.kill('SIGTERM');
    await server.proc.exited;
  }
  rmSync(work, { recursive: true, force: true });
}

const ratioOf = (run: Run) => run.figures.rps / run.ceilingRps;
console.log(`\nvalidate benchmark: wrk -t1 -c${connections} -d${seconds}s, 127.0.0.1, keep-alive, ${rounds} rounds\n`);
console.log(
  `${'scenario'.padEnd(44)} ${'req/s'.padStart(10)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'ceiling'.padStart(9)} ${'ratio'.padStart(6)} ${'errors'.padStart(7)}  ratio by round   p99 ms by round`,
);
for (const [name, runs] of runsByScenario) {
  // The round with the median ratio gives the row's req/s, p50 and ceiling; p99 is the worst round's.
  const median = [...runs].sort((a, b) => ratioOf(a) - ratioOf(b))[Math.floor((runs.length - 1) / 2)]!;
  const worstP99 = Math.max(...runs.map((run) => run.figures.p99Ms));
  const errors = runs.reduce((sum, run) => sum + run.figures.errors, 0);
  console.log(
    `${name.padEnd(44)} ${median.figures.rps.toFixed(0).padStart(10)} ${median.figures.p50Ms.toFixed(2).padStart(8)} ${worstP99.toFixed(2).padStart(8)} ${median.ceilingRps.toFixed(0).padStart(9)} ${ratioOf(median).toFixed(2).padStart(6)} ${String(errors).padStart(7)}  ${runs.map((run) => ratioOf(run).toFixed(2)).join(' ').padEnd(15)}  ${runs.map((run) => run.figures.p99Ms.toFixed(1)).join(' ')}`,
  );
}
// Each target against every round, so that a reader sees how many rounds met it, not only the row.
const verdicts = [...runsByScenario].flatMap(([name, runs]) => {
  const durable = name.includes('(durable)');
  if (name.endsWith('*')) return [];
  const short = name.replace(/ \(durable\)$/, '');
  const rateMet = runs.filter((run) => ratioOf(run) >= (durable ? 0.25 : 0.5)).length;
  const parts = [`${short}: ratio target met in ${rateMet} of ${runs.length} rounds`];
  if (durable) parts.push(`p99 < 10 ms in ${runs.filter((run) => run.figures.p99Ms < 10).length} of ${runs.length}`);
  return [parts.join(', ')];
});
console.log(`\n${verdicts.join('\n')}`);
if (warmups.length > 0) {
  console.log(
    `\nwarm-up, ${warmupSeconds} s per scenario before the rounds, not counted: ` +
      warmups.map(({ name, figures }) => `${name.replace(/ \(durable\)|\*$/, '')} ${figures.rps.toFixed(0)} req/s, p99 ${figures.p99Ms.toFixed(2)} ms`).join('; '),
  );
}
console.log(`\nceiling (bare Bun.serve constant answer) measured ${ceilings.length} times: ${ceilings.map((c) => c.rps.toFixed(0)).join(', ')} req/s`);
// The machine's own latency tail under this load: wrk and the server share the two cores, and
// the bare ceiling's p99 is already several times its p50. Every scenario's p99 carries it too.
const ratiosP99 = ceilings.map((c) => c.p99Ms / c.p50Ms).sort((a, b) => a - b);
console.log(
  `ceiling latency: p50 ${Math.min(...ceilings.map((c) => c.p50Ms)).toFixed(2)}–${Math.max(...ceilings.map((c) => c.p50Ms)).toFixed(2)} ms, ` +
    `p99 ${Math.min(...ceilings.map((c) => c.p99Ms)).toFixed(2)}–${Math.max(...ceilings.map((c) => c.p99Ms)).toFixed(2)} ms, ` +
    `p99 / p50 median ${ratiosP99[Math.floor((ratiosP99.length - 1) / 2)]!.toFixed(1)} (the machine's own tail at 64 connections)`,
);
console.log('each round\'s ratio is against the higher of the two ceilings measured right before and right after it; a row shows the median round (p99: the worst round)');
console.log('the agent is the run-agent-offline action; * in-process wiring (scripts/bench/agent-server.ts) with answer and module reuse off');
const ms = (figures: { medianMs: number; p90Ms: number }) => `${figures.medianMs.toFixed(2)} ms (median of 200, p90 ${figures.p90Ms.toFixed(2)} ms)`;
console.log(
  `disk under the database, measured before any server was started: one journal record (6,000 bytes, O_DSYNC, pre-written file) took ${ms(journalWrite)}; ` +
    `one LMDB commit's I/O (8 pages, fdatasync, O_DSYNC meta write; the checkpoints) ${ms(commitIo)}`,
);
console.log(`a durable write waits for the journal record being written when it arrives, then its own; with ${connections} connections that bounds the durable rate by the disk as well as by the serving thread`);
console.log('targets: read-only ratio >= 0.50; durable writes ratio >= 0.25 with p99 < 10 ms');
