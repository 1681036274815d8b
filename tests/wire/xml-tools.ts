/**
 * Test helpers that run the independent XML tools: xmlsec1 (XML-Signature
 * verification, and its view of the canonical bytes it digests and verifies)
 * and xmllint (libxml2's C14N). A missing tool is a test failure with an
 * install hint, never a skip.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers.ts';

const INSTALL_HINT: Record<string, string> = {
  xmlsec1: 'install the Debian package xmlsec1 (apt-get install xmlsec1; .ci/run does this)',
  xmllint: 'install the Debian package libxml2-utils (apt-get install libxml2-utils)',
};

export function requireTool(name: 'xmlsec1' | 'xmllint'): string {
  const path = Bun.which(name);
  if (!path) throw new Error(`${name} is not installed: ${INSTALL_HINT[name]}`);
  return path;
}

let dir: string | undefined;
let counter = 0;
export function writeTemp(name: string, content: string | Uint8Array): string {
  dir ??= tempDir('nla-xmldsig-');
  const path = join(dir, `${counter++}-${name}`);
  writeFileSync(path, content);
  return path;
}

function run(argv: string[]): { code: number; stdout: string; stderr: string } {
  const proc = Bun.spawnSync(argv, { stdout: 'pipe', stderr: 'pipe' });
  return { code: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

let laxFlag: string[] | undefined;
/**
 * xmlsec1 >= 1.3.0 uses only keys referenced from KeyInfo ("strict key
 * search") unless told `--lax-key-search`; our signatures have no KeyInfo,
 * like the cloud's. 1.2.x has no such option and always searches laxly.
 */
export function xmlsecKeySearchFlags(): string[] {
  if (laxFlag) return laxFlag;
  const help = run([requireTool('xmlsec1'), '--help-verify']);
  laxFlag = `${help.stdout}${help.stderr}`.includes('--lax-key-search') ? ['--lax-key-search'] : [];
  return laxFlag;
}

export function xmlsecVersion(): string {
  return run([requireTool('xmlsec1'), '--version']).stdout.trim();
}

export interface XmlsecResult {
  ok: boolean;
  code: number;
  output: string;
  /** The bytes xmlsec1 fed into the Reference digest (after the transforms and C14N). */
  preDigest?: string;
  /** The canonical SignedInfo bytes xmlsec1 verified the RSA signature over. */
  preSigned?: string;
}

function between(text: string, start: string, end: string): string | undefined {
  const a = text.indexOf(start);
  if (a < 0) return undefined;
  const b = text.indexOf(end, a + start.length);
  return b < 0 ? undefined : text.slice(a + start.length, b);
}

/** `xmlsec1 --verify --pubkey-pem <pub> <file>` (plus --store-references/--store-signatures). */
export function xmlsecVerify(xml: string, publicKeyPem: string): XmlsecResult {
  const file = writeTemp('response.xml', xml);
  const key = writeTemp('public.pem', publicKeyPem);
  const result = run([
    requireTool('xmlsec1'),
    '--verify',
    ...xmlsecKeySearchFlags(),
    '--store-references',
    '--store-signatures',
    '--pubkey-pem',
    key,
    file,
  ]);
  const output = `${result.stdout}\n${result.stderr}`;
  return {
    ok: result.code === 0 && /^OK$/m.test(result.stderr + result.stdout),
    code: result.code,
    output,
    preDigest: between(result.stdout, '== PreDigest data - start buffer:\n', '\n== PreDigest data - end buffer'),
    preSigned: between(result.stdout, '== PreSigned data - start buffer:\n', '\n== PreSigned data - end buffer'),
  };
}

/** libxml2's inclusive C14N 1.0 (without comments) of a document. */
export function xmllintC14n(xml: string): string {
  const file = writeTemp('doc.xml', xml);
  const result = run([requireTool('xmllint'), '--c14n', file]);
  if (result.code !== 0) throw new Error(`xmllint --c14n failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}
