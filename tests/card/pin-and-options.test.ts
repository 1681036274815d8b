// Goal: the PIN source and the card options say clearly what is wrong
// before any card is touched: NLA_CARD_PIN or --card.pin-file (first line,
// preferred), a missing or malformed PIN is `pin_missing` naming both
// sources and never echoing the PIN, a PIN file others can read is warned
// about; bad --card.seal / --card.seal-interval-ms values are usage errors.
// Method: readCardPin on temp files; runCli in-process for the options.
import { describe, expect, test } from 'bun:test';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readCardPin } from '../../src/card/pin.ts';
import { CardError } from '../../src/card/types.ts';
import { requestTimeoutMsFor } from '../../src/cli/actions/run-agent-offline.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { HTTP_LIMITS } from '../../src/server/limits.ts';
import { tempDir } from '../helpers.ts';
import { cli } from './agent-harness.ts';

function pinError(action: () => unknown): CardError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(CardError);
    expect((error as CardError).code).toBe('pin_missing');
    return error as CardError;
  }
  throw new Error('expected pin_missing');
}

describe('PIN source', () => {
  test('NLA_CARD_PIN, or the first line of --card.pin-file, which wins', () => {
    expect(readCardPin({ env: { NLA_CARD_PIN: '246810' } }, 'x')).toEqual({ pin: '246810', source: 'NLA_CARD_PIN' });
    const dir = tempDir();
    const file = join(dir, 'pin');
    writeFileSync(file, '13579246\r\nsecond line\n');
    chmodSync(file, 0o600);
    const fromFile = readCardPin({ pinFile: file, env: { NLA_CARD_PIN: '246810' } }, 'x');
    expect(fromFile.pin).toBe('13579246');
    expect(fromFile.warning).toBeUndefined();
  });

  test('missing: names both sources; malformed: refused without echoing it; unreadable file: named', () => {
    const missing = pinError(() => readCardPin({ env: {} }, 'starting the agent'));
    expect(missing.message).toStartWith('starting the agent: ');
    expect(missing.message).toContain('NLA_CARD_PIN');
    expect(missing.message).toContain('--card.pin-file');
    const short = pinError(() => readCardPin({ env: { NLA_CARD_PIN: '1234' } }, 'x'));
    expect(short.message).toContain('6 to 127 characters');
    expect(short.message).not.toContain('1234');
    const dir = tempDir();
    const absent = pinError(() => readCardPin({ pinFile: join(dir, 'nope'), env: { NLA_CARD_PIN: '246810' } }, 'x'));
    expect(absent.message).toContain('cannot read the PIN file');
    expect(absent.message).toContain('ENOENT');
  });

  test('a PIN file readable by others is warned about', () => {
    const file = join(tempDir(), 'pin');
    writeFileSync(file, '123456\n');
    chmodSync(file, 0o644);
    expect(readCardPin({ pinFile: file, env: {} }, 'x').warning).toContain('chmod 600');
  });
});

describe('card options', () => {
  test('bad --card.seal and --card.seal-interval-ms values are usage errors (exit 2)', async () => {
    const cwd = tempDir();
    const mode = await cli(['--action=run-agent-offline', '--card.seal=fast'], cwd);
    expect(mode.code).toBe(EXIT.usage);
    expect(mode.stderr).toContain('--card.seal must be strict or relaxed, got "fast"');
    for (const value of ['-1', '1.5', 'soon', '86400001']) {
      const interval = await cli(['--action=run-agent-offline', `--card.seal-interval-ms=${value}`], cwd);
      expect(interval.code).toBe(EXIT.usage);
      expect(interval.stderr).toContain('--card.seal-interval-ms must be whole milliseconds');
    }
  });
});

test('strict sealing adds its interval to the request time limit; relaxed sealing and no card do not', () => {
  expect(requestTimeoutMsFor(undefined)).toBe(HTTP_LIMITS.requestTimeoutMs);
  expect(requestTimeoutMsFor({ mode: 'relaxed', intervalMs: 60_000 })).toBe(HTTP_LIMITS.requestTimeoutMs);
  expect(requestTimeoutMsFor({ mode: 'strict', intervalMs: 60_000 })).toBe(HTTP_LIMITS.requestTimeoutMs + 60_000);
});
