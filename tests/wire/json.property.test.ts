/**
 * Goal: the JSON renderer (written item by item, items rendered once) writes
 * exactly what JSON.stringify writes for the cloud-shaped envelope object.
 * Method: fast-check envelopes (infos, items with nested lists, paging, id,
 * ttl; strings with quotes, backslashes, control and non-ASCII characters)
 * rendered by renderJson and by JSON.stringify of the object the renderer
 * used to build; the same item rendered twice (its cached text) agrees too.
 */
import { expect, test } from 'bun:test';
import fc from 'fast-check';
import type { Envelope, WireItem, WireList } from '../../src/core/envelope.ts';
import { renderJson } from '../../src/wire/json.ts';

interface JsonList {
  property: { value: string; name: string }[];
  list: JsonList[];
  name: string;
}
const toJsonList = (list: WireList): JsonList => ({
  property: list.properties.map(([name, value]) => ({ value, name })),
  list: list.lists.map(toJsonList),
  name: list.name,
});
const reference = (envelope: Envelope): string =>
  JSON.stringify({
    signature: null,
    infos: { info: envelope.infos.map((i) => ({ value: i.value, id: i.id, type: i.type })) },
    items: {
      item: envelope.items.map((item) => ({
        property: item.properties.map(([name, value]) => ({ value, name })),
        list: item.lists.map(toJsonList),
        type: item.type,
      })),
      pagenumber: envelope.paging?.pagenumber ?? null,
      itemsnumber: envelope.paging?.itemsnumber ?? null,
      totalpages: envelope.paging?.totalpages ?? null,
      totalitems: envelope.paging?.totalitems ?? null,
      hasnext: envelope.paging?.hasnext ?? null,
    },
    id: envelope.id ?? null,
    ttl: envelope.ttl ?? null,
  });

const text = fc.oneof(fc.string(), fc.constantFrom('"', '\\', '\n\t\u0000', 'ä€😀', '\u2028', '</x>'));
const property = fc.tuple(text, text);
const list = fc.letrec<{ list: WireList }>((tie) => ({
  list: fc.record({
    name: text,
    properties: fc.array(property, { maxLength: 4 }),
    lists: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constant<WireList[]>([]), fc.array(tie('list'), { maxLength: 2 })),
  }),
})).list;
const item: fc.Arbitrary<WireItem> = fc.record({ type: text, properties: fc.array(property, { maxLength: 6 }), lists: fc.array(list, { maxLength: 3 }) });
const envelope: fc.Arbitrary<Envelope> = fc.record(
  {
    infos: fc.array(fc.record({ id: text, type: fc.constantFrom('ERROR', 'WARNING', 'INFO'), value: text }), { maxLength: 3 }),
    items: fc.array(item, { maxLength: 4 }),
    ttl: text,
    id: text,
    paging: fc.record({ pagenumber: text, itemsnumber: text, totalpages: text, totalitems: text, hasnext: fc.constantFrom('true', 'false') }),
  },
  { requiredKeys: ['infos', 'items'] },
) as fc.Arbitrary<Envelope>;

test('renderJson writes what JSON.stringify writes for the envelope object, reused items included', () => {
  fc.assert(
    fc.property(envelope, (e) => {
      expect(renderJson(e)).toBe(reference(e));
      // Again: every item now comes from the renderer's cache.
      expect(renderJson({ ...e, items: [...e.items, ...e.items] })).toBe(reference({ ...e, items: [...e.items, ...e.items] }));
    }),
    { numRuns: 2000 },
  );
});
