/**
 * Reads one transfer file (docs/transfer-format.md) as a stream of items:
 * checks the element structure (root and namespace, infos, items, item,
 * property, list), hands each item over as soon as it is complete, and
 * verifies the file's TransferDigest (item count and SHA-256 over the
 * canonical encoding, computed from the parse events) at the end.
 *
 * Only one item is held in memory at a time. Meaning (entity kinds, order,
 * merge) is the importer's business (import-transfer.ts).
 */
import { readFileSync } from 'node:fs';
import type { EntityList } from '../core/entities.ts';
import { CanonicalHasher, CONTEXT_NAMESPACE, DIGEST, DIGEST_TYPE, fileDigest, HEADER_TYPE } from '../transfer/format.ts';
import { TransferInputError } from './errors.ts';
import {
  readXmlFile,
  StopReading,
  type ReadXmlOptions,
  type XmlAttributes,
  type XmlEvents,
  type XmlPosition,
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
  header(item: TransferItem): void;
  entity(item: TransferItem): void;
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

/** Builds an item while its elements arrive; hashes it in document order. */
interface OpenList {
  list: EntityList;
  sawList: boolean;
}

export function readTransferFile(
  path: string,
  displayName: string,
  handlers: TransferFileHandlers,
  options: ReadTransferFileOptions = {},
): TransferFileResult {
  let result: TransferFileResult | undefined;
  readXmlFile(path, displayName, (position) => transferEvents(path, displayName, position, handlers, options, (r) => (result = r)), options);
  if (result === undefined && !options.headerOnly) {
    // readXmlFile only returns without an error once the root element is closed.
    throw new TransferInputError(displayName, 0, 0, 'no items found');
  }
  return result ?? { items: 0, sha256: '' };
}

/** Length of one line of a file (only used to place an error message). */
function lineLength(path: string, line: number): number {
  return readFileSync(path, 'utf8').split('\n')[line - 1]?.replace(/\r$/, '').length ?? 0;
}

function transferEvents(
  path: string,
  file: string,
  position: XmlPosition,
  handlers: TransferFileHandlers,
  options: ReadTransferFileOptions,
  done: (result: TransferFileResult) => void,
): XmlEvents {
  const fail = (reason: string, line = position.line, column = position.column): never => {
    throw new TransferInputError(file, line, column, reason);
  };
  const stack: Where[] = [];
  let where = Where.Document;
  let sawInfos = false;
  let sawItems = false;

  const headerHasher = new CanonicalHasher();
  const bodyHasher = new CanonicalHasher();
  let itemCount = 0;
  let digestSeen = false;
  let result: TransferFileResult | undefined;

  // The item being read.
  let item: TransferItem | undefined;
  let hasher: CanonicalHasher | undefined;
  let itemSawList = false;
  const lists: OpenList[] = [];
  let propertyName = '';
  let text = '';

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
    const type = attributes['type'];
    if (type === undefined || type.uri !== '' || type.value === '') fail('<item> without a type attribute');
    if (digestSeen) fail(`an item follows the ${DIGEST_TYPE}: the digest must be the last item`);
    const typeName = type!.value;
    if (itemCount === 0 && typeName !== HEADER_TYPE) {
      fail(`the first item must be the ${HEADER_TYPE}, found "${typeName}"`);
    }
    if (itemCount > 0 && typeName === HEADER_TYPE) fail(`a second ${HEADER_TYPE}`);
    item = {
      type: typeName,
      props: Object.create(null) as Record<string, string>,
      lists: [],
      line: position.line,
      column: position.column,
    };
    itemSawList = false;
    hasher = typeName === HEADER_TYPE ? headerHasher : typeName === DIGEST_TYPE ? undefined : bodyHasher;
    hasher?.beginItem(typeName);
  };

  const closeItem = () => {
    const current = item!;
    item = undefined;
    if (current.type === DIGEST_TYPE) {
      digestSeen = true;
      checkDigest(current);
      return;
    }
    hasher!.endItem();
    itemCount++;
    if (current.type === HEADER_TYPE) {
      handlers.header(current);
      if (options.headerOnly) throw new StopReading();
    } else {
      handlers.entity(current);
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
    const actual = fileDigest(headerHasher.digest(), bodyHasher.digest());
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
            if (inList ? lists[lists.length - 1]!.sawList : itemSawList) {
              fail('a <property> after a <list>: properties come first');
            }
            propertyName = nameAttribute(attributes, 'property');
            text = '';
            return enter(Where.Property);
          }
          if (local === 'list') {
            const name = nameAttribute(attributes, 'list');
            if (inList) lists[lists.length - 1]!.sawList = true;
            else itemSawList = true;
            lists.push({ list: { name, props: Object.create(null) as Record<string, string> }, sawList: false });
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
          const props = lists.length === 0 ? item!.props : lists[lists.length - 1]!.list.props;
          // Property maps have no prototype, so any name (even "__proto__") is an own key.
          if (props[propertyName] !== undefined) {
            fail(`property "${propertyName}" appears twice in the same ${lists.length === 0 ? 'item' : 'list'}`);
          }
          props[propertyName] = text;
          if (hasher !== undefined) hasher.property(propertyName, text);
          text = '';
          break;
        }
        case Where.List: {
          const closed = lists.pop()!.list;
          const parent = lists[lists.length - 1];
          if (parent) (parent.list.lists ??= []).push(closed);
          else item!.lists.push(closed);
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
        return;
      }
      if (where === Where.Info) return;
      const start = piece.search(/\S/);
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
        fail(`unexpected text "${after.trim().slice(0, 40)}"`, line, column);
      }
    },
  };
}
