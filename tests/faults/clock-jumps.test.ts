// Goal: clock jumps behave as documented (README, "Clock"): time as the
// licensing models see it never runs backwards — a clock set back cannot
// restart an expired trial or revive a floating seat — while a jump forward
// takes effect like real time passing. Method: (1) the trusted clock with an
// injected clock; (2) once with the real process: the agent runs under
// libfaketime (Debian package faketime; CI installs it), whose offset the test
// changes through a timestamp file while the agent serves.
import { describe, expect, test } from 'bun:test';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../src/platform/clock.ts';
import { createTrustedClock } from '../../src/service/trusted-clock.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import { startAgentChild } from '../ops/support.ts';
import { API_KEY, apiKeyAuth, entity } from '../support/seed-store.ts';

const DAY = 86_400_000;

describe('trusted clock (injected)', () => {
  test('follows the system clock forward; holds the high-water mark when it goes back; reports once per episode', () => {
    const system = new ManualClock(1_000_000);
    const rollbacks: number[] = [];
    const clock = createTrustedClock(system, 500_000, { toleranceMs: 5_000, onRollback: (e) => rollbacks.push(e.highWaterMs - e.systemMs) });
    expect(clock.nowMs()).toBe(1_000_000);
    system.advance(DAY);
    expect(clock.nowMs()).toBe(1_000_000 + DAY);
    system.set(1_000_000); // set back a day
    expect(clock.nowMs()).toBe(1_000_000 + DAY);
    expect(clock.nowMs()).toBe(1_000_000 + DAY);
    expect(rollbacks).toEqual([DAY]);
    expect(clock.driftMs()).toBe(DAY);
    system.set(1_000_000 + DAY + 10); // caught up
    expect(clock.nowMs()).toBe(1_000_000 + DAY + 10);
    system.advance(-2_000); // NTP-sized slew: held, not reported
    expect(clock.nowMs()).toBe(1_000_000 + DAY + 10);
    expect(rollbacks).toEqual([DAY]);
  });

  test('starts at the newest time the database has seen', () => {
    const clock = createTrustedClock(new ManualClock(100), 5_000);
    expect(clock.nowMs()).toBe(5_000);
  });
});

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

test('real process under libfaketime: set back, forward, back again', async () => {
  if (!existsSync(LIBFAKETIME)) throw new Error(`${LIBFAKETIME} missing: apt-get install -y faketime (.ci/run does)`);
  const cwd = tempDir('nla-faketime-');
  await writeTransferFiles(
    { exportId: crypto.randomUUID(), createdAt: new Date().toISOString(), sourceHost: 'test', licensees: ['L'] },
    [
      entity('Product', 'P'),
      entity('ProductModule', 'M-TRY', { productNumber: 'P', licensingModel: 'TryAndBuy' }),
      entity('ProductModule', 'M-FLOAT', { productNumber: 'P', licensingModel: 'Floating', maxCheckoutValidity: '3600' }),
      entity('LicenseTemplate', 'T-TRIAL', { productModuleNumber: 'M-TRY', licenseType: 'TIMEVOLUME', timeVolume: '14', timeVolumePeriod: 'DAY', automatic: 'true' }),
      entity('LicenseTemplate', 'T-FLOAT', { productModuleNumber: 'M-FLOAT', licenseType: 'FLOATING', maxSessions: '1' }),
      entity('Licensee', 'L', { productNumber: 'P' }),
      entity('License', 'LF', { licenseeNumber: 'L', licenseTemplateNumber: 'T-FLOAT', maxSessions: '1' }),
      entity('Token', API_KEY, { tokenType: 'APIKEY' }),
    ],
    { directory: join(cwd, 'in') },
  );
  const main = join(import.meta.dir, '..', '..', 'src', 'main.ts');
  const imported = Bun.spawnSync([process.execPath, main, '--action=import-assets', '--input=in', '--without-card'], { cwd, stderr: 'pipe' });
  expect(imported.exitCode, imported.stderr.toString()).toBe(0);

  const offsetFile = join(cwd, 'faketime');
  writeFileSync(offsetFile, '+0d');
  const agent = await startAgentChild(cwd, ['--admin.port=off'], {
    LD_PRELOAD: LIBFAKETIME,
    FAKETIME_TIMESTAMP_FILE: offsetFile,
    FAKETIME_NO_CACHE: '1',
    FAKETIME_DONT_RESET: '1',
  });
  try {
    const validate = async (body: string) => {
      const res = await fetch(`http://127.0.0.1:${agent.port}/rest/licensee/L/validate`, {
        method: 'POST',
        headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body,
      });
      expect(res.status).toBe(200);
      const json = (await res.json()) as { items: { item: { property: { name: string; value: string }[] }[] } };
      const get = (module: string, name: string) =>
        json.items.item.find((i) => i.property.some((p) => p.value === module))?.property.find((p) => p.name === name)?.value;
      return get;
    };
    const setOffset = async (offset: string) => {
      writeFileSync(offsetFile, offset);
      await Bun.sleep(50);
    };

    const start = await validate('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s1');
    expect(start('M-TRY', 'valid')).toBe('true');
    const trialEnd = start('M-TRY', 'evaluationExpires')!;
    expect(start('M-FLOAT', 'valid')).toBe('true');

    // Set back 30 days: nothing gets younger; the trial end stays, the seat stays taken.
    await setOffset('-30d');
    const back = await validate('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s2');
    expect(back('M-TRY', 'evaluationExpires')).toBe(trialEnd);
    expect(back('M-FLOAT', 'valid')).toBe('false');

    // Forward 20 days: the 14-day trial is over and the 1-hour seat expired, as real time would do.
    await setOffset('+20d');
    const forward = await validate('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s2');
    expect(forward('M-TRY', 'valid')).toBe('false');
    expect(forward('M-FLOAT', 'valid')).toBe('true');

    // Back again to "now": the trial does not come back.
    await setOffset('+0d');
    const again = await validate('dryRun=true');
    expect(again('M-TRY', 'valid')).toBe('false');
  } finally {
    await agent.stop();
  }
  expect(agent.stderr()).toContain('system clock is');
}, 60_000);
