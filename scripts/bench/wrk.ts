/**
 * What the HTTP benchmarks share: starting a helper process that prints
 * `PORT n`, writing wrk Lua scripts for a validate POST, running wrk
 * (Debian package `wrk`) with one thread and 64 keep-alive connections, and
 * reading its figures. Used by bench-validate.ts and bench-proxy.ts.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CONNECTIONS = 64;
/** The API key scripts/bench/seed.ts seeds. */
export const BENCH_AUTH = `Basic ${Buffer.from('apiKey:bench-key').toString('base64')}`;

export interface Figures {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** Exits with 2 and a hint when wrk is missing. */
export function requireWrk(): void {
  if (Bun.spawnSync(['which', 'wrk']).exitCode !== 0) {
    console.error('wrk is not installed: apt-get install -y wrk');
    process.exit(2);
  }
}

/**
 * Runs `bun <args>` (in `cwd`) and waits for the line it prints with its port:
 * `PORT n` by default, or what `portPattern` matches (its first group is the port).
 */
export async function startPortPrinter(
  args: string[],
  options: { cwd?: string; portPattern?: RegExp } = {},
): Promise<{ port: number; proc: Bun.Subprocess<'ignore', 'pipe', 'inherit'> }> {
  const pattern = options.portPattern ?? /PORT (\d+)/;
  const proc = Bun.spawn([process.execPath, ...args], { stdin: 'ignore', stdout: 'pipe', stderr: 'inherit', ...(options.cwd ? { cwd: options.cwd } : {}) });
  const reader = proc.stdout.getReader();
  let text = '';
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${args[0]} exited before printing its port`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return { port: Number(pattern.exec(text)![1]), proc };
}

export function parseWrk(output: string): Figures {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? NaN);
  const toMs = (v: string, unit: string) => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
  const pct = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(output);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(output)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  // wrk prints "50%", wrk2 "50.000%".
  return {
    rps,
    p50Ms: pct('50(?:\\.0+)?'),
    p99Ms: pct('99(?:\\.0+)?'),
    errors: non2xx + (socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
  };
}

/** wrk -t1 -c64 for `seconds` against `url`, with an optional Lua script. */
export function runWrk(url: string, seconds: number, script?: string): Figures {
  const args = ['wrk', '-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', ...(script ? ['-s', script] : []), url];
  const result = Bun.spawnSync(args, { stdout: 'pipe', stderr: 'pipe' });
  if (result.exitCode !== 0) throw new Error(`wrk failed: ${result.stderr.toString()}`);
  return parseWrk(result.stdout.toString());
}

/** Writes `<dir>/<name>.lua` with `body` (Lua source) and returns its path. */
export function luaScript(dir: string, name: string, body: string): string {
  const path = join(dir, `${name}.lua`);
  writeFileSync(path, body);
  return path;
}

/** A Lua script that POSTs the same validate form with the bench API key. */
export function postScript(dir: string, name: string, accept: string, form: string): string {
  return luaScript(
    dir,
    name,
    `wrk.method = "POST"
wrk.body = "${form}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "${accept}"
wrk.headers["Authorization"] = "${BENCH_AUTH}"
`,
  );
}
