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
import { createTrustedClock, newestTimeSeen, recordClockMarks } from '../../src/service/trusted-clock.ts';
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

  test('a clock kept behind does not stop time: from the mark, time goes on as the monotonic clock measures it', () => {
    const system = new ManualClock(1_000_000);
    const clock = createTrustedClock(system, 0);
    expect(clock.nowMs()).toBe(1_000_000);
    system.set(1_000_000 - DAY); // set back a day, and kept there while 30 days pass
    for (let day = 1; day <= 30; day++) {
      system.set(1_000_000 - DAY);
      system.advance(DAY); // a day passes (the monotonic clock moves) ...
      system.set(1_000_000 - DAY); // ... and the wall clock is set back again
      expect(clock.nowMs()).toBe(1_000_000 + day * DAY);
    }
    // The clock set right (it is now 30 days later): it is ahead of nothing, and wins again.
    system.set(1_000_000 + 30 * DAY + 5);
    expect(clock.nowMs()).toBe(1_000_000 + 30 * DAY + 5);
  });

  test('behind the mark, times stay whole milliseconds with a fractional monotonic clock (checkpoints need integers)', () => {
    let mono = 0.4;
    const system = { nowMs: () => 1_000, monotonicMs: () => mono };
    const clock = createTrustedClock(system, 5_000);
    const seen: number[] = [];
    for (const step of [0.7, 0.7, 0.7, 1.6, 2.25]) {
      mono += step;
      seen.push(clock.nowMs());
    }
    for (const t of seen) expect(Number.isInteger(t)).toBe(true);
    // 5.95 ms passed: 5 whole ones so far, the rest carried.
    expect(seen).toEqual([5_000, 5_001, 5_002, 5_003, 5_005]);
  });

  test('the clock mark: recorded when it moved, once more at the stop; a failed write is reported and tried again', async () => {
    const system = new ManualClock(1_000);
    const clock = createTrustedClock(system, 0);
    const written: number[] = [];
    const errors: string[] = [];
    let failNext = false;
    const store = {
      recordClockMark: async (atMs: number) => {
        if (failNext) {
          failNext = false;
          throw new Error('disk full');
        }
        written.push(atMs);
      },
    };
    // Waits for the timer (not a timing assertion: up to 2 s on a busy machine).
    const until = async (done: () => boolean) => {
      for (let waited = 0; !done() && waited < 2_000; waited += 5) await Bun.sleep(5);
    };
    const marks = recordClockMarks(store, clock, { intervalMs: 5, warn: (message) => errors.push(message) });
    clock.nowMs();
    await until(() => written.length > 0);
    await Bun.sleep(30);
    expect(written).toEqual([1_000]); // once, however many intervals passed
    failNext = true;
    system.advance(500);
    clock.nowMs();
    await until(() => written.length > 1);
    expect(errors).toEqual(["cannot record the clock's high-water mark: disk full"]);
    expect(written).toEqual([1_000, 1_500]); // tried again at the next interval
    system.advance(100);
    clock.nowMs();
    await marks.stop();
    expect(written).toEqual([1_000, 1_500, 1_600]);
  });

  test('the newest time seen is the latest of journal, import and clock mark', () => {
    const seen = (journalMs: number | undefined, importedAt: string | undefined, mark: number) =>
      newestTimeSeen({
        journalHead: () => ({ seq: journalMs === undefined ? 0 : 1 }),
        journal: () => (journalMs === undefined ? [] : [{ atMs: journalMs }]),
        meta: () => (importedAt === undefined ? {} : { lastImport: { importedAt } }),
        clockMark: () => mark,
      });
    expect(seen(undefined, undefined, 0)).toBe(0);
    expect(seen(5_000, '1970-01-01T00:00:01.000Z', 3_000)).toBe(5_000);
    expect(seen(5_000, '1970-01-01T00:00:09.000Z', 3_000)).toBe(9_000);
    expect(seen(5_000, '1970-01-01T00:00:01.000Z', 7_000)).toBe(7_000);
  });

  test('starts at the newest time the database has seen', () => {
    const clock = createTrustedClock(new ManualClock(100), 5_000);
    expect(clock.nowMs()).toBe(5_000);
  });
});

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

