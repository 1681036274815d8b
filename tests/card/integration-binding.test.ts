// Goal: the card binding end to end: a card-bound export binds the database
// to the inserted card at import; import and run refuse another card (naming
// both serials), refuse to go on without the card (also with --without-card
// on a bound database), run a database imported without card without one;
// the PIN comes from NLA_CARD_PIN or --card.pin-file, and a missing, wrong
// or blocked PIN stops with a clear message and exit 6.
// Method: runCli in-process (import-assets, run-agent-offline with a real
// HTTP listener) over a private pcscd + vpcd with virtual OpenPGP cards
// (tests/card/pcsc-testbed.ts); no mocks between the agent and pcscd.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeCheckpointPayload, verifyCheckpointSignature } from '../../src/card/checkpoint.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { tempDir } from '../helpers.ts';
import { createVirtualCardState, VirtualOpenPgpCard } from '../support/virtual-openpgp-card.ts';
import { cli, PIN, ready, startAgent, startAgentExpectingFailure, validate, writeExport } from './agent-harness.ts';
import { startPcscTestbed, type PcscTestbed } from './pcsc-testbed.ts';

/** Every card command takes ~45 ms over vpcd, a start several of them. */
const CARD_TEST_TIMEOUT_MS = 60_000;

let bed: PcscTestbed;
const savedSocket = process.env['PCSCLITE_CSOCK_NAME'];

beforeAll(async () => {
  bed = await startPcscTestbed();
  // The agent opens the card like an installed agent does: through PCSCLITE_CSOCK_NAME.
  process.env['PCSCLITE_CSOCK_NAME'] = bed.socketPath;
}, 30_000);

afterAll(async () => {
  if (savedSocket === undefined) delete process.env['PCSCLITE_CSOCK_NAME'];
  else process.env['PCSCLITE_CSOCK_NAME'] = savedSocket;
  await bed?.stop();
}, 30_000);

const SERIAL = '1A2B3C4D';
const OTHER = '0BADCAFE';

/** Inserts `card` for the duration of `body`. */
async function withCards<T>(cards: VirtualOpenPgpCard[], body: () => Promise<T>): Promise<T> {
  for (const [slot, card] of cards.entries()) await bed.insert(card, slot as 0 | 1);
  try {
    return await body();
  } finally {
    for (const [slot, card] of cards.entries()) if (card.inserted) await bed.remove(card, slot as 0 | 1);
  }
}

/** A working directory with a database bound to `card` (imported with it). */
async function boundDatabase(card: VirtualOpenPgpCard): Promise<string> {
  const cwd = tempDir('nla-card-');
  await writeExport(cwd, 'in', card.serial);
  await withCards([card], async () => {
    const imported = await cli(['--action=import-assets', '--input=in'], cwd);
    expect(imported.stderr).not.toContain('error');
    expect(imported.code).toBe(EXIT.ok);
  });
  return cwd;
}

