/**
 * Validate throughput and latency, measured with wrk (Debian package `wrk`)
 * against 127.0.0.1, 64 keep-alive connections, one wrk thread (the machine
 * has 2 cores: one for wrk, one for the server).
 *
 * Prints requests/s and p50/p99 latency for: a bare Bun.serve constant
 * response (the ceiling, measured in the same run), Subscription validate
 * (JSON and XML), Floating check-out/check-in pairs and Pay-per-Use
 * usedQuantity=1 (durable writes), each also as a ratio to the ceiling; and,
 * for information, Subscription JSON with answer reuse off.
 * Targets: read-only validate ≥ 0.5 × ceiling; durable writes ≥ 0.25 × ceiling
 * with p99 < 10 ms. Usage: bun scripts/bench-validate.ts [--seconds=10]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_AUTH, CONNECTIONS, luaScript, postScript as writePostScript, requireWrk, runWrk, startPortPrinter, type Figures } from './bench/wrk.ts';

const seconds = Number(process.argv.find((a) => a.startsWith('--seconds='))?.split('=')[1] ?? '10');
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

const rows: { name: string; figures: Figures }[] = [];
// The ceiling is measured before and after the agent (it varies by ±15% from run to run on a
// small machine); ratios use the higher of the two, so noise can only make them smaller.
async function measureCeiling(name: string): Promise<Figures> {
  const ceiling = await startServer('ceiling-server.ts');
  try {
    const figures = wrk(`http://127.0.0.1:${ceiling.port}/`);
    rows.push({ name, figures });
    return figures;
  } finally {
    ceiling.proc.kill('SIGTERM');
    await ceiling.proc.exited;
  }
}
const ceilingBefore = await measureCeiling('ceiling: bare Bun.serve constant (before)');
const agent = await startServer('agent-server.ts', [join(work, 'agent')]);
try {
  const url = `http://127.0.0.1:${agent.port}/rest/licensee/L/validate`;
  rows.push({ name: 'Subscription validate, JSON', figures: wrk(url, postScript('sub-json', 'application/json', 'productModuleNumber0=M-SUB')) });
  rows.push({ name: 'Subscription validate, XML', figures: wrk(url, postScript('sub-xml', 'application/xml', 'productModuleNumber0=M-SUB')) });
  rows.push({ name: 'Floating checkOut/checkIn pairs (durable)', figures: wrk(url, floatingScript) });
  rows.push({ name: 'Pay-per-Use usedQuantity=1 (durable)', figures: wrk(url, postScript('ppu', 'application/json', 'productModuleNumber0=M-PPU&usedQuantity0=1')) });
} finally {
  agent.proc.kill('SIGTERM');
  await agent.proc.exited;
}
// The same read with answer reuse off: what a request costs when the agent decides it in full
// (first request of a client, or after any change). Reported, no target.
const computing = await startServer('agent-server.ts', [join(work, 'agent-computing'), '--compute-every-answer']);
try {
  const url = `http://127.0.0.1:${computing.port}/rest/licensee/L/validate`;
  rows.push({ name: 'Subscription JSON, every answer computed', figures: wrk(url, postScript('sub-json-computed', 'application/json', 'productModuleNumber0=M-SUB')) });
} finally {
  computing.proc.kill('SIGTERM');
  await computing.proc.exited;
  rmSync(work, { recursive: true, force: true });
}

const ceilingAfter = await measureCeiling('ceiling: bare Bun.serve constant (after)');
const ceilingRps = Math.max(ceilingBefore.rps, ceilingAfter.rps);
console.log(`\nvalidate benchmark: wrk -t1 -c${connections} -d${seconds}s, 127.0.0.1, keep-alive\n`);
console.log(`${'scenario'.padEnd(44)} ${'req/s'.padStart(10)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'ratio'.padStart(6)} ${'errors'.padStart(7)}`);
for (const { name, figures } of rows) {
  console.log(
    `${name.padEnd(44)} ${figures.rps.toFixed(0).padStart(10)} ${figures.p50Ms.toFixed(2).padStart(8)} ${figures.p99Ms.toFixed(2).padStart(8)} ${(figures.rps / ceilingRps).toFixed(2).padStart(6)} ${String(figures.errors).padStart(7)}`,
  );
}
console.log(`\nratios against the higher ceiling (${ceilingRps.toFixed(0)} req/s)`);
console.log('targets: read-only ratio >= 0.50; durable writes ratio >= 0.25 with p99 < 10 ms');
