/**
 * Goal: pin the claim behind models/property-order.ts, that the cloud writes
 * `productModuleNumber` first and then the other properties (and the lists)
 * in java.util.HashMap iteration order.
 * Method: take every validation item of the real JSON captures in
 * fixtures/json (signed Isb-DEMO 2020, Auth0 2021, C++ 2016) and check that
 * re-ordering its names by our function reproduces the captured order.
 */
import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SHARED_FIXTURES } from '../helpers.ts';
import { javaHashMapCapacity, javaHashMapOrder, javaStringHash } from '../../src/core/models/property-order.ts';

interface JsonItem {
  property: { name: string }[];
  list?: { name: string; property: { name: string }[] }[] | null;
  type?: string;
}

const CAPTURES = [
  'fixtures/json/derived/real--Isb-DEMO.signed-validate-subscription.json',
  'fixtures/json/other/auth0-readme-validate-subscription.json',
  'fixtures/json/cpp/licensee_validation_result_plain.json',
  'fixtures/json/cpp/licensee_validation_result_recursive.json',
];

function cloudOrder(names: string[]): string[] {
  const rest = names.filter((n) => n !== 'productModuleNumber');
  return [...(names.includes('productModuleNumber') ? ['productModuleNumber'] : []), ...javaHashMapOrder(rest).map((i) => rest[i]!)];
}

describe('java.util.HashMap order', () => {
  test('String.hashCode matches Java for known values', () => {
    expect(javaStringHash('')).toBe(0);
    expect(javaStringHash('a')).toBe(97);
    expect(javaStringHash('hello')).toBe(99162322);
    expect(javaStringHash('polygenelubricants')).toBe(-2147483648);
  });

  test('capacity doubles past 0.75 load', () => {
    expect(javaHashMapCapacity(0)).toBe(16);
    expect(javaHashMapCapacity(12)).toBe(16);
    expect(javaHashMapCapacity(13)).toBe(32);
    expect(javaHashMapCapacity(25)).toBe(64);
  });

  for (const file of CAPTURES) {
    test(`reproduces the order in ${file}`, () => {
      const json = JSON.parse(readFileSync(join(SHARED_FIXTURES, '..', file), 'utf8')) as { items: { item: JsonItem[] } };
      const items = json.items.item.filter((i) => i.type === 'ProductModuleValidation');
      expect(items.length).toBeGreaterThan(0);
      for (const item of items) {
        const names = item.property.map((p) => p.name);
        expect(cloudOrder(names)).toEqual(names);
        const lists = item.list ?? [];
        const listNames = lists.map((l) => l.name);
        // Lists share the item's HashMap: ordered among all names, they keep their captured order.
        const all = [...names.filter((n) => n !== 'productModuleNumber'), ...listNames];
        const listsInOrder = javaHashMapOrder(all).filter((i) => i >= all.length - listNames.length).map((i) => all[i]!);
        expect(listsInOrder).toEqual(listNames);
        for (const l of lists) {
          const inner = l.property.map((p) => p.name);
          expect(cloudOrder(inner)).toEqual(inner);
        }
      }
    });
  }
});
