/**
 * Reads one transfer file (docs/transfer-format.md) as a stream of items:
 * checks the element structure (root and namespace, infos, items, item,
 * property, list), hands each item over as soon as it is complete, and
 * verifies the file's TransferDigest (item count; SHA-256 over the header's
 * canonical encoding and the raw bytes of the entity items) at the end.
 *
 * Entity items are produced as flat string tokens (ITEM_START below):
 * cheap to build while parsing, cheap to hand to another thread (joined
 * into one string), and decoded into TransferItems by the importer. Only
 * the items of the current batch are held. Meaning (entity kinds, order,
 * merge) is the importer's business (import-transfer.ts).
 */
import { readFileSync } from 'node:fs';
import type { EntityList } from '../core/entities.ts';
import { CanonicalHasher, CONTEXT_NAMESPACE, DIGEST, DIGEST_TYPE, fileDigest, HEADER, HEADER_TYPE } from '../transfer/format.ts';
import { TransferInputError } from './errors.ts';
import {
  openXmlFile,
  StopReading,
  TEXT_RUN_CHARS_MAX,
  type ReadXmlOptions,
  type XmlAttributes,
  type XmlEvents,
  type XmlFileReader,
  type XmlSource,
} from './sax-source.ts';

export interface TransferItem {
  type: string;
  props: Record<string, string>;
  lists: EntityList[];
  /** Position of the item's start tag (just after it). */
  line: number;
  column: number;
}

export interface TransferFileHandlers {
  /** The TransferHeader item, and the hex SHA-256 of its canonical encoding (its content, as the digest sees it). */
  header(item: TransferItem, contentHash: string): void;
  /**
   * Each entity item, as soon as it is complete. Without it, the reader
   * collects the entity items as tokens for `takeEntityTokens`.
   */
  entity?(item: TransferItem): void;
}

/**
 * The entity items of a file as a flat list of strings:
 *
 *   item  = ITEM_START type line column props lists SCOPE_END
 *   list  = LIST_START name props lists SCOPE_END
 *   props = (name value)*
 *
 * Names are never one of the markers (XML 1.0, the only version read: sax-source.ts,
 * cannot carry U+0001–U+0008),
 * and a value is always read positionally after its name. No token contains
 * U+0000, so tokens travel as one string joined with U+0000 (TOKEN_SEPARATOR):
 * the reader joins the tokens of every few complete items (GROUP_ITEMS; one
 * flat string outlives them, not hundreds of small ones: much less work for
 * the garbage collector), and a batch of items into one string.
 */
export const ITEM_START = '\u0001';
export const LIST_START = '\u0002';
export const SCOPE_END = '\u0003';
export const TOKEN_SEPARATOR = '\u0000';

/** Decodes entity items joined into one string (see ITEM_START), in order. */
export function forEachTokenItem(joined: string, each: (item: TransferItem) => void): void {
  if (joined === '') return;
  const decoder = new TokenDecoder(joined.split(TOKEN_SEPARATOR));
  while (decoder.more()) each(decoder.item());
}

class TokenDecoder {
  private i = 0;

  constructor(private readonly tokens: readonly string[]) {}

  more(): boolean {
    return this.i < this.tokens.length;
  }

  /** The item starting at the current token (an ITEM_START). */
  item(): TransferItem {
    const t = this.tokens;
    const i = this.i;
    const item: TransferItem = {
      type: t[i + 1]!,
      props: Object.create(null) as Record<string, string>,
      lists: [],
      line: Number(t[i + 2]),
      column: Number(t[i + 3]),
    };
    this.i = i + 4;
    this.scope(item.props, item.lists);
    return item;
  }

  private scope(props: Record<string, string>, lists: EntityList[]): void {
    const t = this.tokens;
    let i = this.i;
    for (;;) {
      const token = t[i];
      if (token === SCOPE_END) break;
      // Tokens come from this reader; a list that ends early is a bug, never to be looped over.
      if (token === undefined) throw new Error('transfer item tokens end inside an item');
      if (token === LIST_START) {
        const list: EntityList = { name: t[i + 1]!, props: Object.create(null) as Record<string, string> };
        const nested: EntityList[] = [];
        this.i = i + 2;
        this.scope(list.props, nested);
        if (nested.length > 0) list.lists = nested;
        lists.push(list);
        i = this.i;
        continue;
      }
      // Property maps have no prototype, so any name (even "__proto__") is an own key.
      props[token] = t[i + 1]!;
      i += 2;
    }
    this.i = i + 1;
  }
}

