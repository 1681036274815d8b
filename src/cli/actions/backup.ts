/**
 * `--action=backup --output=<dir>`: a consistent copy of the database while
 * the agent keeps running (LMDB copies from one read transaction), written to
 * `<dir>/database`. Restoring: stop the agent, replace `database/` with the
 * copy, start it (with a smart card this is a rollback and is detected).
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openAssetStore } from '../../store/asset-store.ts';
import type { ActionDef } from '../actions.ts';
import { CliError, EXIT } from '../exit-codes.ts';

export const backupAction: ActionDef = {
  name: 'backup',
  summary: 'copy the database consistently while the agent runs (to --output/database)',
  async run({ cwd, io, options }) {
    const target = join(resolve(cwd, options.output), 'database');
    if (resolve(target) === resolve(join(cwd, 'database'))) {
      throw new CliError('--output must be another directory than the working directory', EXIT.usage);
    }
    if (existsSync(target) && !options.force) {
      throw new CliError(`${target} already exists: choose another --output or use --force to replace it`, EXIT.conflict);
    }
    if (existsSync(target)) rmSync(target, { recursive: true, force: true });
    mkdirSync(target, { recursive: true, mode: 0o700 });
    const store = openAssetStore(join(cwd, 'database'));
    try {
      await store.backup(target);
    } finally {
      await store.close();
    }
    // The copy must open as a database of this version.
    const copy = openAssetStore(target);
    const head = copy.journalHead();
    await copy.close();
    io.stdout(`backup written to ${target} (journal sequence ${head.seq})\n`);
    return EXIT.ok;
  },
};
