/**
 * Goal: prove that signed validate responses are exactly what the NetLicensing
 * cloud sends and what real verifiers accept.
 *
 * Method:
 * 1. The real cloud-signed sample (Isb-DEMO): rebuild its Envelope, reproduce
 *    its digest, its bytes and — with the public Labs64 demo key pair — its
 *    SignatureValue byte for byte; verify it with xmlsec1 and our verifier.
 * 2. Independent verifier: xmlsec1 (libxmlsec1/OpenSSL) must accept responses
 *    signed with a key generated here, for rsa-sha1 and rsa-sha256 and for
 *    envelopes with special characters, CR, lists, paging and non-ASCII text,
 *    and must reject tampered ones. Its dump of the bytes it digested and
 *    verified must equal our canonical renderings.
 * 3. C14N: our canonical renderer against libxml2 (`xmllint --c14n`), on fixed
 *    cases and on random envelopes (fast-check).
 * 4. Keys: the formats the cloud accepts, the token rule, the key file.
 */
import { describe, expect, test } from 'bun:test';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { SHARED_FIXTURES } from '../helpers.ts';
import type { Envelope, WireItem, WireList } from '../../src/core/envelope.ts';
import { c14nAttribute, c14nText, canonicalElement, canonicalEnvelope, parseXml } from '../../src/wire/c14n.ts';
import { renderXml, XML_DECLARATION } from '../../src/wire/xml.ts';
import {
  loadSigningKeyFile,
  parsePrivateKey,
  parsePublicKey,
  responseDigest,
  signatureElement,
  signingKeyFromToken,
  signResponse,
  type SigningAlgorithm,
  verifyResponse,
} from '../../src/wire/xmldsig.ts';
import { writeTemp, xmllintC14n, xmlsecVerify, xmlsecVersion } from './xml-tools.ts';

const FIXTURES = join(import.meta.dir, '../fixtures/xmldsig');
const SAMPLE_PATH = join(SHARED_FIXTURES, 'xml/real/Isb-DEMO.signed-validate-subscription.xml');
const sample = readFileSync(SAMPLE_PATH, 'utf8');
const demoPrivatePem = readFileSync(join(FIXTURES, 'rsa_private.pem'), 'utf8');
const demoPublicPem = readFileSync(join(FIXTURES, 'rsa_public.pem'), 'utf8');
const wrongPublicPem = readFileSync(join(FIXTURES, 'rsa_public_wrong.pem'), 'utf8');
const mismatch = readFileSync(join(FIXTURES, 'xml-signed-nlic-02-mismatch.xml'), 'utf8');

const sampleEnvelope: Envelope = {
  ttl: '2020-12-28T22:53:06.681Z',
  infos: [],
  items: [
    {
      type: 'ProductModuleValidation',
      properties: [
        ['productModuleNumber', 'Msb-DEMO'],
        ['valid', 'true'],
        ['expires', '2021-04-21T20:15:45.694Z'],
        ['productModuleName', 'Module using "Subscription" licensing model'],
        ['licensingModel', 'Subscription'],
      ],
      lists: [],
    },
  ],
};

function pmv(number: string, properties: Array<readonly [string, string]> = [], lists: WireList[] = []): WireItem {
  return { type: 'ProductModuleValidation', properties: [['productModuleNumber', number], ...properties], lists };
}

