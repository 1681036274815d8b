// Goal: every acknowledged counter change survives a crash, and nothing
// unacknowledged is half-applied. Method: 50 rounds of: start the real agent
// (`src/main.ts --action=run-agent-offline`) in a child process over the same
// database, drive concurrent requests that check out a Floating seat and book
// one Pay-per-Use credit together (one licensee, session ids unique per
// request: two events in one journal entry) and Pay-per-Use usedQuantity=1
// requests (each on a licensee of its own, so that every booking is told
// apart), SIGKILL the child
// at a random moment (seeded: AGENT_SEED), then reopen the database and check,
// after every round, request by request: every acknowledged change is there,
// nothing is there twice or unasked, no request is there in part (the
// licensee's credits used = its sessions stored), and the journal verifies.
// A process kill is not a power loss: the OS page cache survives it. Power
// loss is covered by the O_DSYNC write before acknowledging (see README).
import { expect, test } from 'bun:test';
import { join } from 'node:path';
import type { Entity } from '../../src/core/entities.ts';
import { verifyDatabase } from '../../src/service/verify-database.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { seededRandom } from '../helpers.ts';
import { startAgentChild } from '../ops/support.ts';
import { apiKeyAuth, entity, seedStore } from '../support/seed-store.ts';

const ROUNDS = 50;
const WORKERS = 12;
/** Licensees for Pay-per-Use bookings, one booking each (a run sends ~3,200; past them, workers check out). */
const PPU_LICENSEES = 5_000;
const seed = Number(process.env['AGENT_SEED'] ?? Math.floor(Math.random() * 2 ** 31));

function entities(): Entity[] {
  const out = [
    entity('Product', 'P'),
    entity('ProductModule', 'M-FLOAT', { productNumber: 'P', licensingModel: 'Floating', maxCheckoutValidity: '86400' }),
    entity('LicenseTemplate', 'T-FLOAT', { productModuleNumber: 'M-FLOAT', licenseType: 'FLOATING', maxSessions: '1000000' }),
    entity('ProductModule', 'M-PPU', { productNumber: 'P', licensingModel: 'PayPerUse' }),
    entity('LicenseTemplate', 'T-PPU', { productModuleNumber: 'M-PPU', licenseType: 'QUANTITY', quantity: '10' }),
    entity('Licensee', 'L', { productNumber: 'P' }),
    entity('License', 'LF', { licenseeNumber: 'L', licenseTemplateNumber: 'T-FLOAT', maxSessions: '1000000' }),
    entity('License', 'LPL', { licenseeNumber: 'L', licenseTemplateNumber: 'T-PPU', quantity: '1000000' }),
  ];
  for (let n = 0; n < PPU_LICENSEES; n++) {
    out.push(entity('Licensee', `U${n}`, { productNumber: 'P' }), entity('License', `LP${n}`, { licenseeNumber: `U${n}`, licenseTemplateNumber: 'T-PPU', quantity: '10' }));
  }
  return out;
}

test(`kill -9 of the real agent under concurrent Floating and Pay-per-Use load, ${ROUNDS} times: nothing acknowledged is lost`, async () => {
  const { store, cwd } = seedStore(entities());
  await store.close();
  const rand = seededRandom(seed);
  /** Pay-per-Use bookings by licensee number: whether acknowledged. */
  const bookings = new Map<number, boolean>();
  const sessions = new Map<string, boolean>();
  let nextBooking = 0;
  let journalEntries = 0;

  for (let round = 0; round < ROUNDS; round++) {
    const agent = await startAgentChild(cwd, ['--admin.port=off', '--without-card']);
    let killed = false;
    const worker = async (w: number) => {
      for (let i = 0; !killed; i++) {
        const booking = (i + w) % 2 === 0 && nextBooking < PPU_LICENSEES ? nextBooking++ : undefined;
        const sessionId = `r${round}-w${w}-${i}`;
        const licensee = booking === undefined ? 'L' : `U${booking}`;
        const body =
          booking === undefined
            ? `productModuleNumber0=M-FLOAT&action0=checkOut&sessionId0=${sessionId}&productModuleNumber1=M-PPU&usedQuantity1=1`
            : 'productModuleNumber0=M-PPU&usedQuantity0=1';
        if (booking === undefined) sessions.set(sessionId, false);
        else bookings.set(booking, false);
        try {
          const res = await fetch(`http://127.0.0.1:${agent.port}/rest/licensee/${licensee}/validate`, {
            method: 'POST',
            headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
            body,
          });
          const text = await res.text();
          if (res.status !== 200 || !text.includes('"valid"')) continue;
          if (booking === undefined) sessions.set(sessionId, true);
          else bookings.set(booking, true);
        } catch {
          // Connection reset by the kill: not acknowledged.
        }
      }
    };
    const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
    await Bun.sleep(20 + Math.floor(rand() * 150));
    agent.proc.kill('SIGKILL');
    killed = true;
    await agent.proc.exited;
    await Promise.all(workers);

    // After every kill, request by request (what the next start recovers is what is checked here).
    const reopened = openAssetStore(join(cwd, 'database'));
    try {
      const problems: string[] = [];
      let bookingsStored = 0;
      for (const [n, acknowledged] of bookings) {
        const used = reopened.getRuntime(`U${n}`).usedQuantity[`LP${n}`] ?? 0;
        bookingsStored += used;
        if (acknowledged && used !== 1) problems.push(`booking on U${n} acknowledged, stored ${used} times`);
        if (used > 1) problems.push(`booking on U${n} sent once, stored ${used} times`);
      }
      const stored = reopened.getRuntime('L').sessions['M-FLOAT'] ?? new Map();
      for (const [id, acknowledged] of sessions) if (acknowledged && !stored.has(id)) problems.push(`session ${id} acknowledged, not stored`);
      for (const id of stored.keys()) if (!sessions.has(id)) problems.push(`session ${id} stored, never sent`);
      // Each of these requests made two changes in one entry: both are there, or neither.
      const usedWithSessions = reopened.getRuntime('L').usedQuantity['LPL'] ?? 0;
      if (usedWithSessions !== stored.size) problems.push(`${stored.size} sessions stored, but ${usedWithSessions} credits booked with them`);
      const report = verifyDatabase(reopened);
      problems.push(...report.problems);
      // One journal entry per stored request, and none for anything else.
      if (report.entries !== bookingsStored + stored.size) problems.push(`${report.entries} journal entries for ${bookingsStored + stored.size} stored requests`);
      journalEntries = report.entries;
      expect(`round ${round} (seed ${seed}): ${problems.slice(0, 5).join('; ')}`).toBe(`round ${round} (seed ${seed}): `);
    } finally {
      await reopened.close();
    }
  }

  const count = <K>(map: Map<K, boolean>) => [...map.values()].filter(Boolean).length;
  console.log(
    `crash loop (seed ${seed}): ${ROUNDS} kills of run-agent-offline, checked after each; Pay-per-Use ${count(bookings)} acknowledged of ${bookings.size} sent, ` +
      `Floating check-out + credit ${count(sessions)} of ${sessions.size}; lost 0, none in part (each booking on a licensee of its own); journal entries ${journalEntries}, verified`,
  );
  expect(count(bookings)).toBeGreaterThan(0);
  expect(count(sessions)).toBeGreaterThan(0);
}, 600_000);
