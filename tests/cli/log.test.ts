// Goal: logs serve both a person (readable lines) and a log shipper (--log.json:
// one JSON object per line), always on stderr. Method: the logger adapter with
// a captured stream, and runCli with --log.json on a failing import.
import { expect, test } from 'bun:test';
import { join } from 'node:path';
import { runCli } from '../../src/cli/run.ts';
import { createLogger, logEvery } from '../../src/platform/log.ts';
import { captureIo, tempDir } from '../helpers.ts';

function stream() {
  const lines: string[] = [];
  return { lines, stream: { write: (chunk: string) => (lines.push(chunk), true) } as unknown as NodeJS.WritableStream };
}

test('json logger: one parseable object per line with time, level and message', () => {
  const { lines, stream: s } = stream();
  const log = createLogger({ json: true, stream: s });
  log.info('imported', 3, 'files');
  log.warn('clock set back');
  const parsed = lines.map((l) => JSON.parse(l) as { time: string; level: string; message: string });
  expect(parsed.map((p) => [p.level, p.message])).toEqual([
    ['info', 'imported 3 files'],
    ['warn', 'clock set back'],
  ]);
  expect(Number.isNaN(Date.parse(parsed[0]!.time))).toBe(false);
});

test('human logger: readable text, debug only with --verbose', () => {
  const quiet = stream();
  createLogger({ stream: quiet.stream }).debug('details');
  expect(quiet.lines.join('')).toBe('');
  const verbose = stream();
  const log = createLogger({ verbose: true, stream: verbose.stream });
  log.debug('details');
  log.info('serving');
  expect(verbose.lines.join('')).toContain('details');
  expect(verbose.lines.join('')).toContain('serving');
});

test('--log.json through the CLI: every stderr line is JSON, the summary stays on stdout', async () => {
  const cwd = tempDir();
  const io = captureIo();
  const demo = join(import.meta.dir, '..', '..', 'demo');
  const code = await runCli(['--action=import-assets', `--input=${demo}`, '--log.json'], io, { cwd });
  expect(code).toBe(0);
  expect(io.out).toContain('imported export');
  const lines = io.err.trim().split('\n');
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) expect((JSON.parse(line) as { level: string }).level).toBeString();
});

test('--log.json: a failing action\'s last line (the error) is JSON too', async () => {
  const io = captureIo();
  const code = await runCli(['--action=status', '--log.json'], io, { cwd: tempDir() });
  expect(code).toBe(5);
  const lines = io.err.trim().split('\n');
  const last = JSON.parse(lines[lines.length - 1]!) as { level: string; message: string };
  expect(last.level).toBe('error');
  expect(last.message).toStartWith('error: ');
});

test('a line that repeats is let through once per interval, with the count of those held back', () => {
  const every = logEvery(60_000);
  expect(every('disk_full', 0)).toEqual({ log: true, suppressed: 0 });
  expect(every('disk_full', 1_000)).toEqual({ log: false, suppressed: 0 });
  expect(every('disk_full', 59_999)).toEqual({ log: false, suppressed: 0 });
  // Another kind is its own.
  expect(every('io', 2_000)).toEqual({ log: true, suppressed: 0 });
  expect(every('disk_full', 60_000)).toEqual({ log: true, suppressed: 2 });
  expect(every('disk_full', 60_001)).toEqual({ log: false, suppressed: 0 });
});
