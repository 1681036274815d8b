// Goal: the shipped systemd unit runs the agent as documented — dedicated
// user, working directory = its state directory, owner-only umask, restart on
// failure but not on a usage error, ordered after pcscd, hardened, with a
// command line the agent accepts — and --help/--version show what operators
// need. Method: parse packaging/netlicensing-agent.service as key=value lines;
// feed its ExecStart arguments to the agent's own option parser.
import { describe, expect, test } from 'bun:test';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, parseCliOptions } from '../../src/cli/run.ts';
import { tempDir } from '../helpers.ts';
import { captureIo, ROOT, startServingChild } from './support.ts';

const UNIT = readFileSync(join(ROOT, 'packaging', 'netlicensing-agent.service'), 'utf8');

function directives(): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const raw of UNIT.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    expect(eq).toBeGreaterThan(0);
    const key = line.slice(0, eq);
    map.set(key, [...(map.get(key) ?? []), line.slice(eq + 1)]);
  }
  return map;
}

describe('systemd unit', () => {
  const d = directives();
  const one = (key: string) => {
    const values = d.get(key) ?? [];
    expect(values).toHaveLength(1);
    return values[0]!;
  };

  test('dedicated user, working directory in its 0700 state directory, owner-only umask', () => {
    expect(one('User')).toBe('netlicensing-agent');
    expect(one('Group')).toBe('netlicensing-agent');
    expect(one('StateDirectory')).toBe('netlicensing-agent');
    expect(one('StateDirectoryMode')).toBe('0700');
    expect(one('WorkingDirectory')).toBe('/var/lib/netlicensing-agent');
    expect(one('UMask')).toBe('0077');
    expect(one('ReadWritePaths')).toBe('/var/lib/netlicensing-agent');
  });

  test('restart on failure except after a usage error; after and wanting pcscd; graceful stop', () => {
    expect(one('Restart')).toBe('on-failure');
    expect(one('RestartPreventExitStatus')).toBe('2');
    expect(one('After').split(/\s+/)).toContain('pcscd.service');
    expect(one('Wants').split(/\s+/)).toContain('pcscd.service');
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(one('WantedBy')).toBe('multi-user.target');
  });

  test('hardening is on, and nothing that breaks the JIT', () => {
    for (const [key, value] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['CapabilityBoundingSet', ''],
      ['RestrictSUIDSGID', 'yes'],
      ['SystemCallFilter', '@system-service'],
    ] as const) {
      expect(`${key}=${one(key)}`).toBe(`${key}=${value}`);
    }
    expect(d.has('MemoryDenyWriteExecute')).toBe(false);
  });

  test('ExecStart is a command line the agent accepts, admin listener on loopback', () => {
    const [binary, ...args] = one('ExecStart').split(/\s+/);
    expect(binary).toBe('/opt/netlicensing-agent/netlicensing-agent');
    expect(args.pop()).toBe('$NLA_OPTIONS');
    const options = parseCliOptions(args);
    expect(options.action).toBe('run-agent-offline');
    expect(options.adminHost).toBe('127.0.0.1');
    expect(options.adminPort).toBe('8081');
    expect(options.port).toBe('8080');
  });
});

describe('--help and --version', () => {
  test('--help lists the status action and the TLS and admin options', async () => {
    const io = captureIo();
    expect(await runCli(['--help'], io)).toBe(0);
    for (const text of ['  status ', '--tls.cert=<file>', '--tls.key=<file>', '--tls.ca=<file>', '--tls.client-auth=<value>', '--admin.port=<value>', '--admin.host=<value>']) {
      expect(io.out).toContain(text);
    }
  });

  test('--version prints version and build commit', async () => {
    const io = captureIo();
    expect(await runCli(['--version'], io)).toBe(0);
    expect(io.out).toMatch(/^netlicensing-agent \d+\.\d+\.\d+ \(build \S+, bun \d+\.\d+\.\d+\)\n$/);
  });
});

describe('npm run build (scripts/build.ts)', () => {
  test('the executable and its addon match SHA256SUMS, --version names the commit, and the compiled agent serves', async () => {
    const out = tempDir('nla-build-');
    const built = Bun.spawnSync([process.execPath, join(ROOT, 'scripts', 'build.ts'), `--out=${out}`], { cwd: ROOT, stdout: 'pipe', stderr: 'pipe' });
    expect(built.exitCode, built.stderr.toString()).toBe(0);
    const sums = readFileSync(join(out, 'SHA256SUMS'), 'utf8').trim().split('\n');
    expect(sums.map((line) => line.split('  ')[1])).toEqual(['netlicensing-agent', 'prebuilds/linux-x64/node.napi.glibc.node']);
    for (const line of sums) {
      const [hash, file] = line.split('  ') as [string, string];
      expect(`${file} ${createHash('sha256').update(readFileSync(join(out, file))).digest('hex')}`).toBe(`${file} ${hash}`);
    }
    const binary = join(out, 'netlicensing-agent');
    // A source tree without git (a tarball) builds with the commit "unknown" (scripts/build.ts).
    const git = Bun.spawnSync(['git', 'rev-parse', '--short=12', 'HEAD'], { cwd: ROOT, stdout: 'pipe', stderr: 'pipe' });
    const commit = git.exitCode === 0 ? git.stdout.toString().trim() : 'unknown';
    const version = Bun.spawnSync([binary, '--version'], { cwd: out, stdout: 'pipe' }).stdout.toString();
    expect(version).toMatch(new RegExp(`^netlicensing-agent \\d+\\.\\d+\\.\\d+ \\(build ${commit}(-dirty)?, bun \\d+\\.\\d+\\.\\d+\\)\\n$`));

    // The compiled executable imports the demo export and answers a client, from another directory.
    const cwd = tempDir('nla-build-run-');
    const imported = Bun.spawnSync([binary, '--action=import-assets', `--input=${join(ROOT, 'demo')}`], { cwd, stdout: 'pipe', stderr: 'pipe' });
    expect(imported.exitCode, imported.stderr.toString()).toBe(0);
    const agent = await startServingChild([binary, '--action=run-agent-offline', '--host=127.0.0.1', '--port=0', '--admin.port=off'], cwd);
    try {
      const res = await fetch(`http://127.0.0.1:${agent.port}/rest/licensee/DEMO-SUBSCRIPTION/validate`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`apiKey:${DEMO_API_KEY}`).toString('base64')}`, accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
        body: 'productModuleNumber0=DEMO-M-SUBSCRIPTION',
      });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('{"value":"true","name":"valid"}');
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 120_000);
});

/** The vendor-wide API key of the bundled demo export (scripts/demo-client.ts). */
const DEMO_API_KEY = '0b9d2e7f-3a41-4c6b-8e5d-9f2a1c7b4e10';
