/**
 * Goal: the form parser (one pass, tuned for the hot path) splits and decodes
 * exactly as the plain definition does: parts split at "&", empty parts and
 * empty keys skipped, key and value split at the first "=", "+" as space,
 * percent-escapes decoded, malformed escapes refused.
 * Method: differential, fast-check bodies over an alphabet of the separators,
 * escapes (valid and broken) and ordinary characters.
 */
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import { MalformedRequestError, parseForm } from '../../src/server/form.ts';

function model(body: string): Array<[string, string]> | 'malformed' {
  const decode = (raw: string) => decodeURIComponent(raw.replace(/\+/g, ' '));
  const pairs: Array<[string, string]> = [];
  try {
    for (const part of body.split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const key = decode(eq === -1 ? part : part.slice(0, eq));
      const value = eq === -1 ? '' : decode(part.slice(eq + 1));
      if (key !== '') pairs.push([key, value]);
    }
  } catch {
    return 'malformed';
  }
  return pairs;
}

const parsed = (body: string): Array<[string, string]> | 'malformed' => {
  try {
    return parseForm(body);
  } catch (error) {
    if (error instanceof MalformedRequestError) return 'malformed';
    throw error;
  }
};

test('parseForm agrees with the plain definition on any body', () => {
  const piece = fc.constantFrom('&', '=', '+', '%20', '%2', '%zz', '%C3%A4', '%E2%82', 'a', 'b', 'key', 'x y', 'ä', '0', '==');
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 20 }), (pieces) => {
      const body = pieces.join('');
      expect(parsed(body)).toEqual(model(body));
    }),
    { numRuns: 5000 },
  );
});
