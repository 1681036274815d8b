/**
 * Goal: `--action=export-assets` on the command line: option checks, exit
 * codes, the cloud's error wording on stderr, the summary on stdout, progress
 * only on a terminal, and the transfer files in --output (refused when they
 * exist, overwritten with --force).
 * Method: runCli(argv, io, {cwd}) in-process with captured stdout/stderr
 * against the stand-in cloud on 127.0.0.1; files in temp directories.
 */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { runCli } from '../../src/cli/run.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { captureIo, tempDir } from '../helpers.ts';
import {
  LICENSING_MODELS,
  PLAN_REFUSAL,
  STANDIN_API_KEY,
  STANDIN_LICENSEES,
  STANDIN_OTHER_LICENSEE,
  STANDIN_VENDOR,
  startStandinCloud,
  type StandinCloud,
} from '../support/standin-cloud.ts';



let cloud: StandinCloud;
let cwd: string;
beforeEach(async () => {
  cloud = await startStandinCloud();
  cwd = tempDir('nla-export-cli-');
});
afterEach(async () => {
  await cloud.stop();
});

const ALL = LICENSING_MODELS.map((model) => STANDIN_LICENSEES[model]).join(',');

function argv(extra: string[] = [], base: { licensees?: string; card?: string[] } = {}): string[] {
  return [
    '--action=export-assets',
    `--core.base.host=${cloud.url}`,
    `--nlic.username=${STANDIN_VENDOR.username}`,
    `--nlic.password=${STANDIN_VENDOR.password}`,
    `--licensees=${base.licensees ?? ALL}`,
    ...(base.card ?? ['--serial-number=CARD-0042']),
    ...extra,
  ];
}

async function exportCli(args: string[], io = captureIo()) {
  const code = await runCli(args, io, { cwd, clock: new ManualClock(Date.UTC(2026, 0, 15, 12, 0, 0)) });
  return { code, io };
}

const transferFiles = (dir: string) => readdirSync(dir).filter((name) => /^\d+_netlicensing-assets\.xml$/.test(name)).sort();

describe('option checks (before any request)', () => {
  test.each([
    ['no credentials', ['--action=export-assets', '--licensees=L-QUOTA', '--without-card'], /needs NetLicensing credentials/],
    [
      'password without user',
      ['--action=export-assets', '--nlic.password=x', '--licensees=L-QUOTA', '--without-card'],
      /needs NetLicensing credentials/,
    ],
    [
      'API key and username',
      ['--action=export-assets', '--nlic.apikey=k', '--nlic.username=u', '--nlic.password=p', '--licensees=L', '--without-card'],
      /either --nlic.apikey or --nlic.username/,
    ],
    ['no licensees', ['--action=export-assets', '--nlic.apikey=k', '--without-card'], /needs --licensees/],
    ['empty licensee list', ['--action=export-assets', '--nlic.apikey=k', '--licensees=, ,', '--without-card'], /lists no licensee/],
    ['neither card option', ['--action=export-assets', '--nlic.apikey=k', '--licensees=L'], /--serial-number=<serial> \(or --without-card\)/],
    [
      'both card options',
      ['--action=export-assets', '--nlic.apikey=k', '--licensees=L', '--serial-number=1', '--without-card'],
      /either --serial-number or --without-card/,
    ],
    [
      'host with a path',
      ['--action=export-assets', '--core.base.host=http://h:8080/core/v2/rest', '--nlic.apikey=k', '--licensees=L', '--without-card'],
      /--core.base.host: .*only protocol:\/\/host/,
    ],
    [
      'output is a file',
      ['--action=export-assets', '--nlic.apikey=k', '--licensees=L', '--without-card', '--output=a-file'],
      /--output .*a-file is not a directory/,
    ],
  ])('%s → usage error', async (_label, args, message) => {
    writeFileSync(join(cwd, 'a-file'), '');
    const { code, io } = await exportCli(args);
    expect(code).toBe(EXIT.usage);
    expect(io.err).toMatch(message);
    expect(io.out).toBe('');
    expect(cloud.requests).toHaveLength(0);
  });

  test('a bad timeout override in the environment is a usage error', async () => {
    const { code, io } = await exportCli(argv(), captureIo({ env: { NLA_EXPORT_TIMEOUT_MS: 'soon' } }));
    expect(code).toBe(EXIT.usage);
    expect(io.err).toContain('NLA_EXPORT_TIMEOUT_MS');
  });

  test('existing transfer files: conflict before contacting the cloud', async () => {
    writeFileSync(join(cwd, '1_netlicensing-assets.xml'), 'old');
    const { code, io } = await exportCli(argv());
    expect(code).toBe(EXIT.conflict);
    expect(io.err).toContain('already holds transfer files (1_netlicensing-assets.xml)');
    expect(io.err).toContain('--force');
    expect(cloud.requests).toHaveLength(0);
    expect(readFileSync(join(cwd, '1_netlicensing-assets.xml'), 'utf8')).toBe('old');
  });
});

