/**
 * Inclusive Canonical XML 1.0 (https://www.w3.org/TR/2001/REC-xml-c14n-20010315)
 * for the two things a signed validate response needs:
 *
 * - `canonicalEnvelope`: the canonical form of the document that `renderXml`
 *   produces for an Envelope, rendered straight from the Envelope. This is what
 *   the signer digests; it must equal, byte for byte, what any C14N
 *   implementation computes from the parsed `renderXml` output (proven against
 *   xmlsec1 and `xmllint --c14n` in tests/wire).
 * - `parseXml` + `canonicalElement`: a small parser and canonicaliser for
 *   documents in our own layout (elements, attributes, text, character
 *   references; no DTD, comments, CDATA or processing instructions inside the
 *   root), used by the verifier to check responses we did not render ourselves.
 *
 * C14N rules applied: empty elements are expanded to start/end tag pairs;
 * namespace declarations come first, the default namespace before prefixed
 * ones, prefixes in code-point order, then attributes ordered by namespace
 * URI and local name; text escapes & < > and CR as &#xD;; attribute values
 * escape & < " and TAB, LF, CR as &#x9; &#xA; &#xD;. The XML declaration is
 * dropped. Code-point order equals UTF-16 order for the ASCII names used here.
 */
import type { Envelope, Info, WireList } from '../core/envelope.ts';
import { CONTEXT_NS, escapeText, XMLDSIG_NS } from './xml.ts';

/** renderXml's text escaping already is C14N's (& < > and CR); attributes differ (C14N keeps `>`). */
export const c14nText = escapeText;

export function c14nAttribute(value: string): string {
  return value.replace(/[&<"\t\n\r]/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '"':
        return '&quot;';
      case '\t':
        return '&#x9;';
      case '\n':
        return '&#xA;';
      default:
        return '&#xD;';
    }
  });
}

// ---------------------------------------------------------------------------
// Canonical form of renderXml(envelope), without any Signature element.

/** Root start tag namespaces as C14N orders them: default first, then `ns2`. */
const ROOT_NAMESPACES = ` xmlns="${XMLDSIG_NS}" xmlns:ns2="${CONTEXT_NS}"`;

function canonicalProperty(name: string, value: string): string {
  return `<ns2:property name="${c14nAttribute(name)}">${c14nText(value)}</ns2:property>`;
}

function canonicalInfo(info: Info): string {
  return `<ns2:info id="${c14nAttribute(info.id)}" type="${c14nAttribute(info.type.toLowerCase())}">${c14nText(info.value)}</ns2:info>`;
}

function canonicalList(list: WireList): string {
  let out = `<ns2:list name="${c14nAttribute(list.name)}">`;
  for (const [name, value] of list.properties) out += canonicalProperty(name, value);
  for (const child of list.lists) out += canonicalList(child);
  return `${out}</ns2:list>`;
}

/**
 * The canonical (C14N 1.0, with or without comments: there are none) bytes of
 * the response document as `renderXml(envelope)` writes it, i.e. the input of
 * the Reference digest once the enveloped Signature is removed.
 */
export function canonicalEnvelope(envelope: Envelope): string {
  // Attributes in code-point order of their local names: id < ttl.
  let out = `<ns2:netlicensing${ROOT_NAMESPACES}`;
  if (envelope.id !== undefined) out += ` id="${c14nAttribute(envelope.id)}"`;
  if (envelope.ttl !== undefined) out += ` ttl="${c14nAttribute(envelope.ttl)}"`;
  out += '><ns2:infos>';
  for (const info of envelope.infos) out += canonicalInfo(info);
  out += '</ns2:infos><ns2:items';
  const paging = envelope.paging;
  if (paging) {
    // Sorted: hasnext < itemsnumber < pagenumber < totalitems < totalpages.
    out +=
      ` hasnext="${c14nAttribute(paging.hasnext)}"` +
      ` itemsnumber="${c14nAttribute(paging.itemsnumber)}"` +
      ` pagenumber="${c14nAttribute(paging.pagenumber)}"` +
      ` totalitems="${c14nAttribute(paging.totalitems)}"` +
      ` totalpages="${c14nAttribute(paging.totalpages)}"`;
  }
  out += '>';
  for (const item of envelope.items) {
    out += `<ns2:item type="${c14nAttribute(item.type)}">`;
    for (const [name, value] of item.properties) out += canonicalProperty(name, value);
    for (const list of item.lists) out += canonicalList(list);
    out += '</ns2:item>';
  }
  return `${out}</ns2:items></ns2:netlicensing>`;
}

