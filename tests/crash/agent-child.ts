/**
 * Child process for the crash tests: serves an existing working directory
 * exactly as run-agent-offline does (real clock), prints `PORT <n>` once
 * listening, and is then killed with SIGKILL by the test.
 */
import { join } from 'node:path';
import { systemClock } from '../../src/platform/clock.ts';
import { silentLogger } from '../../src/platform/log.ts';
import { createApp } from '../../src/server/app.ts';
import { serveApp } from '../../src/server/serve.ts';
import { openAssetStore } from '../../src/store/asset-store.ts';

const cwd = process.argv[2]!;
const store = openAssetStore(join(cwd, 'database'));
const app = createApp({ store, clock: systemClock, log: silentLogger(), ttlMs: 600_000, allowAnonymous: false });
const server = serveApp(app, { port: 0, hostname: '127.0.0.1' });
console.log(`PORT ${server.port}`);
