// Goal: the README's first command works: the bundled demo imports, the agent
// starts on it and answers a client for several models. Method: scripts/demo.sh
// with DEMO_ONESHOT=1 on a free port and a temporary working directory.
import { expect, test } from 'bun:test';
import { join } from 'node:path';
import { tempDir } from '../helpers.ts';

test('npm run demo: import, start, client calls, clean stop', async () => {
  const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response() });
  const port = probe.port;
  await probe.stop(true);
  const script = join(import.meta.dir, '..', '..', 'scripts', 'demo.sh');
  const demo = Bun.spawn(['bash', script], {
    env: { ...process.env, DEMO_ONESHOT: '1', PORT: String(port), ADMIN_PORT: 'off', DEMO_DIR: join(tempDir('nla-demo-'), 'run') },
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [out, code] = await Promise.all([new Response(demo.stdout).text(), demo.exited]);
  expect(code, await new Response(demo.stderr).text()).toBe(0);
  expect(out).toContain('The transfer files may now be removed');
  expect(out).toMatch(/DEMO-M-SUBSCRIPTION\s+Subscription\s+valid=true GREEN expires=2036-01-01T00:00:00.000Z/);
  expect(out).toMatch(/DEMO-M-FLOATING\s+Floating\s+valid=true GREEN expirationTimestamp=/);
  expect(out).toMatch(/DEMO-M-PAYPERUSE\s+PayPerUse\s+valid=true GREEN remainingQuantity=85/);
  expect(out).toContain('<ns2:netlicensing xmlns="http://www.w3.org/2000/09/xmldsig#"');
  // The agent itself ended with 0 after SIGTERM (drained, store closed), not just the script.
  expect(out).toContain('== the agent stopped (exit 0)');
}, 60_000);