export interface ReadTransferFileOptions extends ReadXmlOptions {
  /** Stop after the header item (a quick look at a file before the import). */
  headerOnly?: boolean;
}

export interface TransferFileResult {
  /** Items before the digest: the header and the entities. */
  items: number;
  sha256: string;
}

const enum Where {
  Document,
  Root,
  Infos,
  Info,
  Items,
  Item,
  Property,
  List,
  AfterRoot,
}

/** An item or list being read: the property names seen (for duplicates), and whether a list came. */
interface Scope {
  names: string[];
  /** Replaces the linear search once a scope has many properties. */
  set: Set<string> | undefined;
  sawList: boolean;
}

/** The tokens of the item being read, and the complete entity items (joined) until taken. */
interface TokenState {
  /** Tokens of the last few complete entity items, then of the open item. */
  tokens: string[];
  /** Where the open item's tokens start in `tokens`. */
  itemStart: number;
  /** Complete entity items in `tokens`. */
  grouped: number;
  /** Complete entity items joined, a group at a time. */
  items: string[];
}

/**
 * Entity items are joined into one string per this many (and at the end of
 * each chunk): joining after each item costs more calls, joining per chunk
 * keeps thousands of small strings alive (work for the garbage collector).
 */
const GROUP_ITEMS = 16;

/** Scopes with more properties than this are searched through a Set. */
const SCOPE_LINEAR_MAX = 24;

/**
 * Bounds of one item that real exports stay far below (lists nest two deep in the cloud's
 * answers; the longest values are HTML descriptions): a file past them is refused as bad input
 * at its position, before it costs minutes of CPU or gigabytes of memory (very deep lists
 * overflowed the stack when staged; one huge value was held in memory whole, several times).
 */
export const LIST_DEPTH_MAX = 64;
export const PROPERTY_VALUE_CHARS_MAX = 1024 * 1024;
/**
 * One item's properties and lists, and the characters of their names and values (the header's
 * licensees list aside): an item is held whole until it closes, and one of a million properties
 * took 737 MB (the import review). The cloud's entities have tens of properties.
 */
export const ITEM_ELEMENTS_MAX = 100_000;
export const ITEM_CHARS_MAX = 16 * 1024 * 1024;
/**
 * The header's `licensees` value lists every licensee of the export (a JSON array): 1.2 million
 * characters at 100,000 licensees in bench-import, so it has a bound of its own: room for
 * 9 million numbers of 25 characters (28 with their quotes and comma).
 */
export const HEADER_LICENSEES_CHARS_MAX = 256 * 1024 * 1024;

export function readTransferFile(
  path: string,
  displayName: string,
  handlers: TransferFileHandlers,
  options: ReadTransferFileOptions = {},
): TransferFileResult {
  const reader = openTransferFile(path, displayName, handlers, options);
  try {
    while (reader.step());
  } finally {
    reader.close();
  }
  return reader.result();
}

/** A transfer file read a chunk at a time (the import writes what each batch of chunks held). */
export interface TransferFileReader extends XmlFileReader {
  /** The entity items completed since the last call, joined into one string (see ITEM_START); without an `entity` handler. */
  takeEntityTokens(): string;
  /** After the last step: the digest's figures. */
  result(): TransferFileResult;
}

export function openTransferFile(
  path: string,
  displayName: string,
  handlers: TransferFileHandlers,
  options: ReadTransferFileOptions = {},
): TransferFileReader {
  let result: TransferFileResult | undefined;
  const state: TokenState = { tokens: [], itemStart: 0, grouped: 0, items: [] };
  const reader = openXmlFile(
    path,
    displayName,
    (source) => transferEvents(path, displayName, source, handlers, options, state, (r) => (result = r)),
    options,
  );
  return {
    step: reader.step,
    close: reader.close,
    bytesRead: reader.bytesRead,
    keptBytesMax: reader.keptBytesMax,
    takeEntityTokens() {
      if (state.itemStart > 0) {
        // The complete items; an item still open at the end of the chunk stays.
        state.items.push(state.tokens.slice(0, state.itemStart).join(TOKEN_SEPARATOR));
        state.tokens = state.tokens.slice(state.itemStart);
        state.itemStart = 0;
        state.grouped = 0;
      }
      const joined = state.items.join(TOKEN_SEPARATOR);
      state.items = [];
      return joined;
    },
    result() {
      if (result === undefined && !options.headerOnly) {
        // The reader only finishes without an error once the root element is closed (which sets it).
        throw new Error(`transfer-file reader: result() of ${displayName} before its end`);
      }
      return result ?? { items: 0, sha256: '' };
    },
  };
}

