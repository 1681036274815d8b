/**
 * The I/O one durable LMDB commit does, timed on the disk the benchmark's database is on: a few
 * data pages written, fdatasync, then the meta page written through a descriptor opened O_DSYNC
 * (LMDB's two syncs per commit, see src/store/lmdb.ts). It is the floor under a durable write's
 * latency that no code of ours can lower, and it differs a lot between machines: the durable
 * ratios of bench-validate are read against it.
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
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)]!, p90Ms: times[Math.floor(times.length * 0.9)]! };
}
