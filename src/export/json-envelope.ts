/**
 * Reads the NetLicensing JSON envelope (netlicensing-api.md §2.3) into plain
 * values: infos, typed items as Entity values, and the paging attributes of
 * `items`. Pure; no I/O.
 *
 * Tolerates both shapes the cloud has emitted: the modern one (`signature`,
 * empty collections as `[]`) and the 2016 one (`Signature`, `null` for empty
 * `info`/`item`/`list`). Values are kept exactly as sent; a number or boolean
 * where a string belongs is turned into its text, a null value drops the
 * property (the cloud never stores empty values, custom-properties.md).
 */
import { isEntityKind, type Entity, type EntityKind, type EntityList } from '../core/entities.ts';

export interface EnvelopeInfo {
  id: string;
  /** Upper case as in the JSON twin: ERROR, WARNING, INFO (lower-case input is normalised). */
  type: string;
  value: string;
}

export interface EnvelopeItem {
  type: string;
  props: Record<string, string>;
  lists: EntityList[];
}

/** Paging attributes of `items`, as sent (strings); undefined when the server sent none. */
export interface EnvelopePaging {
  pagenumber?: string;
  itemsnumber?: string;
  totalpages?: string;
  totalitems?: string;
  hasnext?: string;
}

export interface ParsedEnvelope {
  infos: EnvelopeInfo[];
  items: EnvelopeItem[];
  paging: EnvelopePaging;
}

/** The body is not a NetLicensing JSON envelope; the message says where it went wrong. */
export class EnvelopeFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeFormatError';
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: unknown): value is Record<string, Json> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `null`, a missing key and `[]` all mean "none"; a single object is accepted as a one-element list. */
function asArray(value: Json | undefined, where: string): Json[] {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value;
  if (isObject(value)) return [value];
  throw new EnvelopeFormatError(`${where} is neither a list nor an object`);
}

function asText(value: Json | undefined): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

function readProperties(value: Json | undefined, where: string): Record<string, string> {
  const props: Record<string, string> = {};
  asArray(value, `${where}.property`).forEach((entry, index) => {
    if (!isObject(entry)) throw new EnvelopeFormatError(`${where}.property[${index}] is not an object`);
    const name = entry['name'];
    if (typeof name !== 'string' || name === '') {
      throw new EnvelopeFormatError(`${where}.property[${index}] has no name`);
    }
    const text = asText(entry['value']);
    if (text !== undefined) props[name] = text;
  });
  return props;
}

function readLists(value: Json | undefined, where: string): EntityList[] {
  return asArray(value, `${where}.list`).map((entry, index) => {
    const here = `${where}.list[${index}]`;
    if (!isObject(entry)) throw new EnvelopeFormatError(`${here} is not an object`);
    const name = entry['name'];
    if (typeof name !== 'string') throw new EnvelopeFormatError(`${here} has no name`);
    const list: EntityList = { name, props: readProperties(entry['property'], here) };
    const nested = readLists(entry['list'], here);
    if (nested.length > 0) list.lists = nested;
    return list;
  });
}

/** Parses a response body; throws EnvelopeFormatError when it is not the envelope. */
export function parseJsonEnvelope(body: string): ParsedEnvelope {
  let root: Json;
  try {
    root = JSON.parse(body) as Json;
  } catch (error) {
    throw new EnvelopeFormatError(`not JSON (${(error as Error).message})`);
  }
  if (!isObject(root)) throw new EnvelopeFormatError('the top level is not an object');
  if (!('infos' in root) && !('items' in root)) {
    throw new EnvelopeFormatError('neither "infos" nor "items" present');
  }

  const infos: EnvelopeInfo[] = [];
  const infosNode = root['infos'];
  if (infosNode !== undefined && infosNode !== null) {
    if (!isObject(infosNode)) throw new EnvelopeFormatError('"infos" is not an object');
    asArray(infosNode['info'], 'infos.info').forEach((entry, index) => {
      if (!isObject(entry)) throw new EnvelopeFormatError(`infos.info[${index}] is not an object`);
      infos.push({
        id: asText(entry['id']) ?? '',
        type: (asText(entry['type']) ?? '').toUpperCase(),
        value: asText(entry['value']) ?? '',
      });
    });
  }

  const items: EnvelopeItem[] = [];
  const paging: EnvelopePaging = {};
  const itemsNode = root['items'];
  if (itemsNode !== undefined && itemsNode !== null) {
    if (!isObject(itemsNode)) throw new EnvelopeFormatError('"items" is not an object');
    asArray(itemsNode['item'], 'items.item').forEach((entry, index) => {
      const where = `items.item[${index}]`;
      if (!isObject(entry)) throw new EnvelopeFormatError(`${where} is not an object`);
      const type = entry['type'];
      if (typeof type !== 'string') throw new EnvelopeFormatError(`${where} has no type`);
      items.push({ type, props: readProperties(entry['property'], where), lists: readLists(entry['list'], where) });
    });
    for (const key of ['pagenumber', 'itemsnumber', 'totalpages', 'totalitems', 'hasnext'] as const) {
      const text = asText(itemsNode[key]);
      if (text !== undefined) paging[key] = text;
    }
  }
  return { infos, items, paging };
}

/**
 * The item as an Entity of the expected kind. Throws EnvelopeFormatError
 * when the item is of another type or has no number.
 */
export function itemToEntity(item: EnvelopeItem, kind: EntityKind): Entity {
  if (!isEntityKind(item.type) || item.type !== kind) {
    throw new EnvelopeFormatError(`expected an item of type ${kind}, got ${item.type}`);
  }
  const number = item.props['number'];
  if (number === undefined || number === '') {
    throw new EnvelopeFormatError(`${kind} item without a number`);
  }
  const entity: Entity = { kind, number, props: { ...item.props } };
  if (item.lists.length > 0) entity.lists = item.lists;
  return entity;
}