// ---------------------------------------------------------------------------
// A minimal parser and generic canonicaliser for the verifier.

export interface XmlElement {
  /** Qualified name as written, e.g. `ns2:item` or `Signature`. */
  name: string;
  /** Attributes and namespace declarations in document order, values decoded. */
  attributes: Array<[name: string, value: string]>;
  children: XmlNode[];
  parent?: XmlElement;
}

export type XmlNode = XmlElement | string;

export class XmlSubsetError extends Error {
  override name = 'XmlSubsetError';
}

const NAME = /^[A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?/;
const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeReferences(raw: string, where: number): string {
  return raw.replace(/&(#x[0-9A-Fa-f]+|#[0-9]+|[A-Za-z]+);|&/g, (match, ref: string | undefined) => {
    if (ref === undefined) throw new XmlSubsetError(`bare '&' near offset ${where}`);
    if (ref.startsWith('#')) {
      const code = ref[1] === 'x' ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      if (!Number.isFinite(code) || code > 0x10ffff) throw new XmlSubsetError(`bad character reference ${match}`);
      return String.fromCodePoint(code);
    }
    const value = PREDEFINED[ref];
    if (value === undefined) throw new XmlSubsetError(`unknown entity ${match} near offset ${where}`);
    return value;
  });
}

/**
 * Parses a document of our subset: an optional XML declaration, one root
 * element, no DTD, no comments, no CDATA, no processing instructions. Applies
 * XML end-of-line handling and attribute-value normalisation.
 */
export function parseXml(xml: string): XmlElement {
  // XML end-of-line handling: CRLF and lone CR become LF before anything else.
  const text = xml.replace(/\r\n?/g, '\n');
  let pos = 0;
  const decl = /^\uFEFF?<\?xml[^?]*\?>/.exec(text);
  if (decl) pos = decl[0].length;
  while (pos < text.length && /\s/.test(text[pos] ?? '')) pos++;

  let root: XmlElement | undefined;
  const stack: XmlElement[] = [];
  while (pos < text.length) {
    const lt = text.indexOf('<', pos);
    const end = lt < 0 ? text.length : lt;
    if (end > pos) {
      const chunk = text.slice(pos, end);
      const parent = stack[stack.length - 1];
      if (parent) parent.children.push(decodeReferences(chunk, pos));
      else if (chunk.trim() !== '') throw new XmlSubsetError(`text outside the root element at offset ${pos}`);
      pos = end;
      continue;
    }
    const next = text[lt + 1];
    if (next === '!' || next === '?') {
      throw new XmlSubsetError(`comment, CDATA, DTD or processing instruction at offset ${lt} is not supported`);
    }
    if (next === '/') {
      const close = text.indexOf('>', lt);
      if (close < 0) throw new XmlSubsetError(`unterminated end tag at offset ${lt}`);
      const name = text.slice(lt + 2, close).trim();
      const open = stack.pop();
      if (!open || open.name !== name) throw new XmlSubsetError(`mismatched end tag </${name}> at offset ${lt}`);
      pos = close + 1;
      continue;
    }
    const nameMatch = NAME.exec(text.slice(lt + 1));
    if (!nameMatch) throw new XmlSubsetError(`bad start tag at offset ${lt}`);
    const element: XmlElement = { name: nameMatch[0], attributes: [], children: [] };
    pos = lt + 1 + nameMatch[0].length;
    for (;;) {
      const attr = /^\s+([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)\s*=\s*("([^"<]*)"|'([^'<]*)')/.exec(text.slice(pos));
      if (!attr) break;
      // Attribute-value normalisation: literal white space becomes a space;
      // white space written as character references survives.
      const raw = (attr[3] ?? attr[4] ?? '').replace(/[\t\n]/g, ' ');
      const attrName = attr[1] ?? '';
      if (element.attributes.some(([n]) => n === attrName)) {
        throw new XmlSubsetError(`duplicate attribute ${attrName} at offset ${pos}`);
      }
      element.attributes.push([attrName, decodeReferences(raw, pos)]);
      pos += attr[0].length;
    }
    const tail = /^\s*(\/?)>/.exec(text.slice(pos));
    if (!tail) throw new XmlSubsetError(`bad start tag <${element.name}> at offset ${lt}`);
    pos += tail[0].length;
    const parent = stack[stack.length - 1];
    if (parent) {
      element.parent = parent;
      parent.children.push(element);
    } else if (root) {
      throw new XmlSubsetError(`second root element at offset ${lt}`);
    } else {
      root = element;
    }
    if (tail[1] !== '/') stack.push(element);
  }
  if (stack.length > 0) throw new XmlSubsetError(`unclosed element <${stack[stack.length - 1]?.name}>`);
  if (!root) throw new XmlSubsetError('no root element');
  return root;
}

function splitName(qname: string): [prefix: string, local: string] {
  const colon = qname.indexOf(':');
  return colon < 0 ? ['', qname] : [qname.slice(0, colon), qname.slice(colon + 1)];
}

/** Namespace declarations in scope at `element` (its own included), prefix '' for the default. */
export function namespacesInScope(element: XmlElement): Map<string, string> {
  const chain: XmlElement[] = [];
  for (let e: XmlElement | undefined = element; e; e = e.parent) chain.unshift(e);
  const scope = new Map<string, string>([['xml', 'http://www.w3.org/XML/1998/namespace']]);
  for (const e of chain) {
    for (const [name, value] of e.attributes) {
      if (name === 'xmlns') scope.set('', value);
      else if (name.startsWith('xmlns:')) scope.set(name.slice(6), value);
    }
  }
  return scope;
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function render(element: XmlElement, scope: Map<string, string>, rendered: Map<string, string>): string {
  const ownScope = new Map(scope);
  for (const [name, value] of element.attributes) {
    if (name === 'xmlns') ownScope.set('', value);
    else if (name.startsWith('xmlns:')) ownScope.set(name.slice(6), value);
  }
  // Namespace nodes of this element, emitted where the nearest rendered
  // ancestor did not already emit the same value.
  const nsOut: Array<[prefix: string, uri: string]> = [];
  const nowRendered = new Map(rendered);
  for (const [prefix, uri] of ownScope) {
    if (prefix === 'xml') continue;
    const before = rendered.get(prefix);
    if (prefix === '' && uri === '' && (before === undefined || before === '')) continue;
    if (before === uri) continue;
    nsOut.push([prefix, uri]);
    nowRendered.set(prefix, uri);
  }
  nsOut.sort((a, b) => compareCodePoints(a[0], b[0]));

  const attrs: Array<[uri: string, local: string, qname: string, value: string]> = [];
  for (const [name, value] of element.attributes) {
    if (name === 'xmlns' || name.startsWith('xmlns:')) continue;
    const [prefix, local] = splitName(name);
    let uri = '';
    if (prefix !== '') {
      const bound = ownScope.get(prefix);
      if (bound === undefined) throw new XmlSubsetError(`unbound prefix ${prefix} on attribute ${name}`);
      uri = bound;
    }
    attrs.push([uri, local, name, value]);
  }
  attrs.sort((a, b) => compareCodePoints(a[0], b[0]) || compareCodePoints(a[1], b[1]));

  let out = `<${element.name}`;
  for (const [prefix, uri] of nsOut) out += prefix === '' ? ` xmlns="${c14nAttribute(uri)}"` : ` xmlns:${prefix}="${c14nAttribute(uri)}"`;
  for (const [, , qname, value] of attrs) out += ` ${qname}="${c14nAttribute(value)}"`;
  out += '>';
  for (const child of element.children) {
    out += typeof child === 'string' ? c14nText(child) : render(child, ownScope, nowRendered);
  }
  return `${out}</${element.name}>`;
}

/**
 * Canonical form of the subtree rooted at `element` (document subset), with
 * the namespace declarations inherited from its ancestors placed on it, as
 * inclusive C14N does for an apex element. `skip` elements are left out
 * (the enveloped-signature transform).
 */
export function canonicalElement(element: XmlElement, skip?: XmlElement): string {
  const ancestors = element.parent ? namespacesInScope(element.parent) : new Map<string, string>();
  const target = skip ? withoutDescendant(element, skip) : element;
  return render(target, ancestors, new Map());
}

function withoutDescendant(element: XmlElement, skip: XmlElement): XmlElement {
  const copy: XmlElement = { ...element, children: [] };
  for (const child of element.children) {
    if (child === skip) continue;
    copy.children.push(typeof child === 'string' ? child : withoutDescendant(child, skip));
  }
  for (const child of copy.children) if (typeof child !== 'string') child.parent = copy;
  return copy;
}