const ENVELOPES: Record<string, Envelope> = {
  'infos with & < > " and CR': {
    ttl: '2030-01-01T00:00:00.000Z',
    infos: [
      {
        id: 'Warn & <id> "q"\ttab\nlf\rcr',
        type: 'WARNING',
        value: 'a & b < c > d "quoted" \'apos\' CR\r CRLF\r\n tab\t ]]> &amp; literal',
      },
      { id: 'NotFoundException', type: 'ERROR', value: 'Licensee <L1> not found' },
      { id: 'plain', type: 'INFO', value: '' },
    ],
    items: [pmv('M1', [['valid', 'false']])],
  },
  'lists, nested lists and paging': {
    ttl: '2030-01-01T00:00:00.000Z',
    paging: { pagenumber: '0', itemsnumber: '2', totalpages: '1', totalitems: '2', hasnext: 'false' },
    infos: [],
    items: [
      pmv(
        'MF1',
        [
          ['valid', 'true'],
          ['licensingModel', 'MultiFeature'],
        ],
        [
          {
            name: 'feature "A" & <B>',
            properties: [
              ['featureName', 'A > B\r\n'],
              ['valid', 'true'],
            ],
            lists: [{ name: 'inner', properties: [['x', '\t']], lists: [] }],
          },
          { name: 'empty', properties: [], lists: [] },
        ],
      ),
      pmv('Q1', [['remainingQuantity', '5']]),
    ],
  },
  'non-ASCII text and names': {
    id: 'réq-日本',
    ttl: '2030-01-01T00:00:00.000Z',
    infos: [{ id: 'Überprüfung', type: 'INFO', value: 'Grüße € 日本語 😀 \u0085 \u2028 \uFEFF' }],
    items: [pmv('Ä1', [['productModuleName', 'Модуль «Подписка» 🎫']])],
  },
  'empty, no ttl': { infos: [], items: [] },
};

