/**
 * Helpers for the smart-card integration tests: a small card-bound export,
 * runCli with captured output (PIN in the CLI's environment, an injectable
 * clock), the offline agent started in-process (port read from its stdout,
 * stopped through its abort signal) and validate calls against it.
 */
import { expect } from 'bun:test';
import { join } from 'node:path';
import { runCli } from '../../src/cli/run.ts';
import type { Entity } from '../../src/core/entities.ts';
import type { Clock } from '../../src/platform/clock.ts';
import { createLogger } from '../../src/platform/log.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { entity, header } from '../importer/helpers.ts';

export const PIN = '123456';
export const LICENSEE = 'L1';

/** One Pay-per-Use licensee: `usedQuantity0=1` writes (books 1), `usedQuantity0=0` only reads. */
export function payPerUseExport(): Entity[] {
  return [
    entity('Product', 'P', { name: 'Product' }),
    entity('ProductModule', 'M-PPU', { productNumber: 'P', licensingModel: 'PayPerUse' }),
    entity('LicenseTemplate', 'T-PPU', { productModuleNumber: 'M-PPU', licenseType: 'QUANTITY', quantity: '1000000' }),
    entity('Licensee', LICENSEE, { productNumber: 'P' }),
    entity('License', 'LP1', { licenseeNumber: LICENSEE, licenseTemplateNumber: 'T-PPU', quantity: '1000000' }),
  ];
}

/** Writes the export into `<cwd>/<name>`; `cardSerial` undefined = exported --without-card. */
export async function writeExport(cwd: string, name: string, cardSerial: string | undefined, exportId = `export-${name}`): Promise<string> {
  const directory = join(cwd, name);
  await writeTransferFiles(header([LICENSEE], { exportId, ...(cardSerial === undefined ? {} : { cardSerial }) }), payPerUseExport(), { directory });
  return name;
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  clock?: Clock;
}

const defaultEnv = () => ({ NLA_CARD_PIN: PIN });

function captured(env: Record<string, string | undefined>) {
  const out = { stdout: '', stderr: '' };
  const io = {
    stdout: (t: string) => void (out.stdout += t),
    stderr: (t: string) => void (out.stderr += t),
    isTTY: false,
    env,
  };
  const log = createLogger({ stream: { write: (chunk: string) => ((out.stderr += chunk), true) } as unknown as NodeJS.WritableStream });
  return { out, io, log };
}

/** runCli in `cwd` with the PIN in its environment (unless `env` says otherwise). */
export async function cli(argv: string[], cwd: string, options: RunOptions = {}): Promise<CliRun> {
  const { out, io, log } = captured(options.env ?? defaultEnv());
  const code = await runCli(argv, io, { cwd, log, ...(options.clock ? { clock: options.clock } : {}) });
  return { code, ...out };
}

export interface RunningAgent {
  port: number;
  adminPort: number;
  stderr(): string;
  /** Resolves with the exit code once the agent stopped on its own (fatal card error). */
  exited: Promise<number>;
  /** SIGTERM equivalent; resolves with the exit code. */
  stop(): Promise<CliRun>;
}

/**
 * Starts run-agent-offline in-process (anonymous validate, admin listener on
 * a free port). Resolves once it listens, or rejects with its output if it
 * exited first (use `startAgentExpectingFailure` for that).
 */
export async function startAgent(cwd: string, args: string[] = [], options: RunOptions = {}): Promise<RunningAgent> {
  const attempt = await launch(cwd, args, options);
  if ('failed' in attempt) {
    throw new Error(`the agent did not start (exit ${attempt.failed.code}):\n${attempt.failed.stderr}`);
  }
  return attempt.agent;
}

/** Starts run-agent-offline and expects it to exit before listening; returns its output. */
export async function startAgentExpectingFailure(cwd: string, args: string[] = [], options: RunOptions = {}): Promise<CliRun> {
  const attempt = await launch(cwd, args, options);
  if ('failed' in attempt) return attempt.failed;
  await attempt.agent.stop();
  throw new Error('the agent started, but a refusal was expected');
}

async function launch(cwd: string, args: string[], options: RunOptions): Promise<{ agent: RunningAgent } | { failed: CliRun }> {
  const { out, io, log } = captured(options.env ?? defaultEnv());
  const controller = new AbortController();
  const argv = ['--action=run-agent-offline', '--port=0', '--host=127.0.0.1', '--admin.port=0', '--allow-anonymous', ...args];
  const exited = runCli(argv, io, { cwd, log, signal: controller.signal, ...(options.clock ? { clock: options.clock } : {}) });
  let done: number | undefined;
  void exited.then((code) => (done = code));
  for (;;) {
    const main = /^listening on [^:]+:(\d+)$/m.exec(out.stdout);
    const admin = /^admin listening on [^:]+:(\d+)$/m.exec(out.stdout);
    if (main && admin) {
      return {
        agent: {
          port: Number(main[1]),
          adminPort: Number(admin[1]),
          stderr: () => out.stderr,
          exited,
          async stop() {
            controller.abort();
            const code = await exited;
            return { code, ...out };
          },
        },
      };
    }
    if (done !== undefined) return { failed: { code: done, ...out } };
    await Bun.sleep(5);
  }
}

export interface ValidateAnswer {
  status: number;
  body: string;
  /** The PPU module's remainingQuantity in a 200 answer. */
  remaining?: number;
}

export async function validate(agent: { port: number }, usedQuantity: number): Promise<ValidateAnswer> {
  const res = await fetch(`http://127.0.0.1:${agent.port}/rest/licensee/${LICENSEE}/validate`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: `productModuleNumber0=M-PPU&usedQuantity0=${usedQuantity}`,
  });
  const body = await res.text();
  const answer: ValidateAnswer = { status: res.status, body };
  if (res.status === 200) {
    const parsed = JSON.parse(body) as { items: { item: { property: { name: string; value: string }[] }[] } };
    const value = parsed.items.item[0]?.property.find((p) => p.name === 'remainingQuantity')?.value;
    if (value !== undefined) answer.remaining = Number(value);
  }
  return answer;
}

export async function ready(agent: RunningAgent): Promise<{ status: number; card: { ok: boolean; detail: string } }> {
  const res = await fetch(`http://127.0.0.1:${agent.adminPort}/ready`);
  const body = (await res.json()) as { checks: { name: string; ok: boolean; detail: string }[] };
  const card = body.checks.find((c) => c.name === 'card');
  expect(card).toBeDefined();
  return { status: res.status, card: card! };
}

export async function metricsText(agent: RunningAgent): Promise<string> {
  return (await fetch(`http://127.0.0.1:${agent.adminPort}/metrics`)).text();
}

/** Polls `probe` until it returns true (the agent's own timers drive recovery). */
export async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await probe())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}
