// Goal: a command line means what it says or is refused (exit 2): a boolean option takes no
// value or exactly true/false — `--allow-anonymous=no` must never turn authentication off
// (citty alone reads any value as true); an empty value is refused (`--port=` would listen on a
// random port, `--host=` on every interface); numbers are decimal digits only (`0x1F90`, ` 80`,
// `1e3` refused). Method: parseCliOptions and the value parsers directly, runCli for the exit code.
import { describe, expect, test } from 'bun:test';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { envInteger, parsePort, parseTtlMs } from '../../src/cli/option-values.ts';
import { parseCliOptions, runCli } from '../../src/cli/run.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { parseAdminPort } from '../../src/server/ops/ops.ts';
import { captureIo, tempDir } from '../helpers.ts';

const usageError = (argv: string[]) => {
  try {
    parseCliOptions(argv);
  } catch (error) {
    return { code: (error as { exitCode?: number }).exitCode, message: (error as Error).message };
  }
  return undefined;
};

describe('command-line options', () => {
  test('a boolean option: no value, =true or =false; any other value is refused, in every spelling', () => {
    expect(parseCliOptions(['--action=status', '--allow-anonymous']).allowAnonymous).toBe(true);
    expect(parseCliOptions(['--action=status', '--allow-anonymous=true']).allowAnonymous).toBe(true);
    expect(parseCliOptions(['--action=status', '--allow-anonymous=false']).allowAnonymous).toBe(false);
    expect(parseCliOptions(['--action=status']).allowAnonymous).toBe(false);
    for (const arg of ['--allow-anonymous=no', '--allow-anonymous=0', '--allow-anonymous=off', '--allowAnonymous=no', '--force=no', '-f=0', '--without-card=off', '--log.json=yes', '--log-json=1', '--verbose=']) {
      expect(usageError(['--action=status', arg])).toMatchObject({ code: EXIT.usage, message: expect.stringContaining('takes no value') });
    }
  });

  test('--allow-anonymous=no is a usage error before anything starts', async () => {
    const io = captureIo();
    expect(await runCli(['--action=run-agent-offline', '--allow-anonymous=no'], io, { cwd: tempDir(), log: silentLogger() })).toBe(EXIT.usage);
    expect(io.err).toContain('--allow-anonymous takes no value');
  });

  test('an empty value is refused; passwords may be empty (checked where used)', () => {
    for (const arg of ['--port=', '--host=', '--output=', '--licensees=', '--ttl=', '--admin.host=']) {
      expect(usageError(['--action=status', arg])).toMatchObject({ code: EXIT.usage, message: expect.stringContaining('needs a value') });
    }
    expect(parseCliOptions(['--action=status', '--nlic.password=']).password).toBe('');
  });

  test('numbers are decimal digits only', () => {
    expect(parsePort('8080')).toBe(8080);
    expect(parsePort('0')).toBe(0);
    for (const text of ['0x1F90', ' 8080', '8080 ', '1e3', '80.0', '-1', '65536', '']) expect(() => parsePort(text)).toThrow('--port must be');
    expect(parseTtlMs('600')).toBe(600_000);
    for (const text of ['0x10', '1e3', ' 5']) expect(() => parseTtlMs(text)).toThrow('--ttl must be');
    expect(envInteger({ X: '12' }, 'X', 1, 0)).toBe(12);
    expect(() => envInteger({ X: '0x10' }, 'X', 1, 0)).toThrow('must be a whole number');
    expect(parseAdminPort('9090')).toBe(9090);
    expect(parseAdminPort('off')).toBe('off');
    for (const text of ['0x1F90', ' 9090', '', '65536', '1e3']) expect(parseAdminPort(text)).toBeUndefined();
  });
});
