/**
 * `--action=backup --output=<dir>`: a consistent copy of the database while
 * the agent keeps running (LMDB copies from one read transaction), written to
 * `<dir>/database`. Restoring: stop the agent, replace `database/` with the
 * copy, start it (with a smart card this is a rollback and is detected).
 *
 * Nothing is lost on the way: the source is opened before anything is
 * touched; the copy is written beside the target under a temporary name,
 * synced to the device and opened as a check; only then does it take the
 * target's place (an old backup under `--force` is moved aside first and
 * removed last). A failed or killed backup thus leaves the previous one as
 * it was, never a half copy under the target's name. The target may not be
 * the working directory's database under any name (a symlink, a bind mount).
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { processExists } from '../../platform/process-exists.ts';
import { openAssetStore } from '../../store/asset-store.ts';
import type { ActionDef } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';

/** The path `path` names once every symlink in its existing part is resolved (its missing tail kept as it is). */
function realPathOf(path: string): string {
  const missing: string[] = [];
  let existing = resolve(path);
  while (!existsSync(existing)) {
    const parent = dirname(existing);
    if (parent === existing) break;
    missing.unshift(basename(existing));
    existing = parent;
  }
  return join(realpathSync(existing), ...missing);
}

/** Same file or directory: by device and inode where both exist (a bind mount), else by real path. */
function samePlace(a: string, b: string): boolean {
  if (existsSync(a) && existsSync(b)) {
    const sa = statSync(a);
    const sb = statSync(b);
    if (sa.dev === sb.dev && sa.ino === sb.ino) return true;
  }
  return realPathOf(a) === realPathOf(b);
}

/** Removes a temporary copy; a failure here must not hide the error that made it necessary. */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // Left behind under its temporary name; the next backup into this directory removes it (removeLeftovers).
  }
}

/**
 * What backups that were killed left (their process is gone): an unfinished copy is removed; an
 * old backup moved aside goes back to its name if it was killed before the new one took it.
 */
function removeLeftovers(outputDir: string): void {
  for (const name of readdirSync(outputDir)) {
    const match = /^\.database-(partial|previous)-(\d+)$/.exec(name);
    if (match === null) continue;
    const pid = Number(match[2]);
    // A running backup's copies are its own.
    if (pid !== process.pid && processExists(pid)) continue;
    const path = join(outputDir, name);
    if (match[1] === 'previous' && !existsSync(join(outputDir, 'database'))) renameSync(path, join(outputDir, 'database'));
    else rmSync(path, { recursive: true, force: true });
  }
}

function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** What an operator can act on, for the errors a target directory gives; others are left to the caller. */
function targetError(error: unknown, outputDir: string): CliError | undefined {
  // lmdb-js reports its copy's failures with the system's text only (no code).
  const message = error instanceof Error ? error.message : '';
  const code =
    (error as NodeJS.ErrnoException | undefined)?.code ??
    (/No space left on device/i.test(message) ? 'ENOSPC' : /File too large/i.test(message) ? 'EFBIG' : /Disk quota exceeded/i.test(message) ? 'EDQUOT' : /Permission denied/i.test(message) ? 'EACCES' : undefined);
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
    return new CliError(`cannot write the backup under ${outputDir}: ${code === 'EFBIG' ? 'file too large (a file size limit)' : 'the disk is full'}; the previous backup there, if any, is unchanged`, EXIT.store, { cause: error });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new CliError(`cannot write the backup under ${outputDir}: permission denied (${code})`, EXIT.store, { cause: error });
  }
  if (code === 'ENOTDIR' || code === 'EEXIST') {
    return new CliError(`--output=${outputDir} is not a directory`, EXIT.usage, { cause: error });
  }
  if (code === 'EIO') return new CliError(`I/O error while writing the backup under ${outputDir}`, EXIT.store, { cause: error });
  return undefined;
}

export const backupAction: ActionDef = {
  name: 'backup',
  summary: 'copy the database consistently while the agent runs (to --output/database)',
  async run({ cwd, io, options }) {
    const outputDir = resolve(cwd, options.output);
    const target = join(outputDir, 'database');
    const source = join(cwd, 'database');
    if (samePlace(outputDir, cwd) || samePlace(target, source)) {
      throw new CliError(`--output=${options.output} is the working directory (${realPathOf(cwd)}): choose another directory`, EXIT.usage);
    }
    try {
      if (existsSync(outputDir) && statSync(outputDir).isDirectory()) removeLeftovers(outputDir);
    } catch (error) {
      throw targetError(error, outputDir) ?? error;
    }
    if (existsSync(target) && !options.force) {
      throw new CliError(`${target} already exists: choose another --output or use --force to replace it`, EXIT.conflict);
    }
    // The source first: a backup run from the wrong directory changes nothing at the target.
    const store = openAssetStore(source);
    // No dot after the first character: lmdb-js opens a path with an extension as a file, not a directory.
    const partial = join(outputDir, `.database-partial-${process.pid}`);
    const previous = join(outputDir, `.database-previous-${process.pid}`);
    let seq: number;
    try {
      try {
        mkdirSync(outputDir, { recursive: true, mode: 0o700 });
        mkdirSync(partial, { mode: 0o700 });
        await store.backup(partial);
        for (const name of readdirSync(partial)) syncPath(join(partial, name));
        syncPath(partial);
      } catch (error) {
        removeQuietly(partial);
        throw targetError(error, outputDir) ?? error;
      }
    } finally {
      await store.close();
    }
    try {
      // The copy must open as a database of this version.
      const copy = openAssetStore(partial);
      seq = copy.journalHead().seq;
      await copy.close();
    } catch (error) {
      removeQuietly(partial);
      throw error;
    }
    const replacing = existsSync(target);
    try {
      if (replacing) renameSync(target, previous);
      try {
        renameSync(partial, target);
      } catch (error) {
        // The old backup goes back where it was.
        if (replacing) renameSync(previous, target);
        throw error;
      }
      syncPath(outputDir);
    } catch (error) {
      removeQuietly(partial);
      throw targetError(error, outputDir) ?? error;
    }
    if (replacing) removeQuietly(previous);
    io.stdout(`backup written to ${target} (journal sequence ${seq})\n`);
    return EXIT.ok;
  },
};
