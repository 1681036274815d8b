/**
 * Renders an Envelope as the cloud's JSON twin (netlicensing-api.md §2.3):
 * every value a string, info types in upper case, `ttl` an ISO string,
 * empty collections as `[]`, `signature`/`id` null. Key order follows the
 * cloud's serialiser (value before name), which some tests pin.
 */
import type { Envelope, WireItem, WireList } from '../core/envelope.ts';

interface JsonList {
  property: { value: string; name: string }[];
  list: JsonList[];
  name: string;
}

function toJsonList(list: WireList): JsonList {
  return {
    property: list.properties.map(([name, value]) => ({ value, name })),
    list: list.lists.map(toJsonList),
    name: list.name,
  };
}

// Items are never changed once built, and the core hands out the same item object again while a
// module's decision is reused (core/validate.ts): an item's JSON is rendered once, weakly held.
const ITEM_JSON = new WeakMap<WireItem, string>();

function itemJson(item: WireItem): string {
  let text = ITEM_JSON.get(item);
  if (text === undefined) {
    text = JSON.stringify({
      property: item.properties.map(([name, value]) => ({ value, name })),
      list: item.lists.map(toJsonList),
      type: item.type,
    });
    ITEM_JSON.set(item, text);
  }
  return text;
}

/** The JSON of `value` (a string or absent): what JSON.stringify writes for it inside an object. */
const scalar = (value: string | undefined): string => (value === undefined ? 'null' : JSON.stringify(value));

const NO_PAGING = '"pagenumber":null,"itemsnumber":null,"totalpages":null,"totalitems":null,"hasnext":null';

// Written as JSON.stringify would write the envelope object (same keys, same order, no spaces),
// item by item so that reused items cost a lookup.
export function renderJson(envelope: Envelope): string {
  const paging = envelope.paging;
  let items = '';
  for (const item of envelope.items) items += (items === '' ? '' : ',') + itemJson(item);
  const infos = envelope.infos.length === 0 ? '[]' : JSON.stringify(envelope.infos.map((i) => ({ value: i.value, id: i.id, type: i.type })));
  const pagingJson = paging
    ? `"pagenumber":${scalar(paging.pagenumber)},"itemsnumber":${scalar(paging.itemsnumber)},"totalpages":${scalar(paging.totalpages)},` +
      `"totalitems":${scalar(paging.totalitems)},"hasnext":${scalar(paging.hasnext)}`
    : NO_PAGING;
  return `{"signature":null,"infos":{"info":${infos}},"items":{"item":[${items}],${pagingJson}},"id":${scalar(envelope.id)},"ttl":${scalar(envelope.ttl)}}`;
}
