/**
 * Signed validate responses: an enveloped XML-Signature exactly in the
 * NetLicensing cloud profile (netlicensing-api.md §5.2, docs/signing.md), so
 * that the Java, C# and PHP clients accept it.
 *
 * Profile: unprefixed `Signature` (xmldsig is the root's default namespace) as
 * the first child of the root, inclusive C14N 1.0 #WithComments, one
 * Reference URI="" with only the enveloped-signature transform, RSA PKCS#1
 * v1.5 with SHA-1 (cloud default) or SHA-256, no KeyInfo.
 *
 * The digest input is rendered straight from the Envelope by
 * `canonicalEnvelope` (c14n.ts); tests/wire proves it byte-equal to what
 * xmlsec1 and xmllint compute from the `renderXml` output.
 *
 * Also here: a verifier for responses in this layout (for our tests and
 * tools), key parsing (PEM or the bare base64 body the cloud accepts), the
 * operator's key file, and the API-key token's `privateKey` property.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Envelope } from '../core/envelope.ts';
import { canonicalElement, canonicalEnvelope, parseXml, type XmlElement, namespacesInScope } from './c14n.ts';
import { CONTEXT_NS, renderXml, XMLDSIG_NS } from './xml.ts';

export type SigningAlgorithm = 'rsa-sha1' | 'rsa-sha256';
export const SIGNING_ALGORITHMS: readonly SigningAlgorithm[] = ['rsa-sha1', 'rsa-sha256'];

/** A private RSA key: a node KeyObject, a PEM text, or a bare base64 PKCS#8 body. */
export type SigningKey = KeyObject | string;
/** A public RSA key: KeyObject, SPKI PEM or its bare base64 body (a private key works too). */
export type VerifyingKey = KeyObject | string;

export const C14N_WITH_COMMENTS = 'http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments';
const C14N_OMIT_COMMENTS = 'http://www.w3.org/TR/2001/REC-xml-c14n-20010315';
export const ENVELOPED_SIGNATURE = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';

interface AlgorithmProfile {
  signatureMethod: string;
  digestMethod: string;
  /** node:crypto hash name. */
  hash: 'sha1' | 'sha256';
}

const PROFILES: Record<SigningAlgorithm, AlgorithmProfile> = {
  'rsa-sha1': {
    signatureMethod: 'http://www.w3.org/2000/09/xmldsig#rsa-sha1',
    digestMethod: 'http://www.w3.org/2000/09/xmldsig#sha1',
    hash: 'sha1',
  },
  'rsa-sha256': {
    signatureMethod: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    digestMethod: 'http://www.w3.org/2001/04/xmlenc#sha256',
    hash: 'sha256',
  },
};

export function parseSigningAlgorithm(value: string): SigningAlgorithm | undefined {
  return (SIGNING_ALGORITHMS as readonly string[]).includes(value) ? (value as SigningAlgorithm) : undefined;
}

// XML 1.0 Char production; anything else (control characters, lone
// surrogates, U+FFFE/U+FFFF) cannot be carried by an XML document at all, so
// no client could parse, let alone verify, the response.
const NOT_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

function assertXmlText(value: string, where: string): void {
  const bad = NOT_XML_CHAR.exec(value);
  if (bad) {
    const code = bad[0].codePointAt(0) ?? 0;
    throw new Error(`cannot sign: ${where} contains U+${code.toString(16).toUpperCase().padStart(4, '0')}, which XML 1.0 cannot carry`);
  }
}

