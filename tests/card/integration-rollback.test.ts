// Goal: the card's anti-rollback and anti-clone guarantees end to end:
// a backup of database/ taken while the agent kept working, restored after
// later writes, is refused at start (exit 6, why and how to recover) while
// the newest copy still runs; a copy of database/ used alternately with the
// same card makes the stale copy fail; a card used elsewhere while the
// agent runs stops the agent (exit 6); a clock set back behind the sealed
// high-water mark is refused at start, a small step back is tolerated
// without lowering the mark.
// Method: runCli in-process (import-assets, backup, run-agent-offline with
// real listeners, injected clocks) over a private pcscd + vpcd with a
// virtual OpenPGP card (tests/card/pcsc-testbed.ts).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { cpSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { decodeCheckpointPayload } from '../../src/card/checkpoint.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { ManualClock } from '../../src/platform/clock.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { openKvEnvironment } from '../../src/store/lmdb.ts';
import { tempDir } from '../helpers.ts';
import { createVirtualCardState, VirtualOpenPgpCard } from '../support/virtual-openpgp-card.ts';
import { cli, eventually, startAgent, startAgentExpectingFailure, validate, writeExport, type RunOptions } from './agent-harness.ts';
import { startPcscTestbed, type PcscTestbed } from './pcsc-testbed.ts';

/** Every card command takes ~45 ms over vpcd, a start several of them. */
const CARD_TEST_TIMEOUT_MS = 60_000;

let bed: PcscTestbed;
const savedSocket = process.env['PCSCLITE_CSOCK_NAME'];
const SERIAL = '5EA1ED01';
let card: VirtualOpenPgpCard;

beforeAll(async () => {
  bed = await startPcscTestbed();
  process.env['PCSCLITE_CSOCK_NAME'] = bed.socketPath;
  card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL }));
  await bed.insert(card);
}, 30_000);

afterAll(async () => {
  if (savedSocket === undefined) delete process.env['PCSCLITE_CSOCK_NAME'];
  else process.env['PCSCLITE_CSOCK_NAME'] = savedSocket;
  if (card?.inserted) await bed.remove(card);
  await bed?.stop();
}, 30_000);

/** Strict sealing without the rate limit: every write gets its own checkpoint at once. */
const FAST = ['--card.seal-interval-ms=0'];

async function importBound(options: RunOptions = {}): Promise<string> {
  const cwd = tempDir('nla-card-');
  await writeExport(cwd, 'in', SERIAL);
  const result = await cli(['--action=import-assets', '--input=in'], cwd, options);
  expect(result.stderr).not.toContain('error');
  expect(result.code).toBe(EXIT.ok);
  return cwd;
}

function storedCheckpoint(cwd: string) {
  const store = openAssetStore(join(cwd, 'database'), { readOnly: true });
  try {
    return decodeCheckpointPayload(store.cardCheckpoint()!.payload);
  } finally {
    void store.close();
  }
}