/**
 * Index of the first character that is not XML whitespace (space, tab, CR,
 * LF: XML's S production; a regular expression's \s would also pass
 * no-break and other Unicode spaces), or -1. Whitespace between elements is
 * the text the reader sees most often, so this is a plain character loop.
 */
function firstNonWhitespace(text: string): number {
  for (let i = 0; i < text.length; i++) if (!isXmlWhitespace(text.charCodeAt(i))) return i;
  return -1;
}

function isXmlWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x09 || code === 0x0d;
}

/**
 * Stray text as an error message shows it: without the XML whitespace
 * around it, at most 40 characters, and characters that look like blanks
 * but are not XML whitespace (no-break space and the like) as \uXXXX.
 */
function shownText(text: string): string {
  let end = text.length;
  while (end > 0 && isXmlWhitespace(text.charCodeAt(end - 1))) end--;
  return text.slice(0, Math.min(end, 40)).replace(/[^\S \n]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Length of one line of a file (only used to place an error message). */
function lineLength(path: string, line: number): number {
  return readFileSync(path, 'utf8').split('\n')[line - 1]?.replace(/\r$/, '').length ?? 0;
}

function transferEvents(
  path: string,
  file: string,
  position: XmlSource,
  handlers: TransferFileHandlers,
  options: ReadTransferFileOptions,
  state: TokenState,
  done: (result: TransferFileResult) => void,
): XmlEvents {
  const fail = (reason: string, line = position.line, column = position.column): never => {
    throw new TransferInputError(file, line, column, reason);
  };
  const stack: Where[] = [];
  let where = Where.Document;
  let sawInfos = false;
  let sawItems = false;

  // The header is hashed from its parse events (the writer patches it after writing the entities);
  // the entity items as raw bytes, by the reader (see docs/transfer-format.md, "Digest").
  const headerHasher = new CanonicalHasher();
  let headerHash: Buffer | undefined;
  let itemCount = 0;
  let digestSeen = false;
  let result: TransferFileResult | undefined;

  // The item being read: its tokens go to `tokens` (the header's and the digest's too, decoded
  // when they close); scopes[0] is the item, scopes[1…] its open lists (reused objects).
  let itemType = '';
  let depth = -1;
  /** Properties and lists of the item being read, and the characters of their names and values (ITEM_ELEMENTS_MAX, ITEM_CHARS_MAX). */
  let itemElements = 0;
  let itemChars = 0;
  const countInItem = (chars: number) => {
    if (itemType === HEADER_TYPE) return;
    if (++itemElements > ITEM_ELEMENTS_MAX) fail(`an item with more than ${ITEM_ELEMENTS_MAX} properties and lists (no entity of the cloud has that many)`);
    itemChars += chars;
    if (itemChars > ITEM_CHARS_MAX) fail(`an item with more than ${ITEM_CHARS_MAX} characters of names and values (no entity of the cloud is that large)`);
  };
  const scopes: Scope[] = [];
  /** The header hasher while the header is read; undefined for other items. */
  let hasher: CanonicalHasher | undefined;
  let propertyName = '';
  let text = '';
  /** The bound of the value being read (PROPERTY_VALUE_CHARS_MAX, or the header's licensees list's). */
  let valueCharsMax = PROPERTY_VALUE_CHARS_MAX;

  const enterScope = () => {
    depth++;
    const scope = scopes[depth];
    if (scope === undefined) scopes.push({ names: [], set: undefined, sawList: false });
    else {
      scope.names.length = 0;
      scope.set = undefined;
      scope.sawList = false;
    }
  };
  /** Records a property name in the open scope; false when it is there already. */
  const newName = (scope: Scope, name: string): boolean => {
    if (scope.set !== undefined) {
      if (scope.set.has(name)) return false;
      scope.set.add(name);
      return true;
    }
    const names = scope.names;
    for (let i = 0; i < names.length; i++) if (names[i] === name) return false;
    names.push(name);
    if (names.length > SCOPE_LINEAR_MAX) scope.set = new Set(names);
    return true;
  };
  /** Takes the item just closed off the token list. */
  const decodeLast = (): TransferItem => {
    const item = new TokenDecoder(state.tokens.slice(state.itemStart)).item();
    state.tokens.length = state.itemStart;
    return item;
  };

  const nameAttribute = (attributes: XmlAttributes, element: string): string => {
    const name = attributes['name'];
    if (name === undefined || name.uri !== '') fail(`<${element}> without a name attribute`);
    return name!.value;
  };

  const describe = (uri: string, local: string) => (uri === CONTEXT_NAMESPACE ? `<${local}>` : `<${local}> (namespace "${uri}")`);

  const enter = (next: Where) => {
    stack.push(where);
    where = next;
  };

  const openItem = (attributes: XmlAttributes) => {
    itemElements = 0;
    itemChars = 0;
    const type = attributes['type'];
    if (type === undefined || type.uri !== '' || type.value === '') fail('<item> without a type attribute');
    if (digestSeen) fail(`an item follows the ${DIGEST_TYPE}: the digest must be the last item`);
    const typeName = type!.value;
    if (itemCount === 0 && typeName !== HEADER_TYPE) {
      fail(`the first item must be the ${HEADER_TYPE}, found "${typeName}"`);
    }
    if (itemCount > 0 && typeName === HEADER_TYPE) fail(`a second ${HEADER_TYPE}`);
    state.itemStart = state.tokens.length;
    itemType = typeName;
    state.tokens.push(ITEM_START, typeName, String(position.line), String(position.column));
    depth = -1;
    enterScope();
    hasher = typeName === HEADER_TYPE ? headerHasher : undefined;
    hasher?.beginItem(typeName);
  };

  const closeItem = () => {
    state.tokens.push(SCOPE_END);
    depth = -1;
    if (itemType === DIGEST_TYPE) {
      digestSeen = true;
      checkDigest(decodeLast());
      return;
    }
    itemCount++;
    if (itemType === HEADER_TYPE) {
      hasher!.endItem();
      hasher = undefined;
      headerHash = headerHasher.digest();
      position.startHash();
      handlers.header(decodeLast(), headerHash.toString('hex'));
      if (options.headerOnly) throw new StopReading();
    } else {
      position.extendHash();
      if (handlers.entity) handlers.entity(decodeLast());
      else {
        state.itemStart = state.tokens.length;
        if (++state.grouped === GROUP_ITEMS) {
          state.items.push(state.tokens.join(TOKEN_SEPARATOR));
          state.tokens.length = 0;
          state.itemStart = 0;
          state.grouped = 0;
        }
      }
    }
  };

  const checkDigest = (digest: TransferItem) => {
    const at = [digest.line, digest.column] as const;
    const items = digest.props[DIGEST.items];
    const sha256 = digest.props[DIGEST.sha256];
    if (items === undefined || sha256 === undefined) {
      fail(`the ${DIGEST_TYPE} needs the properties ${DIGEST.items} and ${DIGEST.sha256}`, ...at);
    }
    if (items !== String(itemCount)) {
      fail(`the ${DIGEST_TYPE} counts ${items} items, the file has ${itemCount}: items were added or removed`, ...at);
    }
    const actual = fileDigest(headerHash!, position.hashDigest());
    if (sha256!.toLowerCase() !== actual) {
      fail(`digest mismatch: the file was altered or damaged after export (${DIGEST.sha256} ${sha256}, content ${actual})`, ...at);
    }
    result = { items: itemCount, sha256: actual };
  };

  return {
    open(uri, local, attributes) {
      if (uri !== CONTEXT_NAMESPACE) {
        fail(
          where === Where.Document
            ? `the root element must be <netlicensing> in namespace "${CONTEXT_NAMESPACE}", found ${describe(uri, local)}`
            : `unexpected element ${describe(uri, local)}`,
        );
      }
      switch (where) {
        case Where.Document:
          if (local !== 'netlicensing') fail(`the root element must be <netlicensing>, found <${local}>`);
          return enter(Where.Root);
        case Where.Root:
          if (local === 'infos' && !sawInfos && !sawItems) {
            sawInfos = true;
            return enter(Where.Infos);
          }
          if (local === 'items' && !sawItems) {
            sawItems = true;
            return enter(Where.Items);
          }
          return fail(`unexpected element <${local}> in <netlicensing> (expected <infos/> then <items>)`);
        case Where.Infos:
          if (local !== 'info') fail(`unexpected element <${local}> in <infos>`);
          return enter(Where.Info);
        case Where.Items:
          if (local !== 'item') fail(`unexpected element <${local}> in <items>`);
          openItem(attributes);
          return enter(Where.Item);
        case Where.Item:
        case Where.List: {
          const inList = where === Where.List;
          if (local === 'property') {
            if (scopes[depth]!.sawList) fail('a <property> after a <list>: properties come first');
            propertyName = nameAttribute(attributes, 'property');
            valueCharsMax = itemType === HEADER_TYPE && !inList && propertyName === HEADER.licensees ? HEADER_LICENSEES_CHARS_MAX : PROPERTY_VALUE_CHARS_MAX;
            // The reader's bound on raw text between two tags (escapes included) follows the value's.
            position.textRunCharsMax = Math.max(TEXT_RUN_CHARS_MAX, valueCharsMax);
            text = '';
            return enter(Where.Property);
          }
          if (local === 'list') {
            if (depth >= LIST_DEPTH_MAX) fail(`lists nested more than ${LIST_DEPTH_MAX} deep`);
            const name = nameAttribute(attributes, 'list');
            scopes[depth]!.sawList = true;
            countInItem(name.length);
            state.tokens.push(LIST_START, name);
            enterScope();
            hasher?.beginList(name);
            return enter(Where.List);
          }
          return fail(`unexpected element <${local}> in <${inList ? 'list' : 'item'}>`);
        }
        default:
          return fail(`unexpected element <${local}>${where === Where.Property ? ' inside a <property>' : ''}`);
      }
    },

    close() {
      switch (where) {
        case Where.Property: {
          if (!newName(scopes[depth]!, propertyName)) {
            fail(`property "${propertyName}" appears twice in the same ${depth === 0 ? 'item' : 'list'}`);
          }
          countInItem(propertyName.length + text.length);
          state.tokens.push(propertyName, text);
          if (hasher !== undefined) hasher.property(propertyName, text);
          text = '';
          position.textRunCharsMax = TEXT_RUN_CHARS_MAX;
          break;
        }
        case Where.List: {
          state.tokens.push(SCOPE_END);
          depth--;
          hasher?.endList();
          break;
        }
        case Where.Item:
          closeItem();
          break;
        case Where.Items:
          if (!digestSeen) fail(`no ${DIGEST_TYPE} item at the end of the file (truncated or altered?)`);
          break;
        case Where.Root:
          if (!sawItems) fail('no <items> element');
          done(result!);
          where = Where.AfterRoot;
          return;
        default:
          break;
      }
      where = stack.pop()!;
    },

    text(piece) {
      if (where === Where.Property) {
        text += piece;
        if (text.length > valueCharsMax) fail(`the value of property "${propertyName}" is longer than ${valueCharsMax} characters`);
        return;
      }
      if (where === Where.Info) return;
      const start = firstNonWhitespace(piece);
      if (start >= 0) {
        // Text is reported when the next tag begins: point back at where the text starts.
        const after = piece.slice(start);
        const lines = after.split('\n');
        const line = position.line - (lines.length - 1);
        let column: number;
        if (lines.length === 1) column = position.column - 1 - after.length;
        else if (piece.lastIndexOf('\n', start - 1) >= 0) column = start - piece.lastIndexOf('\n', start - 1);
        // The text begins on the line of the markup before it and runs to that line's end.
        else column = lineLength(path, line) - lines[0]!.length + 1;
        fail(`unexpected text "${shownText(after)}"`, line, column);
      }
    },
  };
}
