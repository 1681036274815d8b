#!/usr/bin/env bun
/**
 * Card benchmark: how long a checkpoint takes with the in-process fake card
 * and with a virtual OpenPGP card over the real PC/SC stack (private pcscd +
 * vpcd, see tests/card/pcsc-testbed.ts), how many writes share one
 * signature under concurrency, and whether the event loop stays free while
 * the card works. Store writes are in memory here (no fsync), so the numbers
 * are the card's share of a checkpoint.
 *
 *   bun scripts/bench-card.ts [--rounds=N]
 */
import { Checkpointer, CheckpointBatcher, createCheckpoint, EMPTY_JOURNAL_HASH, verifyStartup, type StoredCheckpoint } from '../src/card/checkpoint.ts';
import { createFakeCardState, FakeCard } from '../src/card/fake.ts';
import { PcscCard } from '../src/card/pcsc-card.ts';
import type { Card } from '../src/card/types.ts';
import { systemClock } from '../src/platform/clock.ts';
import { startPcscTestbed } from '../tests/card/pcsc-testbed.ts';
import { createVirtualCardState, VirtualOpenPgpCard, type VirtualKeyAlgorithm } from '../tests/support/virtual-openpgp-card.ts';

const roundsArg = Bun.argv.find((a) => a.startsWith('--rounds='));
const ROUNDS = roundsArg ? Number(roundsArg.split('=')[1]) : 20;
const DB = 'bench-db';

interface Stats {
  n: number;
  medianMs: number;
  p95Ms: number;
  maxMs: number;
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { n: sorted.length, medianMs: at(0.5), p95Ms: at(0.95), maxMs: sorted[sorted.length - 1]! };
}

const fmt = (s: Stats) => `median ${s.medianMs.toFixed(2)} ms, p95 ${s.p95Ms.toFixed(2)} ms, max ${s.maxMs.toFixed(2)} ms (n=${s.n})`;

async function time(rounds: number, action: () => Promise<unknown>): Promise<Stats> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await action();
    samples.push(performance.now() - t0);
  }
  return stats(samples);
}

/** Largest gap between 1 ms timer ticks while `action` runs: how long the event loop was blocked. */
async function loopGap(action: () => Promise<unknown>): Promise<number> {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  await action();
  clearInterval(timer);
  return worst;
}

async function checkpointRig(card: Card) {
  const hashes = new Map<number, string>([[0, EMPTY_JOURNAL_HASH]]);
  let journalSeq = 0;
  let record: StoredCheckpoint | undefined;
  const persistence = {
    journalHead: () => ({ seq: journalSeq, hash: hashes.get(journalSeq)! }),
    save: async (next: StoredCheckpoint) => {
      record = next;
    },
  };
  const context = () => ({ databaseId: DB, nowMs: Date.now(), journalHashAt: (seq: number) => hashes.get(seq) });
  const publicKey = await card.publicKey();
  record = await createCheckpoint(card, { databaseId: DB, seq: 1, journalSeq: 0, journalHash: EMPTY_JOURNAL_HASH, clockHighWaterMs: Date.now() }, { publicKey });
  const verdict = await verifyStartup(card, record, publicKey, context());
  if (verdict.status !== 'ok') throw new Error(verdict.message);
  const checkpointer = new Checkpointer({ card, publicKey, databaseId: DB, persistence, clock: systemClock, stored: record, base: verdict.base });
  return {
    checkpointer,
    write: () => {
      journalSeq += 1;
      hashes.set(journalSeq, journalSeq.toString(16).padStart(64, '0'));
      return journalSeq;
    },
    verdictTime: () => time(3, () => verifyStartup(card, record, publicKey, context())),
  };
}

async function groupCommit(card: Card, rig: Awaited<ReturnType<typeof checkpointRig>>, writers: number) {
  const batcher = new CheckpointBatcher(rig.checkpointer, { mode: 'strict', intervalMs: 0, clock: systemClock });
  const before = await card.signatureCounter();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: writers }, () => batcher.sealed(rig.write())));
  const elapsed = performance.now() - t0;
  const signatures = (await card.signatureCounter()) - before;
  await batcher.close();
  return { writers, signatures, elapsed };
}

