/**
 * An agent wired in-process (createApp + serveApp) over the benchmark data set
 * (seed.ts) in a fresh database; prints its port. Not the run-agent-offline
 * action (no metrics observer, trusted clock or signer): bench-validate runs
 * the real action for its scenarios and this one only where the action has no
 * switch (--compute-every-answer: answer and module reuse off); bench-proxy uses it as
 * the upstream.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/platform/clock.ts';
import { createLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { serveApp } from '../../src/server/serve.ts';
import { seedBenchDatabase } from './seed.ts';

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'nla-bench-'));
// --compute-every-answer: answer and module reuse off (src/server/answer-cache.ts, src/core/validate.ts),
// to show the cost of a full decision.
const reuseAnswers = !process.argv.includes('--compute-every-answer');
const store = seedBenchDatabase(join(dir, 'database'));
const app = createApp({ store, clock: systemClock, log: createLogger(), ttlMs: 600_000, allowAnonymous: false, reuseAnswers });
const server = serveApp(app, { port: 0, hostname: '127.0.0.1' });
console.log(`PORT ${server.port}`);
process.on('SIGTERM', async () => {
  await server.stop();
  await store.close();
  process.exit(0);
});
