#!/usr/bin/env bun
import './platform/bundle-env.ts';
import { runCli, systemIo } from './cli/run.ts';

// Database, transfer files and backups hold licensing secrets: owner-only permissions.
process.umask(0o077);

const controller = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => controller.abort(signal));
}
process.exitCode = await runCli(Bun.argv.slice(2), systemIo(), { signal: controller.signal });
