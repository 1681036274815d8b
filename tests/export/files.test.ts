/**
 * Goal: what export-assets writes: the export split over several transfer
 * files when they would grow too large, the card binding in the header, and
 * the vendor's credentials only as a salted scrypt hash (never the password).
 * Method: the export pipeline (exportAssets → writeTransferFiles) and the CLI
 * against the stand-in cloud; the files are inspected as text (item types and
 * header properties), the hash is checked with the server's verifyCredential.
 */
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CliIo } from '../../src/cli/actions.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { runCli } from '../../src/cli/run.ts';
import type { Entity } from '../../src/core/entities.ts';
import { exportAssets } from '../../src/export/export-assets.ts';
import { NetLicensingRestClient } from '../../src/export/netlicensing-rest.ts';
import { verifyCredential } from '../../src/platform/credentials.ts';
import { writeTransferFiles } from '../../src/transfer/writer.ts';
import { tempDir } from '../helpers.ts';
import {
  LICENSING_MODELS,
  STANDIN_API_KEY,
  STANDIN_LICENSEES,
  STANDIN_VENDOR,
  expectedExport,
  startStandinCloud,
  type StandinCloud,
} from '../support/standin-cloud.ts';

let cloud: StandinCloud;
beforeEach(async () => {
  cloud = await startStandinCloud();
});
afterEach(async () => {
  await cloud.stop();
});

const ALL = LICENSING_MODELS.map((model) => STANDIN_LICENSEES[model]);

function quietIo(): CliIo & { out: string; err: string } {
  const io = {
    out: '',
    err: '',
    stdout: (text: string) => void (io.out += text),
    stderr: (text: string) => void (io.err += text),
    isTTY: false,
    env: {},
  };
  return io;
}

/** `<property name="…">…</property>` of the header item (first item) of a transfer file. */
function headerProperty(text: string, name: string): string | undefined {
  const header = text.slice(0, text.indexOf('</item>'));
  const match = new RegExp(`<property name="${name}">([^<]*)</property>`).exec(header);
  return match?.[1];
}

function itemTypes(text: string): string[] {
  return [...text.matchAll(/^ {2}<item type="(\w+)">$/gm)].map((m) => m[1]!);
}

describe('split files', () => {
  test('a small maxFileBytes spreads the export over several numbered files, nothing lost, order kept', async () => {
    const client = new NetLicensingRestClient({
      baseUrl: cloud.url,
      credentials: { kind: 'basic', username: STANDIN_VENDOR.username, password: STANDIN_VENDOR.password },
    });
    const { entities } = exportAssets(client, { licensees: ALL });
    const collected: Entity[] = [];
    for await (const entity of entities) collected.push(entity);
    const directory = tempDir('nla-export-split-');
    const result = await writeTransferFiles(
      { exportId: 'split-test', createdAt: '2026-01-15T12:00:00.000Z', sourceHost: cloud.url, licensees: ALL },
      collected,
      { directory, maxFileBytes: 4_000 },
    );
    expect(result.files.length).toBeGreaterThan(3);
    expect(result.entities).toBe(expectedExport().length);
    expect(readdirSync(directory).sort()).toEqual(
      result.files.map((_, i) => `${i + 1}_netlicensing-assets.xml`).sort(),
    );
    const types = result.files.flatMap((file) => {
      const text = readFileSync(file, 'utf8');
      expect(headerProperty(text, 'files')?.trim()).toBe(String(result.files.length));
      return itemTypes(text).filter((type) => type !== 'TransferHeader' && type !== 'TransferDigest');
    });
    expect(types).toEqual(collected.map((e) => e.kind));
  });
});

describe('header written by the CLI', () => {
  test('username/password: bound to the card, credentials only as a verifiable salted hash', async () => {
    const cwd = tempDir('nla-export-header-');
    const io = quietIo();
    const code = await runCli(
      [
        '--action=export-assets',
        `--core.base.host=${cloud.url}`,
        `--nlic.username=${STANDIN_VENDOR.username}`,
        `--nlic.password=${STANDIN_VENDOR.password}`,
        '--licensees=L-QUOTA',
        '--serial-number=CARD-0042',
      ],
      io,
      { cwd },
    );
    expect(io.err).toBe('');
    expect(code).toBe(EXIT.ok);
    const text = readFileSync(join(cwd, '1_netlicensing-assets.xml'), 'utf8');
    expect(headerProperty(text, 'cardSerial')).toBe('CARD-0042');
    expect(headerProperty(text, 'withoutCard')).toBeUndefined();
    expect(headerProperty(text, 'sourceHost')).toBe(cloud.url);
    expect(headerProperty(text, 'licensees')).toBe('["L-QUOTA"]');
    const stored = {
      user: headerProperty(text, 'vendorUser')!,
      salt: headerProperty(text, 'vendorSalt')!,
      hash: headerProperty(text, 'vendorHash')!,
    };
    expect(stored.user).toBe(STANDIN_VENDOR.username);
    expect(await verifyCredential(stored, STANDIN_VENDOR.username, STANDIN_VENDOR.password)).toBe(true);
    expect(await verifyCredential(stored, STANDIN_VENDOR.username, 'wrong')).toBe(false);
    expect(text).not.toContain(STANDIN_VENDOR.password);
    expect(text).not.toContain('pässword');
  });

  test('API key, without card: no vendor credentials, marked without card', async () => {
    const cwd = tempDir('nla-export-header-');
    const io = quietIo();
    const code = await runCli(
      [
        '--action=export-assets',
        `--core.base.host=${cloud.url}`,
        `--nlic.apikey=${STANDIN_API_KEY}`,
        '--licensees=L-QUOTA',
        '--without-card',
      ],
      io,
      { cwd },
    );
    expect(code).toBe(EXIT.ok);
    const text = readFileSync(join(cwd, '1_netlicensing-assets.xml'), 'utf8');
    expect(headerProperty(text, 'withoutCard')).toBe('true');
    expect(headerProperty(text, 'cardSerial')).toBeUndefined();
    expect(headerProperty(text, 'vendorUser')).toBeUndefined();
    expect(headerProperty(text, 'vendorHash')).toBeUndefined();
  });
});
