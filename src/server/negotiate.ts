/**
 * Content negotiation and rendering, as the cloud does it: XML unless the
 * client asks for JSON. No Accept header, the any-type wildcard and unknown types get XML,
 * because the current Java client sends no Accept header and parses XML.
 */
import { errorEnvelope, type Envelope } from '../core/envelope.ts';
import { renderJson } from '../wire/json.ts';
import { renderXml } from '../wire/xml.ts';

export type WireFormat = 'xml' | 'json';

export const CONTENT_TYPE: Record<WireFormat, string> = {
  xml: 'application/xml;charset=UTF-8',
  json: 'application/json;charset=UTF-8',
};

const FORMAT_BY_ACCEPT = new Map<string, WireFormat>();

/** JSON when application/json is acceptable with a higher (or equal, earlier) q than application/xml. */
export function negotiateFormat(accept: string | undefined | null): WireFormat {
  // Media types are case-insensitive (RFC 9110 §8.3.1): the quick test for "no JSON at all" must be too.
  if (!accept || !/json/i.test(accept)) return 'xml';
  // Clients send the same few Accept headers again and again: decided once each (bounded).
  const known = FORMAT_BY_ACCEPT.get(accept);
  if (known) return known;
  const format = decideFormat(accept);
  if (FORMAT_BY_ACCEPT.size >= 256) FORMAT_BY_ACCEPT.clear();
  FORMAT_BY_ACCEPT.set(accept, format);
  return format;
}

function decideFormat(accept: string): WireFormat {
  let best: WireFormat = 'xml';
  let bestQ = -1;
  for (const part of accept.split(',')) {
    const [typeRaw, ...params] = part.split(';');
    const type = (typeRaw ?? '').trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p);
      if (m) q = Number.parseFloat(m[1]!);
    }
    const format: WireFormat | undefined =
      type === 'application/json' || type.endsWith('+json')
        ? 'json'
        : type === 'application/xml' || type === 'text/xml' || type.endsWith('+xml')
          ? 'xml'
          : undefined;
    // q=0 means "not acceptable" (RFC 9110 §12.4.2).
    if (format && q > 0 && q > bestQ) {
      best = format;
      bestQ = q;
    }
  }
  return best;
}

export function renderEnvelope(envelope: Envelope, format: WireFormat): string {
  return format === 'json' ? renderJson(envelope) : renderXml(envelope);
}

/** An error answer in the cloud's envelope (one ERROR info), rendered in `format`. */
export function envelopeResponse(format: WireFormat, status: number, id: string, message: string, headers: Record<string, string> = {}): Response {
  return new Response(renderEnvelope(errorEnvelope(id, message), format), {
    status,
    headers: { 'content-type': CONTENT_TYPE[format], ...headers },
  });
}
