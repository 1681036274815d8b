/**
 * Renders an Envelope as the cloud's JSON twin (netlicensing-api.md §2.3):
 * every value a string, info types in upper case, `ttl` an ISO string,
 * empty collections as `[]`, `signature`/`id` null. Key order follows the
 * cloud's serialiser (value before name), which some tests pin.
 */
import type { Envelope, WireList } from '../core/envelope.ts';

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

export function renderJson(envelope: Envelope): string {
  const paging = envelope.paging;
  return JSON.stringify({
    signature: null,
    infos: { info: envelope.infos.map((i) => ({ value: i.value, id: i.id, type: i.type })) },
    items: {
      item: envelope.items.map((item) => ({
        property: item.properties.map(([name, value]) => ({ value, name })),
        list: item.lists.map(toJsonList),
        type: item.type,
      })),
      pagenumber: paging?.pagenumber ?? null,
      itemsnumber: paging?.itemsnumber ?? null,
      totalpages: paging?.totalpages ?? null,
      totalitems: paging?.totalitems ?? null,
      hasnext: paging?.hasnext ?? null,
    },
    id: envelope.id ?? null,
    ttl: envelope.ttl ?? null,
  });
}