describe('binding a database to the card (import-assets)', () => {
  test('a card-bound export binds the database to the inserted card with a first checkpoint', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL, signatureCounter: 7 }));
    const cwd = tempDir('nla-card-');
    await writeExport(cwd, 'in', SERIAL);
    const result = await withCards([card], () => cli(['--action=import-assets', '--input=in'], cwd));
    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout).toContain('card: bound to smart card 1A2B3C4D');
    expect(result.stderr).not.toContain(PIN);

    const store = openAssetStore(join(cwd, 'database'));
    try {
      const meta = store.meta();
      expect(meta.withoutCard).toBe(false);
      expect(meta.cardSerial).toBe(SERIAL);
      expect(meta.cardBinding).toMatchObject({ serial: SERIAL, manufacturer: 'FFFE', applicationId: `D276000124010304FFFE${SERIAL}0000` });
      const checkpoint = store.cardCheckpoint();
      expect(checkpoint).toBeDefined();
      expect(verifyCheckpointSignature(checkpoint!, meta.cardBinding!.publicKey)).toBe(true);
      const fields = decodeCheckpointPayload(checkpoint!.payload);
      expect(fields).toMatchObject({ databaseId: meta.databaseId, seq: 1, journalSeq: 0, cardSerial: SERIAL, cardCounter: 8 });
      // The card's counter is exactly the one the checkpoint names.
      expect(card.state.signatureCounter).toBe(8);
    } finally {
      await store.close();
    }
  }, CARD_TEST_TIMEOUT_MS);

  test('the inserted card is not the one the export names: refused, naming both serials; nothing created', async () => {
    const other = new VirtualOpenPgpCard(createVirtualCardState({ serial: OTHER }));
    const cwd = tempDir('nla-card-');
    await writeExport(cwd, 'in', SERIAL);
    const result = await withCards([other], () => cli(['--action=import-assets', '--input=in'], cwd));
    expect(result.code).toBe(EXIT.card);
    expect(result.stderr).toContain(SERIAL);
    expect(result.stderr).toContain(OTHER);
    expect(result.stderr).toContain('--without-card');
    expect(existsSync(join(cwd, 'database'))).toBe(false);
    expect(other.state.signatureCounter).toBe(0);
  }, CARD_TEST_TIMEOUT_MS);

  test('no card inserted: refused with exit 6 and a message saying so', async () => {
    const cwd = tempDir('nla-card-');
    await writeExport(cwd, 'in', SERIAL);
    const result = await cli(['--action=import-assets', '--input=in'], cwd);
    expect(result.code).toBe(EXIT.card);
    expect(result.stderr).toContain('no smart card is inserted');
    expect(existsSync(join(cwd, 'database'))).toBe(false);
  }, CARD_TEST_TIMEOUT_MS);

  test('a re-import into a bound database verifies it with the card and keeps the binding', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL }));
    const cwd = await boundDatabase(card);
    await writeExport(cwd, 'again', SERIAL, 'export-2');
    const again = await withCards([card], () => cli(['--action=import-assets', '--input=again'], cwd));
    expect(again.code).toBe(EXIT.ok);
    expect(again.stderr).toContain('database matches the card');
    // No new checkpoint: the journal did not change.
    expect(card.state.signatureCounter).toBe(1);

    // An export bound to another card is refused for this database.
    await writeExport(cwd, 'foreign', OTHER, 'export-3');
    const foreign = await withCards([card], () => cli(['--action=import-assets', '--input=foreign'], cwd));
    expect(foreign.code).toBe(EXIT.card);
    expect(foreign.stderr).toContain(`bound to smart card ${SERIAL}, but export export-3 is bound to card ${OTHER}`);

    // Without card: a conflict unless forced; forced, it needs the card (rollback check) and unbinds.
    await writeExport(cwd, 'plain', undefined, 'export-4');
    const refused = await cli(['--action=import-assets', '--input=plain'], cwd);
    expect(refused.code).toBe(EXIT.conflict);
    expect(refused.stderr).toContain(`bound to smart card ${SERIAL}`);
    const noCard = await cli(['--action=import-assets', '--input=plain', '--force'], cwd);
    expect(noCard.code).toBe(EXIT.card);
    expect(noCard.stderr).toContain('no smart card is inserted');
    const unbound = await withCards([card], () => cli(['--action=import-assets', '--input=plain', '--force'], cwd));
    expect(unbound.code).toBe(EXIT.ok);
    const store = openAssetStore(join(cwd, 'database'));
    expect(store.meta().withoutCard).toBe(true);
    expect(store.meta().cardBinding).toBeUndefined();
    expect(store.cardCheckpoint()).toBeUndefined();
    await store.close();
  }, CARD_TEST_TIMEOUT_MS);
});

