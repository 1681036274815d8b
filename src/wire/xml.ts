/**
 * Renders an Envelope as the cloud's XML, byte for byte in the layout that
 * JAXB produces (see netlicensing-api.md §2.2): compact, xmldsig as the
 * default namespace, the context namespace as `ns2`, `<ns2:infos/>` always
 * present, info types in lower case, properties before lists.
 *
 * The exact layout matters: Java clients re-marshal the response with these
 * prefixes before checking a signature, and C# looks for an unprefixed
 * `Signature` element.
 */
import type { Envelope, Info, WireItem, WireList } from '../core/envelope.ts';

export const CONTEXT_NS = 'http://netlicensing.labs64.com/schema/context';
export const XMLDSIG_NS = 'http://www.w3.org/2000/09/xmldsig#';
export const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>';

/**
 * Written for the characters XML 1.0 does not allow at all, not even as references (its `Char`
 * production: C0 controls but tab, LF and CR; U+FFFE, U+FFFF), by both escapers below: an answer
 * that echoes a client's value (an error message naming a bad parameter, say) is then still a
 * document Java's and C#'s parsers read, and a transfer file one the import reads.
 */
const REPLACEMENT_CHARACTER = '\uFFFD';
const NOT_XML_CHARS = '\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF';
const TEXT_ESCAPED = new RegExp(`[&<>\\r${NOT_XML_CHARS}]`, 'g');
const ATTRIBUTE_ESCAPED = new RegExp(`[&<>"\\t\\n\\r${NOT_XML_CHARS}]`, 'g');

export function escapeText(text: string): string {
  // \r must survive parsing (XML normalises a raw CR to LF), hence &#xD;.
  return text.replace(TEXT_ESCAPED, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '\r' ? '&#xD;' : REPLACEMENT_CHARACTER,
  );
}

export function escapeAttribute(text: string): string {
  return text.replace(ATTRIBUTE_ESCAPED, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      case '\t':
        return '&#x9;';
      case '\n':
        return '&#xA;';
      case '\r':
        return '&#xD;';
      default:
        return REPLACEMENT_CHARACTER;
    }
  });
}

function renderInfo(info: Info): string {
  return `<ns2:info id="${escapeAttribute(info.id)}" type="${info.type.toLowerCase()}">${escapeText(info.value)}</ns2:info>`;
}

function renderList(list: WireList): string {
  let out = `<ns2:list name="${escapeAttribute(list.name)}">`;
  for (const [name, value] of list.properties) {
    out += `<ns2:property name="${escapeAttribute(name)}">${escapeText(value)}</ns2:property>`;
  }
  for (const child of list.lists) out += renderList(child);
  return `${out}</ns2:list>`;
}

/** The root element without signature; `signatureXml` is inserted as first child when given. */
export function renderXml(envelope: Envelope, signatureXml = ''): string {
  let out = `${XML_DECLARATION}<ns2:netlicensing xmlns="${XMLDSIG_NS}" xmlns:ns2="${CONTEXT_NS}"`;
  if (envelope.id !== undefined) out += ` id="${escapeAttribute(envelope.id)}"`;
  if (envelope.ttl !== undefined) out += ` ttl="${envelope.ttl}"`;
  out += '>';
  out += signatureXml;
  out += envelope.infos.length === 0 ? '<ns2:infos/>' : `<ns2:infos>${envelope.infos.map(renderInfo).join('')}</ns2:infos>`;
  out += '<ns2:items';
  const paging = envelope.paging;
  if (paging) {
    out += ` pagenumber="${paging.pagenumber}" itemsnumber="${paging.itemsnumber}" totalpages="${paging.totalpages}" totalitems="${paging.totalitems}" hasnext="${paging.hasnext}"`;
  }
  if (envelope.items.length === 0) return `${out}/></ns2:netlicensing>`;
  out += '>';
  for (const item of envelope.items) out += itemXml(item);
  return `${out}</ns2:items></ns2:netlicensing>`;
}

// Items are never changed once built, and the core hands out the same item object again while a
// module's decision is reused (core/validate.ts): an item's XML is rendered once, weakly held.
const ITEM_XML = new WeakMap<WireItem, string>();

function itemXml(item: WireItem): string {
  let out = ITEM_XML.get(item);
  if (out !== undefined) return out;
  out = `<ns2:item type="${escapeAttribute(item.type)}">`;
  for (const [name, value] of item.properties) {
    out += `<ns2:property name="${escapeAttribute(name)}">${escapeText(value)}</ns2:property>`;
  }
  for (const list of item.lists) out += renderList(list);
  out += '</ns2:item>';
  ITEM_XML.set(item, out);
  return out;
}