describe('rollback', () => {
  test('a backup taken while the agent kept working, restored after later writes: refused at start; the newest copy runs on', async () => {
    const cwd = await importBound();
    const agent = await startAgent(cwd, FAST);
    expect((await validate(agent, 1)).remaining).toBe(999_999);

    // A consistent copy of the running agent's database (what a backup or VM snapshot holds).
    const backup = await cli(['--action=backup', '--output=snapshot'], cwd);
    expect(backup.code).toBe(EXIT.ok);

    // The agent keeps working: two more bookings, each sealed by the card.
    expect((await validate(agent, 1)).remaining).toBe(999_998);
    expect((await validate(agent, 1)).remaining).toBe(999_997);
    expect((await agent.stop()).code).toBe(EXIT.ok);
    const newest = storedCheckpoint(cwd);
    expect(card.state.signatureCounter).toBe(newest.cardCounter);

    // Restore the backup: the two bookings are gone from it, but not from the card's counter.
    renameSync(join(cwd, 'database'), join(cwd, 'database.newest'));
    cpSync(join(cwd, 'snapshot', 'database'), join(cwd, 'database'), { recursive: true });
    const restored = storedCheckpoint(cwd);
    expect(restored.cardCounter).toBeLessThan(newest.cardCounter);
    const counterBefore = card.state.signatureCounter;

    const refused = await startAgentExpectingFailure(cwd, FAST);
    expect(refused.code).toBe(EXIT.card);
    expect(refused.stderr).toContain('rollback detected');
    expect(refused.stderr).toContain(`card counter ${newest.cardCounter}, database checkpoint ${restored.cardCounter}`);
    expect(refused.stderr).toContain('restored from a backup or snapshot');
    expect(refused.stderr).toContain('put back the newest copy');
    expect(refused.stderr).toContain('fresh export');
    // The refusal signs nothing: the newest copy is still the newest.
    expect(card.state.signatureCounter).toBe(counterBefore);

    // A re-import into the rolled-back database is refused too (it would keep its rolled-back state).
    await writeExport(cwd, 'again', SERIAL, 'export-again');
    const reimport = await cli(['--action=import-assets', '--input=again'], cwd);
    expect(reimport.code).toBe(EXIT.card);
    expect(reimport.stderr).toContain('rollback detected');

    // Recovery as the message says: put back the newest copy.
    rmSync(join(cwd, 'database'), { recursive: true });
    renameSync(join(cwd, 'database.newest'), join(cwd, 'database'));
    const recovered = await startAgent(cwd, FAST);
    expect((await validate(recovered, 0)).remaining).toBe(999_997);
    expect((await recovered.stop()).code).toBe(EXIT.ok);
  }, CARD_TEST_TIMEOUT_MS);

  test('a copy of database/ used alternately with the same card: the stale copy is refused, the other runs on', async () => {
    const cwd = await importBound();
    const clone = tempDir('nla-card-clone-');
    cpSync(join(cwd, 'database'), join(clone, 'database'), { recursive: true });

    // The original runs and books; the copy is now behind the card.
    const original = await startAgent(cwd, FAST);
    expect((await validate(original, 5)).remaining).toBe(999_995);
    expect((await original.stop()).code).toBe(EXIT.ok);

    const stale = await startAgentExpectingFailure(clone, FAST);
    expect(stale.code).toBe(EXIT.card);
    expect(stale.stderr).toContain('rollback detected');
    expect(stale.stderr).toContain('a copy (clone) of this agent used the card');

    // The original is unaffected, and the copy stays refused after it ran again.
    const again = await startAgent(cwd, FAST);
    expect((await validate(again, 0)).remaining).toBe(999_995);
    expect((await again.stop()).code).toBe(EXIT.ok);
    expect((await startAgentExpectingFailure(clone, FAST)).code).toBe(EXIT.card);
  }, CARD_TEST_TIMEOUT_MS);

  test('a runtime record edited while the agent was stopped (a booking undone): refused at start, before the card is asked', async () => {
    const cwd = await importBound();
    const agent = await startAgent(cwd, FAST);
    expect((await validate(agent, 3)).remaining).toBe(999_997);
    expect((await agent.stop()).code).toBe(EXIT.ok);
    // The journal and the card's seal stay as they are; only the counters served are changed.
    const env = openKvEnvironment(join(cwd, 'database'));
    try {
      const runtime = env.open<{ licenseeNumber: string; state: { usedQuantity: Record<string, number> } }>('runtime');
      const [record] = [...runtime.getRange({})];
      expect(record).toBeDefined();
      const edited = { ...record!.value, state: { ...record!.value.state, usedQuantity: {} } };
      env.commitSync(() => runtime.putSync(record!.key, edited));
    } finally {
      await env.close();
    }
    const counterBefore = card.state.signatureCounter;
    const refused = await startAgentExpectingFailure(cwd, FAST);
    expect(refused.code).toBe(EXIT.card);
    expect(refused.stderr).toContain("the database's runtime state does not match its journal");
    expect(refused.stderr).toContain('differs from the replayed journal');
    // Nothing was sealed over the edit.
    expect(card.state.signatureCounter).toBe(counterBefore);
  }, CARD_TEST_TIMEOUT_MS);

  test('the card used elsewhere while the agent runs (pulled, signed by another program, put back): the agent stops with exit 6', async () => {
    const cwd = await importBound();
    const agent = await startAgent(cwd, FAST);
    expect((await validate(agent, 1)).status).toBe(200);
    await bed.remove(card);
    // Another agent (or gpg) signs with the card while it is out.
    card.state.signatureCounter += 1;
    await bed.insert(card);
    // The agent's next checkpoint (here: its retry after a failed probe or write) sees the counter moved.
    await validate(agent, 1);
    let code: number | undefined;
    void agent.exited.then((c) => (code = c));
    await eventually('the agent to stop', async () => {
      if (code === undefined) await validate(agent, 1).catch(() => undefined);
      return code !== undefined;
    });
    expect(code).toBe(EXIT.card);
    // Seen before signing (counter read) or, after a reconnect, right after it (counter one too high).
    expect(agent.stderr()).toMatch(/error: smart card: card .*(another copy of this agent or another program used the card|another program signed in between)/);
    // And it stays refused: the database is behind the card now.
    const restart = await startAgentExpectingFailure(cwd, FAST);
    expect(restart.code).toBe(EXIT.card);
    expect(restart.stderr).toContain('rollback detected');
  }, CARD_TEST_TIMEOUT_MS);
});

describe('clock', () => {
  const T = Date.parse('2026-11-20T12:00:00.000Z');

  test('a clock set back behind the sealed high-water mark is refused at start; a step back within the tolerance is served without lowering the mark', async () => {
    const clock = new ManualClock(T);
    const cwd = await importBound({ clock });
    const agent = await startAgent(cwd, FAST, { clock });
    clock.set(T + 3_600_000);
    expect((await validate(agent, 1)).status).toBe(200);
    expect((await agent.stop()).code).toBe(EXIT.ok);
    expect(storedCheckpoint(cwd).clockHighWaterMs).toBe(T + 3_600_000);

    const counterBefore = card.state.signatureCounter;
    const setBack = new ManualClock(T - 86_400_000);
    const refused = await startAgentExpectingFailure(cwd, FAST, { clock: setBack });
    expect(refused.code).toBe(EXIT.card);
    expect(refused.stderr).toContain('the clock was set back');
    expect(refused.stderr).toContain('2026-11-19T12:00:00.000Z');
    expect(refused.stderr).toContain('2026-11-20T13:00:00.000Z');
    expect(refused.stderr).toContain('Set the system clock to the correct time');
    expect(card.state.signatureCounter).toBe(counterBefore);

    // Two minutes back (NTP step): accepted; the sealed high-water mark does not go back.
    const slightlyBack = new ManualClock(T + 3_600_000 - 120_000);
    const tolerated = await startAgent(cwd, FAST, { clock: slightlyBack });
    expect((await validate(tolerated, 1)).status).toBe(200);
    expect((await tolerated.stop()).code).toBe(EXIT.ok);
    const sealed = storedCheckpoint(cwd);
    expect(sealed.clockHighWaterMs).toBe(T + 3_600_000);
    // The write was journaled at the high-water mark, not at the system's earlier time.
    const store = openAssetStore(join(cwd, 'database'), { readOnly: true });
    const last = [...store.journal(store.journalHead().seq)][0]!;
    await store.close();
    expect(last.atMs).toBe(T + 3_600_000);
  }, CARD_TEST_TIMEOUT_MS);
});