async function benchFake(): Promise<void> {
  const card = new FakeCard(createFakeCardState());
  const rig = await checkpointRig(card);
  console.log('fake card (in-process ECDSA P-256)');
  console.log(`  checkpoint:          ${fmt(await time(Math.max(ROUNDS, 200), () => { rig.write(); return rig.checkpointer.checkpoint(); }))}`);
  const g = await groupCommit(card, rig, 1000);
  console.log(`  group commit:        ${g.writers} concurrent writes sealed by ${g.signatures} signature(s) in ${g.elapsed.toFixed(1)} ms`);
}

async function benchVirtual(algorithm: VirtualKeyAlgorithm, bed: Awaited<ReturnType<typeof startPcscTestbed>>): Promise<void> {
  const virtual = new VirtualOpenPgpCard(createVirtualCardState({ serial: algorithm === 'rsa2048' ? '0000BE02' : '0000BE01', algorithm }));
  await bed.insert(virtual);
  const t0 = performance.now();
  const card = await PcscCard.open({ pin: '123456', readerFilter: bed.readerPrefix, socketPath: bed.socketPath });
  const openMs = performance.now() - t0;
  try {
    console.log(`virtual OpenPGP card over pcscd + vpcd (${algorithm})`);
    console.log(`  open (find, SELECT, 6E, 7A): ${openMs.toFixed(1)} ms`);
    const apdu = await time(ROUNDS, () => card.readSignatureCounter());
    console.log(`  one APDU (GET DATA 7A):      ${fmt(apdu)}`);
    const sign = await time(ROUNDS, () => card.sign(new Uint8Array(32)));
    console.log(`  sign (PSO:CDS):              ${fmt(sign)}`);
    const rig = await checkpointRig(card);
    const apduPerCheckpointStart = virtual.apduCount;
    let gap = 0;
    const checkpoint = await time(ROUNDS, async () => {
      rig.write();
      gap = Math.max(gap, await loopGap(() => rig.checkpointer.checkpoint()));
    });
    const apdusPerCheckpoint = (virtual.apduCount - apduPerCheckpointStart) / ROUNDS;
    console.log(`  checkpoint:                  ${fmt(checkpoint)}; ${apdusPerCheckpoint.toFixed(1)} APDU(s) each`);
    console.log(`  startup verification:        ${fmt(await rig.verdictTime())}`);
    console.log(`  event loop blocked at most:  ${gap.toFixed(1)} ms during checkpoints (card I/O runs on the PC/SC worker)`);
    const g = await groupCommit(card, rig, 200);
    console.log(`  group commit:                ${g.writers} concurrent writes sealed by ${g.signatures} signature(s) in ${g.elapsed.toFixed(1)} ms`);
  } finally {
    await card.close();
    await bed.remove(virtual);
  }
}

async function benchWorkerOverhead(bed: Awaited<ReturnType<typeof startPcscTestbed>>): Promise<void> {
  const before = bed.pcsc.stats();
  const wall = await time(200, () => bed.pcsc.listReaders());
  const after = bed.pcsc.stats();
  const inside = (after.busyMs - before.busyMs) / (after.calls - before.calls);
  console.log('PC/SC worker');
  console.log(`  SCardListReaders round trip: ${fmt(wall)}; of which inside libpcsclite ${inside.toFixed(3)} ms`);
}

await benchFake();
let bed: Awaited<ReturnType<typeof startPcscTestbed>>;
try {
  bed = await startPcscTestbed();
} catch (error) {
  console.error(`cannot start the PC/SC testbed: ${(error as Error).message}`);
  process.exit(1);
}
try {
  await benchWorkerOverhead(bed);
  await benchVirtual('ecdsa-p256', bed);
  await benchVirtual('rsa2048', bed);
} finally {
  await bed.stop();
}