// renderXml writes ttl and paging values without escaping (they are ISO
// dates and numbers); one of these would break the document it signs.
const UNESCAPED_ATTRIBUTE_HAZARD = /[&<"\t\n\r]/;

function assertPlainAttribute(value: string, where: string): void {
  assertXmlText(value, where);
  if (UNESCAPED_ATTRIBUTE_HAZARD.test(value)) throw new Error(`cannot sign: ${where} ${JSON.stringify(value)} needs escaping`);
}

function assertEnvelopeIsXml(envelope: Envelope): void {
  if (envelope.id !== undefined) assertXmlText(envelope.id, 'the response id');
  if (envelope.ttl !== undefined) assertPlainAttribute(envelope.ttl, 'the ttl');
  if (envelope.paging) for (const v of Object.values(envelope.paging)) assertPlainAttribute(v, 'a paging attribute');
  for (const info of envelope.infos) {
    assertXmlText(info.id, 'an info id');
    assertXmlText(info.value, `info ${info.id}`);
  }
  const walk = (type: string, props: ReadonlyArray<readonly [string, string]>, lists: Envelope['items'][number]['lists']): void => {
    assertXmlText(type, 'an item type or list name');
    for (const [name, value] of props) {
      assertXmlText(name, 'a property name');
      assertXmlText(value, `property ${name}`);
    }
    for (const list of lists) walk(list.name, list.properties, list.lists);
  };
  for (const item of envelope.items) walk(item.type, item.properties, item.lists);
}

function signedInfoXml(profile: AlgorithmProfile, digest: string, canonical: boolean): string {
  // The serialised form uses empty-element tags like the cloud (JAXB); the
  // canonical form expands them and carries the root's namespaces.
  const empty = (name: string, algorithm: string): string =>
    canonical ? `<${name} Algorithm="${algorithm}"></${name}>` : `<${name} Algorithm="${algorithm}"/>`;
  const open = canonical
    ? `<SignedInfo xmlns="${XMLDSIG_NS}" xmlns:ns2="${CONTEXT_NS}">`
    : '<SignedInfo>';
  return (
    open +
    empty('CanonicalizationMethod', C14N_WITH_COMMENTS) +
    empty('SignatureMethod', profile.signatureMethod) +
    '<Reference URI=""><Transforms>' +
    empty('Transform', ENVELOPED_SIGNATURE) +
    '</Transforms>' +
    empty('DigestMethod', profile.digestMethod) +
    `<DigestValue>${digest}</DigestValue></Reference></SignedInfo>`
  );
}

/** The Reference digest (base64) of the response for `envelope`. */
export function responseDigest(envelope: Envelope, algorithm: SigningAlgorithm = 'rsa-sha1'): string {
  return createHash(PROFILES[algorithm].hash).update(canonicalEnvelope(envelope), 'utf8').digest('base64');
}

/**
 * The `<Signature>` element for `envelope` (to be placed as first child of the
 * root by `renderXml`).
 */
export function signatureElement(envelope: Envelope, key: SigningKey, algorithm: SigningAlgorithm = 'rsa-sha1'): string {
  assertEnvelopeIsXml(envelope);
  const profile = PROFILES[algorithm];
  const digest = responseDigest(envelope, algorithm);
  const signedInfo = Buffer.from(signedInfoXml(profile, digest, true), 'utf8');
  const value = sign(profile.hash, signedInfo, toPrivateKey(key)).toString('base64');
  return `<Signature>${signedInfoXml(profile, digest, false)}<SignatureValue>${value}</SignatureValue></Signature>`;
}

/** The complete signed XML response text for `envelope`. */
export function signResponse(envelope: Envelope, key: SigningKey, algorithm: SigningAlgorithm = 'rsa-sha1'): string {
  return renderXml(envelope, signatureElement(envelope, key, algorithm));
}

// ---------------------------------------------------------------------------
// Keys

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/;

function base64Body(body: string): Buffer[] {
  // Line breaks (LF or CRLF, as keys pasted on Windows carry) are layout.
  // A space inside a base64 body is either layout too or a '+' that
  // form-decoding turned into a space: try both.
  const compact = body.replace(/[\r\n\t]/g, '');
  const variants = new Set([compact.replace(/ /g, ''), compact.replace(/ /g, '+')]);
  const out: Buffer[] = [];
  for (const v of variants) {
    if (/^[A-Za-z0-9+/]+={0,2}$/.test(v)) out.push(Buffer.from(v, 'base64'));
  }
  return out;
}

function firstKey<T>(attempts: Array<() => T>): T | undefined {
  for (const attempt of attempts) {
    try {
      return attempt();
    } catch {
      // next interpretation
    }
  }
  return undefined;
}

function requireRsa(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'rsa') {
    throw new Error(`${what} is a ${key.asymmetricKeyType ?? 'non-asymmetric'} key; NetLicensing signatures need RSA`);
  }
  return key;
}

/**
 * Parses a private RSA key: PKCS#8 PEM (`BEGIN PRIVATE KEY`), PKCS#1 PEM
 * (`BEGIN RSA PRIVATE KEY`), or the bare base64 body without header, footer or
 * line breaks, which the cloud accepts on upload. Throws when it is none of these.
 */