describe('running with the card (run-agent-offline)', () => {
  test('the bound card: starts, seals a startup checkpoint, serves and reports the card on /ready', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL }));
    const cwd = await boundDatabase(card);
    await withCards([card], async () => {
      const agent = await startAgent(cwd);
      // Import sealed checkpoint 1 (counter 1), startup sealed checkpoint 2 (counter 2).
      expect(card.state.signatureCounter).toBe(2);
      const write = await validate(agent, 1);
      expect(write.status).toBe(200);
      expect(write.remaining).toBe(999_999);
      expect(card.state.signatureCounter).toBe(3);
      const readiness = await ready(agent);
      expect(readiness.status).toBe(200);
      expect(readiness.card).toMatchObject({ ok: true });
      expect(readiness.card.detail).toContain(`card ${SERIAL}: present, signature counter 3`);
      const stopped = await agent.stop();
      expect(stopped.code).toBe(EXIT.ok);
      expect(stopped.stderr).not.toContain(PIN);
    });
  }, CARD_TEST_TIMEOUT_MS);

  test('a re-import while the agent serves the bound database: refused, naming the serving agent, not scdaemon', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL }));
    const cwd = await boundDatabase(card);
    await writeExport(cwd, 'nightly', SERIAL, 'export-nightly');
    await withCards([card], async () => {
      const agent = await startAgent(cwd);
      try {
        const refused = await cli(['--action=import-assets', '--input=nightly'], cwd);
        expect(refused.code).toBe(EXIT.card);
        expect(refused.stderr).toContain('the agent serving this database (pid ');
        expect(refused.stderr).toContain('holds its smart card: stop it, import, and start it again');
        expect(refused.stderr).not.toContain('scdaemon');
      } finally {
        expect((await agent.stop()).code).toBe(EXIT.ok);
      }
      // Stopped, the same import goes through.
      expect((await cli(['--action=import-assets', '--input=nightly'], cwd)).code).toBe(EXIT.ok);
    });
  }, CARD_TEST_TIMEOUT_MS);

  test('another card than the bound one: refused, naming both serials', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL }));
    const other = new VirtualOpenPgpCard(createVirtualCardState({ serial: OTHER }));
    const cwd = await boundDatabase(card);
    const result = await withCards([other], () => startAgentExpectingFailure(cwd));
    expect(result.code).toBe(EXIT.card);
    expect(result.stderr).toContain(`this database is bound to smart card ${SERIAL}`);
    expect(result.stderr).toContain(`wrong smart card: expected card FFFE:${SERIAL}, but the inserted card is FFFE:${OTHER}`);
    expect(other.state.signatureCounter).toBe(0);
  }, CARD_TEST_TIMEOUT_MS);

  test('a bound database without its card is refused, with and without --without-card', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL }));
    const cwd = await boundDatabase(card);
    const noCard = await startAgentExpectingFailure(cwd);
    expect(noCard.code).toBe(EXIT.card);
    expect(noCard.stderr).toContain('no smart card is inserted');
    const forced = await startAgentExpectingFailure(cwd, ['--without-card']);
    expect(forced.code).toBe(EXIT.card);
    expect(forced.stderr).toContain(`bound to smart card ${SERIAL} and cannot run with --without-card`);
  }, CARD_TEST_TIMEOUT_MS);

  test('a database imported without card runs without one and stays so', async () => {
    const cwd = tempDir('nla-card-');
    await writeExport(cwd, 'in', undefined);
    expect((await cli(['--action=import-assets', '--input=in', '--without-card'], cwd, { env: {} })).code).toBe(EXIT.ok);
    // No card anywhere, no PIN: runs, with and without --without-card.
    for (const args of [['--without-card'], []]) {
      const agent = await startAgent(cwd, args, { env: {} });
      expect((await validate(agent, 1)).status).toBe(200);
      const readiness = await ready(agent);
      expect(readiness.status).toBe(200);
      expect(readiness.card.ok).toBe(true);
      expect((await agent.stop()).code).toBe(EXIT.ok);
    }
    // A card-bound export does not silently bind it …
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL }));
    await writeExport(cwd, 'bound', SERIAL, 'export-bound');
    const refused = await withCards([card], () => cli(['--action=import-assets', '--input=bound'], cwd));
    expect(refused.code).toBe(EXIT.conflict);
    expect(refused.stderr).toContain('the database runs without a smart card');
    expect(card.state.signatureCounter).toBe(0);
    // … only --force binds it, with the card present.
    const forced = await withCards([card], () => cli(['--action=import-assets', '--input=bound', '--force'], cwd));
    expect(forced.code).toBe(EXIT.ok);
    expect(forced.stdout).toContain(`card: bound to smart card ${SERIAL}`);
    const noCard = await startAgentExpectingFailure(cwd);
    expect(noCard.code).toBe(EXIT.card);
  }, CARD_TEST_TIMEOUT_MS);
});

describe('PIN', () => {
  test('missing PIN: exit 6 naming both sources; the PIN file works; a wrong PIN costs one try and is named; a blocked PIN is refused', async () => {
    const card = new VirtualOpenPgpCard(createVirtualCardState({ serial: SERIAL }));
    const cwd = await boundDatabase(card);
    await withCards([card], async () => {
      const missing = await startAgentExpectingFailure(cwd, [], { env: {} });
      expect(missing.code).toBe(EXIT.card);
      expect(missing.stderr).toContain('NLA_CARD_PIN');
      expect(missing.stderr).toContain('--card.pin-file');

      const pinFile = join(cwd, 'pin');
      writeFileSync(pinFile, `${PIN}\n`);
      chmodSync(pinFile, 0o600);
      const fromFile = await startAgent(cwd, [`--card.pin-file=${pinFile}`], { env: {} });
      expect((await validate(fromFile, 1)).status).toBe(200);
      expect((await fromFile.stop()).code).toBe(EXIT.ok);

      const wrong = await startAgentExpectingFailure(cwd, [], { env: { NLA_CARD_PIN: '654321' } });
      expect(wrong.code).toBe(EXIT.card);
      expect(wrong.stderr).toContain('the card rejected the PIN: 2 tries left');
      expect(wrong.stderr).not.toContain('654321');
      expect(card.state.pinRetries).toBe(2);

      card.state.pinRetries = 0;
      const blocked = await startAgentExpectingFailure(cwd);
      expect(blocked.code).toBe(EXIT.card);
      expect(blocked.stderr).toContain('blocked');
    });
  }, CARD_TEST_TIMEOUT_MS);
});
