// Goal: the running agent with its card over the real PC/SC stack: a card
// pulled mid-run turns validate writes into 503 ServiceUnavailableException
// while reads are served and /ready reports the card, and everything
// recovers when the card is back; strict sealing answers a write only after
// its signature, relaxed before it; /metrics carries the checkpoint latency
// and the card counter. Also measures the latency of a strict validate write
// over vpcd (printed, not asserted).
// Method: run-agent-offline in-process with real HTTP and admin listeners
// (and once as a child process through src/main.ts, stopped with SIGTERM)
// over a private pcscd + vpcd and a virtual OpenPGP card
// (tests/card/pcsc-testbed.ts); the virtual card's state shows what it signed.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { cpSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { decodeCheckpointPayload } from '../../src/card/checkpoint.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';
import { tempDir } from '../helpers.ts';
import { createVirtualCardState, VirtualOpenPgpCard } from '../support/virtual-openpgp-card.ts';
import { MAIN, parseExposition, startAgentChild } from '../ops/support.ts';
import { cli, eventually, metricsText, PIN, ready, startAgent, startAgentExpectingFailure, validate, writeExport } from './agent-harness.ts';
import { startPcscTestbed, type PcscTestbed } from './pcsc-testbed.ts';

/** Every card command takes ~45 ms over vpcd, a start several of them. */
const CARD_TEST_TIMEOUT_MS = 60_000;

let bed: PcscTestbed;
const savedSocket = process.env['PCSCLITE_CSOCK_NAME'];
const SERIAL = '00C0FFEE';
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