export function parsePrivateKey(text: string): KeyObject {
  const pem = PEM_BLOCK.exec(text);
  const label = pem?.[1];
  const bodies = base64Body((pem?.[2] ?? text).trim());
  const attempts: Array<() => KeyObject> = [];
  for (const der of bodies) {
    if (label === undefined || label === 'PRIVATE KEY') attempts.push(() => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
    if (label === undefined || label === 'RSA PRIVATE KEY') attempts.push(() => createPrivateKey({ key: der, format: 'der', type: 'pkcs1' }));
  }
  const key = firstKey(attempts);
  if (!key) {
    throw new Error(
      label !== undefined && label !== 'PRIVATE KEY' && label !== 'RSA PRIVATE KEY'
        ? `expected a PKCS#8 private key (BEGIN PRIVATE KEY), found BEGIN ${label}`
        : 'not a readable RSA private key (expected PKCS#8 PEM or its base64 body)',
    );
  }
  return requireRsa(key, 'the private key');
}

/** Parses a public RSA key: SPKI PEM, PKCS#1 `RSA PUBLIC KEY` PEM, bare SPKI base64, or a private key. */
export function parsePublicKey(text: string): KeyObject {
  const pem = PEM_BLOCK.exec(text);
  const label = pem?.[1];
  if (label !== undefined && label.includes('PRIVATE')) return createPublicKey(parsePrivateKey(text));
  const attempts: Array<() => KeyObject> = [];
  for (const der of base64Body((pem?.[2] ?? text).trim())) {
    if (label === undefined || label === 'PUBLIC KEY') attempts.push(() => createPublicKey({ key: der, format: 'der', type: 'spki' }));
    if (label === undefined || label === 'RSA PUBLIC KEY') attempts.push(() => createPublicKey({ key: der, format: 'der', type: 'pkcs1' }));
  }
  if (label === undefined) attempts.push(() => createPublicKey(parsePrivateKey(text)));
  const key = firstKey(attempts);
  if (!key) throw new Error('not a readable RSA public key (expected SPKI PEM or its base64 body)');
  return requireRsa(key, 'the public key');
}

function toPrivateKey(key: SigningKey): KeyObject {
  if (typeof key === 'string') return parsePrivateKey(key);
  if (key.type !== 'private') throw new Error('signing needs a private key');
  return requireRsa(key, 'the signing key');
}

function toPublicKey(key: VerifyingKey): KeyObject {
  if (typeof key === 'string') return parsePublicKey(key);
  return requireRsa(key.type === 'private' ? createPublicKey(key) : key, 'the verifying key');
}

/**
 * Loads the operator's signing key file (`--signing.key=<pem>`). Errors are
 * CLI errors with the server exit code, like unreadable TLS files.
 */
export function loadSigningKeyFile(path: string): KeyObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read signing key file ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    return parsePrivateKey(text);
  } catch (error) {
    throw new Error(`signing key file ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Name of the API-key token property that holds the vendor's PKCS#8 key (netlicensing-api.md §5.1). */
export const TOKEN_PRIVATE_KEY = 'privateKey';

const tokenKeyCache = new Map<string, KeyObject>();
const TOKEN_KEY_CACHE_LIMIT = 64;

/**
 * The signing key attached to an API-key token, or undefined when the token
 * has none (then the cloud answers unsigned). A present but unreadable key
 * throws: answering unsigned would make every verifying client fail with a
 * less helpful "Bad or empty response signature".
 *
 * Whether to sign at all is the caller's decision; the cloud signs only a
 * validate call, authenticated by API key, answered in XML (see
 * `shouldSignResponse`).
 */
export function signingKeyFromToken(tokenProps: Readonly<Record<string, string>>): KeyObject | undefined {
  const text = tokenProps[TOKEN_PRIVATE_KEY];
  if (text === undefined || text.trim() === '') return undefined;
  const cached = tokenKeyCache.get(text);
  if (cached) return cached;
  const key = parsePrivateKey(text);
  if (tokenKeyCache.size >= TOKEN_KEY_CACHE_LIMIT) {
    const oldest = tokenKeyCache.keys().next();
    if (!oldest.done) tokenKeyCache.delete(oldest.value);
  }
  tokenKeyCache.set(text, key);
  return key;
}

// ---------------------------------------------------------------------------
// Verification (our layout; xmlsec1 is the independent check in tests/wire)

function elementChildren(element: XmlElement): XmlElement[] {
  return element.children.filter((c): c is XmlElement => typeof c !== 'string');
}

function localName(element: XmlElement): string {
  const colon = element.name.indexOf(':');
  return colon < 0 ? element.name : element.name.slice(colon + 1);
}

function namespaceOf(element: XmlElement): string | undefined {
  const colon = element.name.indexOf(':');
  return namespacesInScope(element).get(colon < 0 ? '' : element.name.slice(0, colon));
}

function dsigChild(element: XmlElement, name: string): XmlElement | undefined {
  const matches = elementChildren(element).filter((c) => localName(c) === name && namespaceOf(c) === XMLDSIG_NS);
  return matches.length === 1 ? matches[0] : undefined;
}

function attribute(element: XmlElement, name: string): string | undefined {
  return element.attributes.find(([n]) => n === name)?.[1];
}

function textOf(element: XmlElement): string {
  return element.children.filter((c): c is string => typeof c === 'string').join('');
}

function findAll(element: XmlElement, predicate: (e: XmlElement) => boolean, out: XmlElement[] = []): XmlElement[] {
  if (predicate(element)) out.push(element);
  for (const child of elementChildren(element)) findAll(child, predicate, out);
  return out;
}

/**
 * Checks an enveloped signature of the cloud profile (either algorithm)
 * against `publicKey`: exactly one Signature, a child of the root; one
 * Reference URI="" with the enveloped-signature transform; inclusive C14N.
 * Returns false for anything else, including malformed XML; throws only
 * when `publicKey` itself is unreadable.
 */
export function verifyResponse(xml: string, publicKey: VerifyingKey): boolean {
  const key = toPublicKey(publicKey);
  try {
    const root = parseXml(xml);
    const signatures = findAll(root, (e) => localName(e) === 'Signature' && namespaceOf(e) === XMLDSIG_NS);
    const signature = signatures[0];
    if (signatures.length !== 1 || !signature || signature.parent !== root) return false;
    const signedInfo = dsigChild(signature, 'SignedInfo');
    const signatureValue = dsigChild(signature, 'SignatureValue');
    if (!signedInfo || !signatureValue) return false;

    const c14n = dsigChild(signedInfo, 'CanonicalizationMethod');
    const c14nAlgorithm = c14n && attribute(c14n, 'Algorithm');
    if (c14nAlgorithm !== C14N_WITH_COMMENTS && c14nAlgorithm !== C14N_OMIT_COMMENTS) return false;
    const method = dsigChild(signedInfo, 'SignatureMethod');
    const profile = Object.values(PROFILES).find((p) => method && p.signatureMethod === attribute(method, 'Algorithm'));
    if (!profile) return false;

    const references = elementChildren(signedInfo).filter((c) => localName(c) === 'Reference');
    const reference = references[0];
    if (references.length !== 1 || !reference || attribute(reference, 'URI') !== '') return false;
    const transforms = dsigChild(reference, 'Transforms');
    const transformList = transforms ? elementChildren(transforms) : [];
    const first = transformList[0];
    const allowedTransforms = transformList.every((t, i) =>
      i === 0 ? attribute(t, 'Algorithm') === ENVELOPED_SIGNATURE : [C14N_OMIT_COMMENTS, C14N_WITH_COMMENTS].includes(attribute(t, 'Algorithm') ?? ''),
    );
    if (!first || !allowedTransforms) return false;
    const digestMethod = dsigChild(reference, 'DigestMethod');
    const digestProfile = Object.values(PROFILES).find((p) => digestMethod && p.digestMethod === attribute(digestMethod, 'Algorithm'));
    const digestValue = dsigChild(reference, 'DigestValue');
    if (!digestProfile || !digestValue) return false;

    // URI="" removes comments; the parser admits none anyway.
    const digest = createHash(digestProfile.hash).update(canonicalElement(root, signature), 'utf8').digest();
    if (!digest.equals(Buffer.from(textOf(digestValue).replace(/\s/g, ''), 'base64'))) return false;

    const signedBytes = Buffer.from(canonicalElement(signedInfo), 'utf8');
    const value = Buffer.from(textOf(signatureValue).replace(/\s/g, ''), 'base64');
    return verify(profile.hash, signedBytes, key, value);
  } catch {
    return false;
  }
}