function generateRsa(): { privateKey: KeyObject; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

const testKey = generateRsa();
const otherKey = generateRsa();
const ALGORITHMS: SigningAlgorithm[] = ['rsa-sha1', 'rsa-sha256'];

function signatureOf(xml: string): string {
  const start = xml.indexOf('<Signature>');
  const end = xml.indexOf('</Signature>') + '</Signature>'.length;
  if (start < 0 || end < start) throw new Error('no Signature element');
  return xml.slice(start, end);
}

function canonicalSignedInfo(signed: string): string {
  const root = parseXml(signed);
  const signature = root.children.find((c) => typeof c !== 'string' && c.name === 'Signature');
  const signedInfo = typeof signature === 'object' ? signature.children[0] : undefined;
  if (typeof signedInfo !== 'object') throw new Error('no SignedInfo');
  return canonicalElement(signedInfo);
}

describe('the real cloud-signed sample (Isb-DEMO)', () => {
  test('its digest is reproduced from the Envelope', () => {
    expect(responseDigest(sampleEnvelope, 'rsa-sha1')).toBe('ICC1F7ZKeQoayrzn1iGtw7Zt96s=');
  });

  test('renderXml with the sample Signature inserted equals the sample byte for byte', () => {
    const rendered = renderXml(sampleEnvelope, signatureOf(sample));
    expect(Buffer.from(rendered, 'utf8').equals(readFileSync(SAMPLE_PATH))).toBe(true);
  });

  test('signing with the public demo key recreates the sample byte for byte', () => {
    const signed = signResponse(sampleEnvelope, demoPrivatePem, 'rsa-sha1');
    expect(Buffer.from(signed, 'utf8').equals(readFileSync(SAMPLE_PATH))).toBe(true);
  });

  test('our verifier accepts it with the demo public key and rejects the wrong key and the mismatch file', () => {
    expect(verifyResponse(sample, demoPublicPem)).toBe(true);
    expect(verifyResponse(sample, wrongPublicPem)).toBe(false);
    expect(verifyResponse(mismatch, demoPublicPem)).toBe(false);
  });

  test('xmlsec1 accepts it, digests exactly our canonical bytes, and rejects the wrong key and the mismatch file', () => {
    const good = xmlsecVerify(sample, demoPublicPem);
    expect(good.ok, good.output).toBe(true);
    expect(good.preDigest).toBe(canonicalEnvelope(sampleEnvelope));
    expect(good.preSigned).toBe(canonicalSignedInfo(sample));
    const wrongKey = xmlsecVerify(sample, wrongPublicPem);
    expect(wrongKey.ok).toBe(false);
    expect(wrongKey.output).toContain('signature verification failed');
    const tampered = xmlsecVerify(mismatch, demoPublicPem);
    expect(tampered.ok).toBe(false);
    expect(tampered.code).not.toBe(0);
  });

  test('the demo key files are the pair that signed the sample', () => {
    const derived = parsePublicKey(demoPrivatePem).export({ type: 'spki', format: 'pem' }).toString();
    expect(derived).toBe(demoPublicPem);
  });
});

describe('xmlsec1 verifies what we sign (independent verifier)', () => {
  test('xmlsec1 is installed', () => {
    // Recorded in the test output for the report; fails with an install hint when missing.
    expect(xmlsecVersion()).toMatch(/^xmlsec1 \d+\.\d+/);
  });

  for (const algorithm of ALGORITHMS) {
    for (const [name, envelope] of Object.entries(ENVELOPES)) {
      test(`${algorithm}: ${name} — accepted, digest and SignedInfo bytes equal ours`, () => {
        const signed = signResponse(envelope, testKey.privateKey, algorithm);
        const result = xmlsecVerify(signed, testKey.publicPem);
        expect(result.ok, result.output).toBe(true);
        expect(result.output).toContain(`Transform: ${algorithm} `);
        expect(result.preDigest).toBe(canonicalEnvelope(envelope));
        expect(result.preSigned).toBe(canonicalSignedInfo(signed));
        expect(verifyResponse(signed, testKey.publicPem)).toBe(true);
      });
    }

    test(`${algorithm}: a changed value, a changed signature and a wrong key are rejected`, () => {
      const envelope = ENVELOPES['infos with & < > " and CR'] as Envelope;
      const signed = signResponse(envelope, testKey.privateKey, algorithm);
      expect(signed).toContain('<ns2:property name="valid">false</ns2:property>');

      const changedValue = signed.replace('<ns2:property name="valid">false<', '<ns2:property name="valid">true<');
      const byValue = xmlsecVerify(changedValue, testKey.publicPem);
      expect(byValue.ok).toBe(false);
      expect(byValue.output).toMatch(/FAIL|failed/);
      expect(verifyResponse(changedValue, testKey.publicPem)).toBe(false);

      // A CR is data: dropping its reference changes the signed content too.
      const changedCr = signed.replace('CR&#xD;', 'CR');
      expect(changedCr).not.toBe(signed);
      expect(xmlsecVerify(changedCr, testKey.publicPem).ok).toBe(false);
      expect(verifyResponse(changedCr, testKey.publicPem)).toBe(false);

      const value = /<SignatureValue>([^<]+)</.exec(signed)?.[1] ?? '';
      const flipped = `${value[0] === 'A' ? 'B' : 'A'}${value.slice(1)}`;
      const changedSignature = signed.replace(value, flipped);
      expect(xmlsecVerify(changedSignature, testKey.publicPem).ok).toBe(false);
      expect(verifyResponse(changedSignature, testKey.publicPem)).toBe(false);

      expect(xmlsecVerify(signed, otherKey.publicPem).ok).toBe(false);
      expect(verifyResponse(signed, otherKey.publicPem)).toBe(false);
    });
  }
});

describe('signed response layout', () => {
  test('cloud profile: unprefixed Signature first, c14n#WithComments, one Reference URI="", no KeyInfo', () => {
    const signed = signResponse(ENVELOPES['lists, nested lists and paging'] as Envelope, testKey.privateKey);
    expect(signed.startsWith(`${XML_DECLARATION}<ns2:netlicensing xmlns="http://www.w3.org/2000/09/xmldsig#" xmlns:ns2="http://netlicensing.labs64.com/schema/context" ttl="2030-01-01T00:00:00.000Z"><Signature><SignedInfo><CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"/><SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/><Reference URI=""><Transforms><Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/></Transforms><DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/><DigestValue>`)).toBe(true);
    expect(signed).toMatch(/<\/DigestValue><\/Reference><\/SignedInfo><SignatureValue>[A-Za-z0-9+/]{342}==<\/SignatureValue><\/Signature><ns2:infos\/><ns2:items /);
    expect(signed).not.toContain('KeyInfo');
    expect(signed.match(/<Signature>/g)?.length).toBe(1);
  });

  test('rsa-sha256 names the xmldsig-more and xmlenc algorithms', () => {
    const element = signatureElement(sampleEnvelope, testKey.privateKey, 'rsa-sha256');
    expect(element).toContain('<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>');
    expect(element).toContain('<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>');
  });

  test('a value XML cannot carry is refused with a clear message', () => {
    const envelope: Envelope = { infos: [], items: [pmv('M1', [['note', 'bell\u0007']])] };
    expect(() => signResponse(envelope, testKey.privateKey)).toThrow('property note contains U+0007');
    const lone: Envelope = { infos: [{ id: 'x', type: 'INFO', value: 'half \uD83D pair' }], items: [] };
    expect(() => signResponse(lone, testKey.privateKey)).toThrow('info x contains U+D83D');
    const ttl: Envelope = { ttl: '2030-01-01 & later', infos: [], items: [] };
    expect(() => signResponse(ttl, testKey.privateKey)).toThrow('the ttl "2030-01-01 & later" needs escaping');
  });

  test('the verifier refuses unsigned, doubly signed and malformed input', () => {
    const envelope = ENVELOPES['lists, nested lists and paging'] as Envelope;
    expect(verifyResponse(renderXml(envelope), testKey.publicPem)).toBe(false);
    const signature = signatureElement(envelope, testKey.privateKey);
    expect(verifyResponse(renderXml(envelope, signature + signature), testKey.publicPem)).toBe(false);
    expect(verifyResponse(signResponse(envelope, testKey.privateKey).slice(0, -5), testKey.publicPem)).toBe(false);
    expect(() => verifyResponse(sample, 'not a key')).toThrow('not a readable RSA public key');
  });
});

describe('canonical form (C14N 1.0) against libxml2', () => {
  test('text and attribute escaping follow C14N', () => {
    expect(c14nText('& < > " \' \t \n \r')).toBe('&amp; &lt; &gt; " \' \t \n &#xD;');
    expect(c14nAttribute('& < > " \' \t \n \r')).toBe('&amp; &lt; > &quot; \' &#x9; &#xA; &#xD;');
  });

  for (const [name, envelope] of Object.entries(ENVELOPES)) {
    test(`${name}: canonicalEnvelope = xmllint --c14n (renderXml) = our parser + canonicaliser`, () => {
      const xml = renderXml(envelope);
      const expected = xmllintC14n(xml);
      expect(canonicalEnvelope(envelope)).toBe(expected);
      expect(canonicalElement(parseXml(xml))).toBe(expected);
    });
  }

  test('the verifier canonicaliser handles what other producers write like libxml2 does', () => {
    // Literal tab/newline in attributes (normalised to spaces), CRLF line ends,
    // character references, single-quoted attributes, unsorted attributes,
    // redundant and undeclared-default namespace declarations, empty elements.
    const xml =
      "<?xml version='1.0' encoding='UTF-8'?>\r\n" +
      `<r:root xmlns:r="urn:r" xmlns="urn:d" b='x"y' a="1\t2\n3">` +
      '<child xmlns="urn:d" z="&#9;&#10;&#13;&gt;">a\r\nb\rc &#xD; &#169; &#x1F600; &apos;&quot;</child>' +
      '<r:e xmlns=""/>' +
      '<other xmlns:r="urn:r" r:q="v" p="w">text &amp;&lt;&gt;</other>' +
      '</r:root>\n';
    expect(canonicalElement(parseXml(xml))).toBe(xmllintC14n(xml));
  });

  test('random envelopes: canonicalEnvelope = xmllint --c14n (renderXml)', () => {
    const xmlChar = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom('&', '<', '>', '"', "'", '\r', '\n', '\t', '\r\n', ']]>', ' ', 'ä', '€', '😀', '\u0085', '\u2028', '&amp;') },
      { weight: 5, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
    );
    const value = fc
      .array(xmlChar, { maxLength: 6 })
      .map((parts) => parts.join(''))
      .filter((s) => !/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u.test(s));
    const property = fc.tuple(value, value) as fc.Arbitrary<readonly [string, string]>;
    const list: fc.Arbitrary<WireList> = fc.letrec<{ list: WireList }>((tie) => ({
      list: fc.record({
        name: value,
        properties: fc.array(property, { maxLength: 3 }),
        lists: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constant<WireList[]>([]), fc.array(tie('list'), { maxLength: 2 })),
      }),
    })).list;
    // renderXml writes ttl and paging values unescaped (they are ISO dates
    // and numbers), so they get values it can carry there.
    const plain = value.filter((s) => !/[&<"\t\n\r]/.test(s));
    const envelope: fc.Arbitrary<Envelope> = fc.record(
      {
        infos: fc.array(fc.record({ id: value, type: fc.constantFrom('ERROR', 'WARNING', 'INFO'), value }), { maxLength: 3 }),
        items: fc.array(fc.record({ type: value, properties: fc.array(property, { maxLength: 4 }), lists: fc.array(list, { maxLength: 2 }) }), {
          maxLength: 3,
        }),
        ttl: plain,
        id: value,
        paging: fc.record({ pagenumber: plain, itemsnumber: plain, totalpages: plain, totalitems: plain, hasnext: plain }),
      },
      { requiredKeys: ['infos', 'items'] },
    );
    let compared = 0;
    fc.assert(
      fc.property(envelope, (env) => {
        const xml = renderXml(env);
        const expected = xmllintC14n(xml);
        expect(canonicalEnvelope(env)).toBe(expected);
        expect(canonicalElement(parseXml(xml))).toBe(expected);
        compared++;
      }),
      { numRuns: 150 },
    );
    expect(compared).toBe(150);
  });
});

describe('signing keys', () => {
  const pemBody = demoPrivatePem.replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, '');
  const reference = signResponse(sampleEnvelope, demoPrivatePem);

  test('PKCS#8 PEM, CRLF PEM, bare base64 body, form-mangled body and PKCS#1 PEM all sign identically', () => {
    expect(signResponse(sampleEnvelope, pemBody)).toBe(reference);
    expect(signResponse(sampleEnvelope, demoPrivatePem.replace(/\n/g, '\r\n'))).toBe(reference);
    expect(pemBody).toContain('+');
    expect(signResponse(sampleEnvelope, pemBody.replace(/\+/g, ' '))).toBe(reference);
    const pkcs1 = parsePrivateKey(demoPrivatePem).export({ type: 'pkcs1', format: 'pem' }).toString();
    expect(pkcs1).toContain('BEGIN RSA PRIVATE KEY');
    expect(signResponse(sampleEnvelope, pkcs1)).toBe(reference);
    expect(signResponse(sampleEnvelope, parsePrivateKey(demoPrivatePem))).toBe(reference);
  });

  test('unreadable and non-RSA keys are refused with a clear message', () => {
    expect(() => parsePrivateKey('hello')).toThrow('not a readable RSA private key');
    expect(() => parsePrivateKey(demoPublicPem)).toThrow('found BEGIN PUBLIC KEY');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(() => parsePrivateKey(ec)).toThrow('NetLicensing signatures need RSA');
  });

  test('public keys: SPKI PEM, bare body, or the private key', () => {
    const spkiBody = demoPublicPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s/g, '');
    expect(verifyResponse(sample, spkiBody)).toBe(true);
    expect(verifyResponse(sample, demoPrivatePem)).toBe(true);
    expect(verifyResponse(sample, parsePublicKey(demoPublicPem))).toBe(true);
  });

  test('signingKeyFromToken: a key only when the token has a privateKey property', () => {
    expect(signingKeyFromToken({ tokenType: 'APIKEY' })).toBeUndefined();
    expect(signingKeyFromToken({ privateKey: '  ' })).toBeUndefined();
    const key = signingKeyFromToken({ tokenType: 'APIKEY', privateKey: pemBody });
    expect(key?.asymmetricKeyType).toBe('rsa');
    expect(signResponse(sampleEnvelope, key as KeyObject)).toBe(reference);
    expect(() => signingKeyFromToken({ privateKey: 'garbage' })).toThrow('not a readable RSA private key');
  });

  test('loadSigningKeyFile: reads a PEM file; missing or bad files are clear errors naming the file', () => {
    const good = writeTemp('signing.pem', demoPrivatePem);
    expect(signResponse(sampleEnvelope, loadSigningKeyFile(good))).toBe(reference);
    const missing = `${good}.missing`;
    try {
      loadSigningKeyFile(missing);
      throw new Error('expected an error');
    } catch (error) {
      expect((error as Error).message).toContain(`cannot read signing key file ${missing}`);
    }
    const bad = writeTemp('bad.pem', 'not a key\n');
    expect(() => loadSigningKeyFile(bad)).toThrow(`signing key file ${bad}: not a readable RSA private key`);
  });
});