/** A working directory with a Try & Buy and a one-seat Floating module imported, and a faketime offset file at +0d. */
async function fakeTimeSite(): Promise<{ cwd: string; offsetFile: string; start(): ReturnType<typeof startAgentChild> }> {
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
  const start = () =>
    startAgentChild(cwd, ['--admin.port=off'], {
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: offsetFile,
      FAKETIME_NO_CACHE: '1',
      FAKETIME_DONT_RESET: '1',
      // A wall clock set to another time leaves CLOCK_MONOTONIC alone (the trusted clock measures
      // time passing with it); libfaketime would move it by the same offset.
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    });
  return { cwd, offsetFile, start };
}

/** validate on `port`; gives a getter of module properties. */
async function validateOn(port: number, body: string): Promise<(module: string, name: string) => string | undefined> {
  const res = await fetch(`http://127.0.0.1:${port}/rest/licensee/L/validate`, {
    method: 'POST',
    headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body,
  });
  expect(res.status).toBe(200);
  const json = (await res.json()) as { items: { item: { property: { name: string; value: string }[] }[] } };
  return (module, name) => json.items.item.find((i) => i.property.some((p) => p.value === module))?.property.find((p) => p.name === name)?.value;
}

async function setOffset(offsetFile: string, offset: string): Promise<void> {
  writeFileSync(offsetFile, offset);
  await Bun.sleep(50);
}

test('real process under libfaketime: set back, forward, back again', async () => {
  const { offsetFile, start: startAgent } = await fakeTimeSite();
  const agent = await startAgent();
  try {
    const validate = (body: string) => validateOn(agent.port, body);
    const start = await validate('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s1');
    expect(start('M-TRY', 'valid')).toBe('true');
    const trialEnd = start('M-TRY', 'evaluationExpires')!;
    expect(start('M-FLOAT', 'valid')).toBe('true');

    // Set back 30 days: nothing gets younger; the trial end stays, the seat stays taken.
    await setOffset(offsetFile, '-30d');
    const back = await validate('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s2');
    expect(back('M-TRY', 'evaluationExpires')).toBe(trialEnd);
    expect(back('M-FLOAT', 'valid')).toBe('false');

    // Forward 20 days: the 14-day trial is over and the 1-hour seat expired, as real time would do.
    await setOffset(offsetFile, '+20d');
    const forward = await validate('productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=s2');
    expect(forward('M-TRY', 'valid')).toBe('false');
    expect(forward('M-FLOAT', 'valid')).toBe('true');

    // Back again to "now": the trial does not come back.
    await setOffset(offsetFile, '+0d');
    const again = await validate('dryRun=true');
    expect(again('M-TRY', 'valid')).toBe('false');
  } finally {
    await agent.stop();
  }
  expect(agent.stderr()).toContain('system clock is');
}, 60_000);

test('real process under libfaketime: a restart with the clock set back does not bring an expired trial back', async () => {
  const { cwd, offsetFile, start } = await fakeTimeSite();
  const first = await start();
  let trialEnd: string | undefined;
  try {
    // The trial starts (a journal entry now), then 20 days pass with read-only validates only.
    trialEnd = (await validateOn(first.port, ''))('M-TRY', 'evaluationExpires');
    await setOffset(offsetFile, '+20d');
    expect((await validateOn(first.port, 'dryRun=true'))('M-TRY', 'valid')).toBe('false');
  } finally {
    expect(await first.stop()).toBe(0);
  }
  // The clock is set back to 1 day after the start, and the agent restarted.
  writeFileSync(offsetFile, '+1d');
  const second = await start();
  try {
    const after = await validateOn(second.port, 'dryRun=true');
    expect(after('M-TRY', 'valid')).toBe('false');
    expect(after('M-TRY', 'evaluationExpires')).toBe(trialEnd);
  } finally {
    await second.stop();
  }
  expect(second.stderr()).toContain('system clock is');
  // status (the real clock, 20 days behind the agent's) says so too.
  const main = join(import.meta.dir, '..', '..', 'src', 'main.ts');
  const status = Bun.spawnSync([process.execPath, main, '--action=status'], { cwd, stdout: 'pipe', stderr: 'pipe' });
  expect(status.stdout.toString()).toMatch(/^clock drift: +-\d+ d.* WARNING: the system clock is behind a time the agent has answered at$/m);
}, 60_000);
