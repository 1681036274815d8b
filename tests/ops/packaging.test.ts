// Goal: the shipped systemd unit runs the agent as documented — dedicated
// user, working directory = its state directory, owner-only umask, restart on
// failure but not on a usage error, ordered after pcscd, hardened, with a
// command line the agent accepts — and --help/--version show what operators
// need. Method: parse packaging/netlicensing-agent.service as key=value lines;
// feed its ExecStart arguments to the agent's own option parser.
import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, parseCliOptions } from '../../src/cli/run.ts';
import { captureIo, ROOT } from './support.ts';

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