async function importBound(): Promise<string> {
  const cwd = tempDir('nla-card-');
  await writeExport(cwd, 'in', SERIAL);
  const result = await cli(['--action=import-assets', '--input=in'], cwd);
  expect(result.code).toBe(EXIT.ok);
  return cwd;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

describe('card pulled while the agent runs', () => {
  test('writes get 503 ServiceUnavailableException, reads are served, /ready reports the card; all recovers when it is back', async () => {
    const cwd = await importBound();
    const agent = await startAgent(cwd, ['--card.seal-interval-ms=0']);
    try {
      expect((await validate(agent, 1)).remaining).toBe(999_999);
      expect((await ready(agent)).status).toBe(200);

      await bed.remove(card);
      const refused = await validate(agent, 1);
      expect(refused.status).toBe(503);
      const envelope = JSON.parse(refused.body) as { infos: { info: { id: string; type: string; value: string }[] } };
      expect(envelope.infos.info[0]).toMatchObject({ id: 'ServiceUnavailableException', type: 'ERROR' });
      expect(envelope.infos.info[0]!.value).toContain('smart card');

      // Reads are served (the refused booking above was durable, but never confirmed).
      const read = await validate(agent, 0);
      expect(read.status).toBe(200);
      const remaining = read.remaining!;
      expect([999_998, 999_999]).toContain(remaining);

      const readiness = await ready(agent);
      expect(readiness.status).toBe(503);
      expect(readiness.card.ok).toBe(false);
      expect(readiness.card.detail).toContain(`card ${SERIAL} is not available`);
      const metrics = parseExposition(await metricsText(agent));
      expect(metrics.value('nla_card_available')).toBe(0);

      // While the card is out, no write is made at all.
      expect((await validate(agent, 1)).status).toBe(503);
      expect((await validate(agent, 0)).remaining).toBe(remaining);
      expect(agent.stderr()).toContain('validate writes get 503 until it is back; reads continue');

      await bed.insert(card);
      await eventually('the card check to pass', async () => (await ready(agent)).status === 200);
      const after = await validate(agent, 1);
      expect(after.status).toBe(200);
      expect(after.remaining).toBe(remaining - 1);
      expect(agent.stderr()).toContain(`smart card ${SERIAL} answers again`);
    } finally {
      if (!card.inserted) await bed.insert(card);
      expect((await agent.stop()).code).toBe(EXIT.ok);
    }
  }, CARD_TEST_TIMEOUT_MS);
});

describe('pcscd restarted while the agent runs', () => {
  test('writes get 503 while pcscd is away; the agent opens a new PC/SC context and recovers when it is back', async () => {
    const cwd = await importBound();
    const agent = await startAgent(cwd, ['--card.seal-interval-ms=0']);
    try {
      expect((await validate(agent, 1)).status).toBe(200);
      await bed.remove(card);
      await bed.stop();
      expect((await validate(agent, 1)).status).toBe(503);
      expect((await ready(agent)).status).toBe(503);
      expect((await validate(agent, 0)).status).toBe(200);
      // A new pcscd on the same socket path (as systemd restarts it), the card inserted again.
      bed = await startPcscTestbed();
      await bed.insert(card);
      await eventually('the card check to pass', async () => (await ready(agent)).status === 200);
      expect((await validate(agent, 1)).status).toBe(200);
    } finally {
      if (!card.inserted) await bed.insert(card);
      expect((await agent.stop()).code).toBe(EXIT.ok);
    }
  }, CARD_TEST_TIMEOUT_MS);
});

describe('sealing modes', () => {
  test('strict: every acknowledged write was signed before its answer; /metrics reports latency and counter', async () => {
    const cwd = await importBound();
    const agent = await startAgent(cwd, ['--card.seal=strict', '--card.seal-interval-ms=0']);
    const latencies: number[] = [];
    try {
      await validate(agent, 0); // warm-up read
      for (let i = 0; i < 100; i++) {
        const counterBefore = card.state.signatureCounter;
        const started = performance.now();
        const answer = await validate(agent, 1);
        latencies.push(performance.now() - started);
        expect(answer.status).toBe(200);
        // The card signed (at least) once more before this answer came back.
        expect(card.state.signatureCounter).toBeGreaterThan(counterBefore);
      }
      const metrics = parseExposition(await metricsText(agent));
      expect(metrics.value('nla_card_checkpoints_total')).toBeGreaterThanOrEqual(101);
      expect(metrics.value('nla_card_checkpoint_duration_seconds_count')).toBeGreaterThanOrEqual(101);
      expect(metrics.value('nla_card_signature_counter')).toBe(card.state.signatureCounter);
      expect(metrics.value('nla_card_available')).toBe(1);
      expect(metrics.value('nla_ready', { check: 'card' })).toBe(1);
    } finally {
      expect((await agent.stop()).code).toBe(EXIT.ok);
    }
    const sorted = [...latencies].sort((a, b) => a - b);
    console.log(
      `strict validate write over vpcd (${sorted.length} sequential requests): ` +
        `p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`,
    );
  }, CARD_TEST_TIMEOUT_MS);

  test('strict under concurrency: 100 parallel writes share a few signatures', async () => {
    const cwd = await importBound();
    const agent = await startAgent(cwd, ['--card.seal-interval-ms=0']);
    try {
      const counterBefore = card.state.signatureCounter;
      const started = performance.now();
      const answers = await Promise.all(Array.from({ length: 100 }, () => validate(agent, 1)));
      const elapsed = performance.now() - started;
      expect(answers.every((a) => a.status === 200)).toBe(true);
      const signatures = card.state.signatureCounter - counterBefore;
      expect(signatures).toBeGreaterThanOrEqual(1);
      expect(signatures).toBeLessThan(20);
      console.log(`strict, 100 parallel validate writes over vpcd: ${signatures} signatures, all answered in ${elapsed.toFixed(0)} ms`);
    } finally {
      expect((await agent.stop()).code).toBe(EXIT.ok);
    }
  }, CARD_TEST_TIMEOUT_MS);

  test('relaxed: a write is answered before its checkpoint, which follows within the interval', async () => {
    const cwd = await importBound();
    const agent = await startAgent(cwd, ['--card.seal=relaxed', '--card.seal-interval-ms=3000']);
    try {
      const counterBefore = card.state.signatureCounter;
      const answer = await validate(agent, 1);
      expect(answer.status).toBe(200);
      // Answered with nothing signed yet (the checkpoint is 3 s away).
      expect(card.state.signatureCounter).toBe(counterBefore);
      await eventually('the relaxed checkpoint', async () => card.state.signatureCounter > counterBefore);
      expect((await ready(agent)).card.detail).toContain('(relaxed sealing)');
    } finally {
      expect((await agent.stop()).code).toBe(EXIT.ok);
    }
  }, CARD_TEST_TIMEOUT_MS);
});

describe('as a child process (src/main.ts)', () => {
  test('SIGTERM seals the relaxed writes left and exits 0; an older copy of database/ then exits with 6', async () => {
    const cwd = await importBound();
    cpSync(join(cwd, 'database'), join(cwd, 'older'), { recursive: true });
    const env = { PCSCLITE_CSOCK_NAME: bed.socketPath, NLA_CARD_PIN: PIN };
    const child = await startAgentChild(cwd, ['--allow-anonymous', '--admin.port=off', '--card.seal=relaxed', '--card.seal-interval-ms=600000'], env);
    const counterBefore = card.state.signatureCounter;
    expect((await validate(child, 3)).remaining).toBe(999_997);
    // Relaxed, ten minutes between checkpoints: acknowledged, not yet sealed.
    expect(card.state.signatureCounter).toBe(counterBefore);
    expect(await child.stop()).toBe(EXIT.ok);
    // The final checkpoint at shutdown covers the write.
    expect(card.state.signatureCounter).toBe(counterBefore + 1);
    const store = openAssetStore(join(cwd, 'database'), { readOnly: true });
    const sealed = decodeCheckpointPayload(store.cardCheckpoint()!.payload);
    expect(sealed.journalSeq).toBe(store.journalHead().seq);
    await store.close();

    renameSync(join(cwd, 'database'), join(cwd, 'newest'));
    renameSync(join(cwd, 'older'), join(cwd, 'database'));
    const restored = Bun.spawn([process.execPath, MAIN, '--action=run-agent-offline', '--host=127.0.0.1', '--port=0', '--admin.port=off'], {
      cwd,
      env: { ...process.env, ...env },
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    const code = await restored.exited;
    const stderr = await new Response(restored.stderr).text();
    expect(code).toBe(EXIT.card);
    expect(stderr).toContain('rollback detected');
    rmSync(join(cwd, 'database'), { recursive: true });
    renameSync(join(cwd, 'newest'), join(cwd, 'database'));
  }, CARD_TEST_TIMEOUT_MS);
});

describe('compact-journal on a card-bound database', () => {
  test('folds in two steps around a start with the card (pending, sealed, base); a base the card did not seal is refused with 6', async () => {
    const cwd = await importBound();
    const writes = async (n: number) => {
      const agent = await startAgent(cwd, ['--card.seal=strict']);
      try {
        for (let i = 0; i < n; i++) expect((await validate(agent, 1)).status).toBe(200);
      } finally {
        expect((await agent.stop()).code).toBe(EXIT.ok);
      }
    };
    const sealedSeq = async () => {
      const store = openAssetStore(join(cwd, 'database'), { readOnly: true });
      try {
        return decodeCheckpointPayload(store.cardCheckpoint()!.payload).journalSeq;
      } finally {
        await store.close();
      }
    };
    const compact = () => cli(['--action=compact-journal', '--keep-days=0'], cwd, { clock: { nowMs: () => Date.now() + 60_000 } });
    await writes(5);
    const first = await sealedSeq();

    // Step 1: a pending fold up to the entry the card sealed; nothing deleted yet.
    let result = await compact();
    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout).toContain(`into a fold through entry ${first} `);
    // The start checks the pending fold against the entries it folds, then seals its marker.
    await writes(1);
    result = await compact();
    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout).toContain(`journal: the fold through entry ${first}, sealed by the card, is now the base\n`);
    await writes(1);
    const verified = await cli(['--action=verify-database'], cwd);
    expect(verified.code).toBe(EXIT.ok);
    expect(verified.stdout).toContain(`after its base (entries 1–${first},`);
    expect(verified.stdout).toContain('used quantity: 7\n');

    // A forger folds the journal as a database without card would (the base at once, its marker
    // after the sealed entry), with a snapshot of their own: refused before the card is asked.
    const store = openAssetStore(join(cwd, 'database'));
    store.exclusively('forger', () => {
      store.promotePendingFold();
      store.foldJournal({ throughSeqAtMost: store.journalHead().seq, entriesBeforeMs: Date.now() + 60_000, atMs: Date.now() }, 'now');
    });
    await store.close();
    const refused = await startAgentExpectingFailure(cwd, ['--card.seal=strict']);
    expect(refused.code).toBe(EXIT.card);
    expect(refused.stderr).toContain('was not sealed by the card');
  }, CARD_TEST_TIMEOUT_MS);
});
