// Goal: `--action=status` reports the database (and works while the agent
// runs in another process); the binary's entry point keeps the database and
// its backup owner-only (0700 directory, 0600 files) after import, run and
// backup, and transfer files are written 0600; the admin listener binds to
// loopback by default and can be turned off. Method: src/main.ts run as child
// processes (as the installed binary runs: its umask applies) on transfer
// files written with the project's writer; status through runCli in this
// process with captured output.
import { describe, expect, test } from 'bun:test';
import { chmodSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { runCli } from '../../src/cli/run.ts';
import { hashCredential } from '../../src/platform/credentials.ts';
import { openAssetStore, SCHEMA_VERSION } from '../../src/store/asset-store.ts';
import { encodeCheckpointPayload } from '../../src/card/checkpoint.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { verifyResponse } from '../../src/wire/xmldsig.ts';
import { connectRaw, tempDir } from '../helpers.ts';
import { API_KEY, apiKeyAuth, demoEntities, entity, seedStore } from '../support/seed-store.ts';
import { captureIo, runMain, startAgentChild } from './support.ts';

function mode(path: string): string {
  return (statSync(path).mode & 0o777).toString(8).padStart(3, '0');
}

/** Product with a Floating module (3 seats) and a Pay-per-Use module, one licensee, one API key. */
async function writeExport(dir: string): Promise<void> {
  const P = 'P-OPS';
  await writeTransferFiles(
    {
      exportId: '6f1c7a52-6c1e-4b8e-9d7e-0a2f3c4b5d6e',
      createdAt: '2026-11-01T08:00:00.000Z',
      sourceHost: 'https://go.netlicensing.io',
      licensees: ['L-OPS'],
      vendorCredentials: hashCredential('vendor', 'vendor-secret'),
    },
    [
      entity('Product', P, { name: 'Ops product', version: '1.0', licenseeAutoCreate: 'false' }),
      entity('ProductModule', 'M-FLOAT', { name: 'Floating', licensingModel: 'Floating', productNumber: P, maxCheckoutValidity: '300' }),
      entity('ProductModule', 'M-PPU', { name: 'Credits', licensingModel: 'PayPerUse', productNumber: P }),
      entity('LicenseTemplate', 'T-FLOAT', { name: 'seats', licenseType: 'FLOATING', productModuleNumber: 'M-FLOAT', maxSessions: '3', price: '0.00', currency: 'EUR', automatic: 'false', hidden: 'false', hideLicenses: 'false' }),
      entity('LicenseTemplate', 'T-PPU', { name: 'credits', licenseType: 'QUANTITY', productModuleNumber: 'M-PPU', quantity: '100', price: '0.00', currency: 'EUR', automatic: 'false', hidden: 'false', hideLicenses: 'false' }),
      entity('Licensee', 'L-OPS', { productNumber: P }),
      entity('License', 'LIC-FLOAT', { name: 'seats', licenseeNumber: 'L-OPS', licenseTemplateNumber: 'T-FLOAT', maxSessions: '3' }),
      entity('License', 'LIC-PPU', { name: 'credits', licenseeNumber: 'L-OPS', licenseTemplateNumber: 'T-PPU', quantity: '100', usedQuantity: '10' }),
      entity('Token', API_KEY, { tokenType: 'APIKEY', apiKeyRole: 'ROLE_APIKEY_LICENSEE' }),
    ],
    { directory: dir },
  );
}

function expectOwnerOnly(databaseDir: string): void {
  expect(mode(databaseDir)).toBe('700');
  const files = readdirSync(databaseDir);
  expect(files.length).toBeGreaterThan(0);
  for (const file of files) expect(`${file} ${mode(join(databaseDir, file))}`).toBe(`${file} 600`);
}

describe('status action', () => {
  test('no database: exit 5 with a hint', async () => {
    const io = captureIo();
    expect(await runCli(['--action=status'], io, { cwd: tempDir() })).toBe(EXIT.store);
    expect(io.err).toContain('no database in');
    expect(io.err).toContain('--action=import-assets');
  });

  test('a database no import has completed in (a first import killed): no import, card mode not set yet', async () => {
    const cwd = tempDir();
    await openAssetStore(join(cwd, 'database'), { create: true }).close();
    const io = captureIo();
    expect(await runCli(['--action=status'], io, { cwd })).toBe(EXIT.ok);
    expect(io.out).toMatch(/^last import: +none \(run --action=import-assets\)$/m);
    expect(io.out).toMatch(/^card mode: +not set yet \(the first import sets it\)$/m);
  });

  test('a seeded database: version, import, counts, card mode, and loose permissions flagged', async () => {
    const { store, cwd } = seedStore(demoEntities());
    await store.close();
    chmodSync(join(cwd, 'database', 'data.mdb'), 0o644);
    const io = captureIo();
    expect(await runCli(['--action=status'], io, { cwd })).toBe(EXIT.ok);
    expect(io.out).toMatch(/^agent: +netlicensing-agent \d+\.\d+\.\d+ \(build /m);
    expect(io.out).toMatch(new RegExp(`^schema version: +${SCHEMA_VERSION}$`, 'm'));
    expect(io.out).toMatch(/^last import: +export test-export at 2026-01-01T00:00:00.000Z from test /m);
    expect(io.out).toMatch(/^licensees: +2 \(0 with runtime state\)$/m);
    expect(io.out).toMatch(/^floating sessions: +0 in use of 2 seat\(s\)$/m);
    expect(io.out).toMatch(/^journal: +0 entries$/m);
    expect(io.out).toMatch(/^card mode: +without card$/m);
    expect(io.out).toMatch(/^permissions: +WARNING readable by others: .*data\.mdb \(0644\)/m);
  });
});

describe('status of a card-bound database', () => {
  test('card mode names the card and its newest checkpoint (sequence, journal entry, counter, clock, attempts not stored)', async () => {
    const { store, cwd } = seedStore(demoEntities());
    store.importTransaction((tx) => tx.setMeta({ ...tx.meta(), withoutCard: false, cardSerial: 'D276000124010304000500001234' }));
    const fields = {
      databaseId: store.meta().databaseId,
      seq: 7,
      journalSeq: 42,
      journalHash: '0'.repeat(64),
      clockHighWaterMs: Date.parse('2026-11-15T12:00:00.000Z'),
      cardManufacturer: '0005',
      cardSerial: '00001234',
      cardCounter: 311,
    };
    await store.saveCardCheckpoint({
      payload: encodeCheckpointPayload(fields),
      signature: 'c2ln',
      cardCounter: 311,
      pending: [{ payload: encodeCheckpointPayload({ ...fields, seq: 8, cardCounter: 312 }), cardCounter: 312 }],
    });
    await store.close();
    const io = captureIo();
    expect(await runCli(['--action=status'], io, { cwd })).toBe(EXIT.ok);
    expect(io.out).toMatch(
      /^card mode: +smart card D276000124010304000500001234, newest checkpoint 7 \(journal entry 42, card signature counter 311, clock 2026-11-15T12:00:00.000Z, 1 attempt\(s\) after it not stored\)$/m,
    );
  });
});

describe('the agent binary entry point (src/main.ts)', () => {
  test('a second SIGTERM ends a shutdown that cannot finish (exit 143); the database is intact after it', async () => {
    const seeded = seedStore(demoEntities());
    await seeded.store.close();
    const agent = await startAgentChild(seeded.cwd, ['--admin.port=off']);
    // A request whose chunked body never ends: the drain waits for it (up to the idle timeout).
    const socket = await Bun.connect({ hostname: '127.0.0.1', port: agent.port, socket: { data() {} } });
    socket.write(
      `POST /rest/licensee/L-1/validate HTTP/1.1\r\nHost: agent\r\nAuthorization: ${apiKeyAuth()}\r\n` +
        'Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n',
    );
    try {
      await Bun.sleep(200);
      agent.proc.kill('SIGTERM');
      for (let i = 0; i < 100 && !agent.stderr().includes('stopping: draining'); i++) await Bun.sleep(50);
      expect(agent.stderr()).toContain('stopping: draining');
      await Bun.sleep(300);
      expect(agent.proc.exitCode).toBeNull(); // still waiting for the open request
      agent.proc.kill('SIGTERM');
      expect(await agent.proc.exited).toBe(128 + 15);
      expect(agent.stderr()).toContain('SIGTERM again: exiting without finishing the shutdown');
    } finally {
      socket.end();
      if (agent.proc.exitCode === null) agent.proc.kill('SIGKILL');
    }
    const verify = await runMain(seeded.cwd, ['--action=verify-database']);
    expect(verify.err).toBe('');
    expect(verify.code).toBe(EXIT.ok);
  }, 60_000);

  test('SIGINT drains: a write whose body is still arriving is answered, durable, and the agent exits 0', async () => {
    const seeded = seedStore(demoEntities());
    await seeded.store.close();
    const agent = await startAgentChild(seeded.cwd, ['--admin.port=off']);
    const body = 'productModuleNumber0=M-PPU&usedQuantity0=3';
    const connection = await connectRaw(agent.port);
    try {
      connection.socket.write(
        `POST /rest/licensee/L-1/validate HTTP/1.1\r\nHost: agent\r\nAuthorization: ${apiKeyAuth()}\r\nAccept: application/json\r\n` +
          `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`,
      );
      await Bun.sleep(200);
      agent.proc.kill('SIGINT');
      for (let i = 0; i < 100 && !agent.stderr().includes('stopping: draining'); i++) await Bun.sleep(50);
      expect(agent.stderr()).toContain('stopping: draining');
      expect(agent.proc.exitCode).toBeNull();
      connection.socket.write(body.slice(20));
      expect(await agent.proc.exited).toBe(EXIT.ok);
    } finally {
      connection.socket.end();
      if (agent.proc.exitCode === null) agent.proc.kill('SIGKILL');
    }
    expect(connection.received()).toStartWith('HTTP/1.1 200');
    expect(connection.received()).toContain('{"value":"32","name":"remainingQuantity"}');
    // Acknowledged before the exit, so in the database after it.
    const io = captureIo();
    expect(await runCli(['--action=status'], io, { cwd: seeded.cwd })).toBe(EXIT.ok);
    expect(io.out).toMatch(/^ +M-PPU: +3 of 35 used \(3 booked by the agent\)$/m);
    const verify = await runMain(seeded.cwd, ['--action=verify-database']);
    expect(verify.code).toBe(EXIT.ok);
  }, 60_000);

  test('import, run and backup leave the database owner-only; status reads it while the agent runs', async () => {
    const cwd = tempDir();
    const input = join(cwd, 'transfer');
    await writeExport(input);
    for (const file of readdirSync(input)) expect(`${file} ${mode(join(input, file))}`).toBe(`${file} 600`);

    const imported = await runMain(cwd, ['--action=import-assets', '--without-card', `--input=${input}`]);
    expect(imported.err).not.toContain('error');
    expect(imported.code).toBe(EXIT.ok);
    expectOwnerOnly(join(cwd, 'database'));

    // Default admin host is loopback; only the port is chosen here.
    const agent = await startAgentChild(cwd, ['--admin.port=0']);
    try {
      expect(agent.adminPort).toBeGreaterThan(0);
      expect(agent.stderr()).not.toContain('without TLS');
      const validate = (body: string) =>
        fetch(`http://127.0.0.1:${agent.port}/rest/licensee/L-OPS/validate`, {
          method: 'POST',
          headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded' },
          body,
        });
      for (const id of ['ws-1', 'ws-2']) expect((await validate(`productModuleNumber0=M-FLOAT&sessionId0=${id}&action0=checkOut`)).status).toBe(200);
      expect((await validate('productModuleNumber0=M-PPU&usedQuantity0=7')).status).toBe(200);
      const health = await fetch(`http://127.0.0.1:${agent.adminPort}/health`);
      expect(await health.json()).toEqual({ status: 'ok' });

      // Another process reads the live database. The agent copies acknowledged changes into it a few
      // ms later (store/runtime-writer.ts); its status page waits for that, so after it they are there.
      expect((await fetch(`http://127.0.0.1:${agent.adminPort}/status`)).status).toBe(200);
      const io = captureIo();
      expect(await runCli(['--action=status'], io, { cwd })).toBe(EXIT.ok);
      expect(io.out).toMatch(/^last import: +export 6f1c7a52-6c1e-4b8e-9d7e-0a2f3c4b5d6e at \S+ from https:\/\/go\.netlicensing\.io /m);
      expect(io.out).toMatch(/^licensees: +1 \(1 with runtime state\)$/m);
      expect(io.out).toMatch(/^floating sessions: +2 in use of 3 seat\(s\)$/m);
      expect(io.out).toMatch(/^ +M-FLOAT: +2 of 3$/m);
      expect(io.out).toMatch(/^ +M-PPU: +17 of 100 used \(7 booked by the agent\)$/m);
      expect(io.out).toMatch(/^journal: +3 entries, newest /m);
      expect(io.out).toMatch(/^permissions: +owner-only$/m);
      expectOwnerOnly(join(cwd, 'database'));
    } finally {
      expect(await agent.stop()).toBe(EXIT.ok);
    }

    const backup = await runMain(cwd, ['--action=backup', `--output=${join(cwd, 'copy')}`]);
    expect(backup.code).toBe(EXIT.ok);
    expectOwnerOnly(join(cwd, 'copy', 'database'));
  }, 60_000);

  test('--signing.key and --signing.algorithm sign every XML validate answer; a bad algorithm is a usage error', async () => {
    const { store, cwd } = seedStore(demoEntities());
    await store.close();
    const fixtures = join(import.meta.dir, '..', 'fixtures', 'xmldsig');
    const agent = await startAgentChild(cwd, ['--admin.port=off', `--signing.key=${join(fixtures, 'rsa_private.pem')}`, '--signing.algorithm=rsa-sha256']);
    try {
      const res = await fetch(`http://127.0.0.1:${agent.port}/rest/licensee/L-1/validate`, {
        method: 'POST',
        headers: { authorization: apiKeyAuth(), 'content-type': 'application/x-www-form-urlencoded' },
        body: 'productModuleNumber0=M-QUOTA',
      });
      const xml = await res.text();
      expect(xml).toContain('Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"');
      expect(verifyResponse(xml, readFileSync(join(fixtures, 'rsa_public.pem'), 'utf8'))).toBe(true);
    } finally {
      expect(await agent.stop()).toBe(EXIT.ok);
    }
    const io = captureIo();
    expect(await runCli(['--action=run-agent-offline', '--signing.algorithm=md5'], io, { cwd })).toBe(EXIT.usage);
    expect(io.err).toContain('--signing.algorithm');
  }, 60_000);

  test('--admin.port=off starts no admin listener; a bad admin port is a usage error', async () => {
    const { store, cwd } = seedStore(demoEntities());
    await store.close();
    const agent = await startAgentChild(cwd, ['--admin.port=off']);
    try {
      expect(agent.adminPort).toBeUndefined();
      expect((await fetch(`http://127.0.0.1:${agent.port}/health`)).status).toBe(200);
    } finally {
      expect(await agent.stop()).toBe(EXIT.ok);
    }
    const io = captureIo();
    expect(await runCli(['--action=run-agent-offline', '--admin.port=eighty'], io, { cwd })).toBe(EXIT.usage);
    expect(io.err).toContain('--admin.port must be a number from 0 to 65535 or "off"');
  }, 60_000);

  test('a busy admin port ends the start with exit 8 before anything says "listening"', async () => {
    const { store, cwd } = seedStore(demoEntities());
    await store.close();
    const busy = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('busy') });
    try {
      const io = captureIo();
      const code = await runCli(['--action=run-agent-offline', '--without-card', '--host=127.0.0.1', '--port=0', '--admin.host=127.0.0.1', `--admin.port=${busy.port}`], io, { cwd });
      expect(code).toBe(EXIT.server);
      expect(io.err).toContain('--admin.port');
      // A supervising script that waits for this line must not see it.
      expect(io.out).not.toContain('listening on');
    } finally {
      busy.stop(true);
    }
  }, 60_000);
});