describe('errors of the cloud', () => {
  test('wrong credentials: HTTP 401 and the cloud text, exit code remote', async () => {
    const args = argv().map((a) => (a.startsWith('--nlic.password=') ? '--nlic.password=wrong' : a));
    const { code, io } = await exportCli(args);
    expect(code).toBe(EXIT.remote);
    expect(io.err).toContain('HTTP 401 Unauthorized: Bad credentials');
    expect(transferFiles(cwd)).toEqual([]);
  });

  test('plan refusal: the exact text with HTTP 402', async () => {
    cloud.addFault({ fault: { kind: 'status', status: 402, id: 'PaymentRequiredException', message: PLAN_REFUSAL } });
    const { code, io } = await exportCli(argv());
    expect(code).toBe(EXIT.remote);
    expect(io.err).toContain(`HTTP 402 Payment Required: ${PLAN_REFUSAL}\n`);
  });

  test('unknown licensee: the cloud text, exit code remote, no files', async () => {
    const { code, io } = await exportCli(argv([], { licensees: 'L-QUOTA,NO-SUCH' }));
    expect(code).toBe(EXIT.remote);
    expect(io.err).toContain("HTTP 400 Bad Request: Licensee with the number 'NO-SUCH' does not exist.");
    expect(io.err).toContain('use --force');
    expect(transferFiles(cwd)).toEqual([]);
  });

  test('licensee of another product: exit code conflict', async () => {
    const { code, io } = await exportCli(argv([], { licensees: `L-QUOTA,${STANDIN_OTHER_LICENSEE}` }));
    expect(code).toBe(EXIT.conflict);
    expect(io.err).toContain(`Licensee "${STANDIN_OTHER_LICENSEE}" belongs to product "P-OTHER"`);
  });

  test('unreachable host: message names host and cause, exit code remote', async () => {
    const url = cloud.url;
    await cloud.stop();
    const args = argv().map((a) => (a.startsWith('--core.base.host=') ? `--core.base.host=${url}` : a));
    const { code, io } = await exportCli(args, captureIo({ env: { NLA_EXPORT_RETRIES: '0' } }));
    expect(code).toBe(EXIT.remote);
    expect(io.err).toContain(`cannot reach ${url}`);
    expect(io.err).toContain('connection refused');
    cloud = await startStandinCloud(); // afterEach stops it again
  });

  test('a timeout set through the environment applies', async () => {
    cloud.addFault({ fault: { kind: 'slow', delayMs: 5_000 } });
    const { code, io } = await exportCli(argv(), captureIo({ env: { NLA_EXPORT_TIMEOUT_MS: '100', NLA_EXPORT_RETRIES: '0' } }));
    expect(code).toBe(EXIT.remote);
    expect(io.err).toContain('within 0.1 s');
  });
});

describe('successful export', () => {
  test('writes the transfer files and prints a summary on stdout; quiet stderr when not a terminal', async () => {
    const { code, io } = await exportCli(argv());
    expect(io.err).toBe('');
    expect(code).toBe(EXIT.ok);
    const files = transferFiles(cwd);
    expect(files.length).toBeGreaterThan(0);
    expect(io.out).toContain(`exported 9 licensee(s) of product P-AGENT-DEMO from ${cloud.url}, bound to smart card CARD-0042`);
    for (const file of files) expect(io.out).toContain(join(cwd, file));
    expect(io.out).toContain('entities: 45');
    expect(io.out).toContain('  License: 11\n');
    expect(io.out).toContain('  Token: 3\n');
    expect(cloud.requests.every((r) => r.method === 'GET')).toBe(true);
  });

  test('progress is drawn on stderr on a terminal', async () => {
    const { code, io } = await exportCli(argv(), captureIo({ isTTY: true }));
    expect(code).toBe(EXIT.ok);
    expect(io.err).toContain('licensees 9/9');
    expect(io.err).toContain('entities 45');
  });

  test('--output, --without-card and an API key', async () => {
    // A directory that does not exist yet is created.
    const output = join(tempDir('nla-export-out-'), 'new', 'dir');
    const args = [
      '--action=export-assets',
      `--core.base.host=${cloud.url}`,
      `--nlic.apikey=${STANDIN_API_KEY}`,
      '--licensees=L-SUBSCRIPTION',
      '--without-card',
      `--output=${output}`,
    ];
    const { code, io } = await exportCli(args);
    expect(code).toBe(EXIT.ok);
    expect(io.out).toContain('without card');
    expect(transferFiles(output).length).toBeGreaterThan(0);
    expect(transferFiles(cwd)).toEqual([]);
  });

  test('--force overwrites existing transfer files and skips unknown licensees with a warning', async () => {
    writeFileSync(join(cwd, '1_netlicensing-assets.xml'), 'old');
    const { code, io } = await exportCli(argv(['--force'], { licensees: 'L-QUOTA,NO-SUCH' }));
    expect(code).toBe(EXIT.ok);
    expect(io.err).toContain('--force: skipping: Licensee "NO-SUCH" not found');
    expect(io.out).toContain('skipped (--force): NO-SUCH');
    expect(readFileSync(join(cwd, '1_netlicensing-assets.xml'), 'utf8')).not.toBe('old');
  });

  test('--force with no exportable licensee left still fails, without suggesting --force', async () => {
    const { code, io } = await exportCli(argv(['--force'], { licensees: 'NO-SUCH' }));
    expect(code).toBe(EXIT.remote);
    expect(io.err).toContain('none of the requested licensees can be exported');
    expect(io.err).not.toContain('use --force');
    expect(transferFiles(cwd)).toEqual([]);
  });

  test('--verbose logs every request', async () => {
    const { code, io } = await exportCli(argv(['--verbose'], { licensees: 'L-QUOTA' }));
    expect(code).toBe(EXIT.ok);
    expect(io.err).toContain(`GET ${cloud.url}/core/v2/rest/licensee/L-QUOTA`);
    expect(existsSync(join(cwd, '1_netlicensing-assets.xml'))).toBe(true);
  });
});
