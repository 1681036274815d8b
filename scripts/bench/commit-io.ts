/**
 * The I/O under a durable write, timed on the disk the benchmark's database is on, before any
 * server runs. A durable write waits for one record written with O_DSYNC into the pre-written
 * runtime journal file (src/store/runtime-wal.ts): `measureJournalWrite` is the floor under its
 * latency that no code of ours can lower. LMDB's checkpoints do what `measureCommitIo` times: a
 * few data pages written, fdatasync, then the meta page written through a descriptor opened
 * O_DSYNC (LMDB's two syncs per commit, see src/store/lmdb.ts); they share the disk. Both differ a
 * lot between machines: the durable ratios of bench-validate are read against them.
 */
import { closeSync, constants, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface CommitIoFigures {
  medianMs: number;
  p90Ms: number;
}

export function measureCommitIo(dir: string, commits = 200, dataPages = 8): CommitIoFigures {
  const file = join(dir, 'commit-io.bin');
  const data = openSync(file, 'w');
  const meta = openSync(file, constants.O_WRONLY | constants.O_DSYNC);
  const page = Buffer.alloc(4096, 7);
  const metaRecord = Buffer.alloc(128, 3);
  const times: number[] = [];
  try {
    for (let i = 0; i < commits; i++) {
      const started = performance.now();
      // Pages at changing offsets past the two meta pages, as copy-on-write pages land.
      for (let p = 0; p < dataPages; p++) writeSync(data, page, 0, page.length, (2 + ((i * dataPages + p) % 1024)) * page.length);
      fdatasyncSync(data);
      writeSync(meta, metaRecord, 0, metaRecord.length, (i % 2) * page.length);
      times.push(performance.now() - started);
    }
  } finally {
    closeSync(meta);
    closeSync(data);
    rmSync(file, { force: true });
  }
  return figuresOf(times);
}

/**
 * One journal record of `bytes` written with O_DSYNC into a pre-written file, as runtime-wal.ts
 * does. 6,000 bytes is more than the bench's groups take: a file left by a Pay-per-Use run under
 * load held 896 records of 2,232 bytes on average (22.3 writes each); Floating entries are longer.
 */
export function measureJournalWrite(dir: string, writes = 200, bytes = 6000): CommitIoFigures {
  const file = join(dir, 'journal-write.bin');
  const zeros = Buffer.alloc(2 ** 20);
  const setup = openSync(file, 'w');
  writeSync(setup, zeros, 0, zeros.length, 0);
  fdatasyncSync(setup);
  closeSync(setup);
  const journal = openSync(file, constants.O_RDWR | constants.O_DSYNC);
  const record = Buffer.alloc(bytes, 5);
  const times: number[] = [];
  try {
    for (let i = 0, offset = 0; i < writes; i++, offset = (offset + bytes) % (zeros.length - bytes)) {
      const started = performance.now();
      writeSync(journal, record, 0, record.length, offset);
      times.push(performance.now() - started);
    }
  } finally {
    closeSync(journal);
    rmSync(file, { force: true });
  }
  return figuresOf(times);
}

function figuresOf(times: number[]): CommitIoFigures {
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)]!, p90Ms: times[Math.floor(times.length * 0.9)]! };
}
