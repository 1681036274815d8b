/**
 * Decoding of `application/x-www-form-urlencoded` bodies and query strings
 * into ordered pairs. Strict about malformed escapes (a clear 400 instead of
 * a guess), lenient about everything clients really send: `+` and `%20`
 * for spaces, any order, empty values, repeated keys (all pairs are kept, in
 * order; validate takes each key's first value, core/params.ts).
 */

export class MalformedRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedRequestError';
  }
}

function decodeComponent(raw: string): string {
  const text = raw.includes('+') ? raw.replace(/\+/g, ' ') : raw;
  if (!text.includes('%')) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    throw new MalformedRequestError(`malformed percent-encoding in form data: "${raw.slice(0, 80)}"`);
  }
}

export function parseForm(body: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  // One pass with indexOf (no array of parts): this runs for every decided validate.
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf('&', start);
    if (end === -1) end = body.length;
    if (end > start) {
      const eq = body.indexOf('=', start);
      const hasValue = eq !== -1 && eq < end;
      const key = decodeComponent(body.slice(start, hasValue ? eq : end));
      const value = hasValue ? decodeComponent(body.slice(eq + 1, end)) : '';
      if (key !== '') pairs.push([key, value]);
    }
    start = end + 1;
  }
  return pairs;
}

/** The query string of a request URL (without `?`), or ''. */
export function queryOf(url: string): string {
  const q = url.indexOf('?');
  if (q === -1) return '';
  const hash = url.indexOf('#', q);
  return url.slice(q + 1, hash === -1 ? undefined : hash);
}
