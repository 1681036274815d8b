/**
 * Goal: validate parameter parsing (API spec §4.1) — indexed and un-indexed
 * module parameters, flags, reserved names, licensee properties, odd input.
 * Method: parse decoded pairs and compare the ValidateRequest.
 */
import { describe, expect, test } from 'bun:test';
import { indexedOwner, lengthsOf, parseValidateParameters } from '../../src/core/params.ts';
import type { ModuleParameters } from '../../src/core/validate-types.ts';

const parse = (body: string, get = false) => parseValidateParameters([...new URLSearchParams(body)], get);

describe('parseValidateParameters', () => {
  test('the JS client body: flags, licensee properties and two modules', () => {
    const r = parse(
      'productNumber=P-DEMO&licenseeName=Jane%20Doe%20%26%20Co&email=jane%40example.com&forOfflineUse=true&dryRun=true' +
        '&productModuleNumber0=M-FLOAT&sessionId0=host-1%20session&action0=checkOut&productModuleNumber1=M-PPU&usedQuantity1=3',
    );
    expect(r.dryRun).toBe(true);
    expect(r.forOfflineUse).toBe(true);
    expect(r.deprecatedGet).toBe(false);
    expect(r.licenseeProperties).toEqual({ email: 'jane@example.com' });
    expect([...r.modules]).toEqual([
      ['M-FLOAT', { sessionId: 'host-1 session', action: 'checkOut' }],
      ['M-PPU', { usedQuantity: '3' }],
    ]);
  });

  test('modules keep the order the client named them; unknown module parameters are kept for the model to ignore', () => {
    const r = parse('productModuleNumber1=B&xParameter1=X1&productModuleNumber0=A&xParameter0=X0&paramKey0=paramValue');
    expect([...r.modules]).toEqual([
      ['B', { xParameter: 'X1' }],
      ['A', { xParameter: 'X0', paramKey: 'paramValue' }],
    ]);
    expect(r.licenseeProperties).toEqual({});
  });

  test('the un-indexed form is one implicit module', () => {
    const r = parse('dryRun=true&productModuleNumber=MIRAAAHX4&action=checkOut&sessionId=session0');
    expect([...r.modules]).toEqual([['MIRAAAHX4', { action: 'checkOut', sessionId: 'session0' }]]);
    expect(r.dryRun).toBe(true);
  });

  test('un-indexed module parameters without a module, or with an index nobody named, are dropped', () => {
    const r = parse('nodeSecret=abc&usedQuantity5=3&productModuleNumber0=A&nodeSecret0=s');
    expect([...r.modules]).toEqual([['A', { nodeSecret: 's' }]]);
    expect(r.licenseeProperties).toEqual({});
  });

  test('keys with digits that name no module are licensee properties', () => {
    const r = parse('productModuleNumber0=A&address2=Main%20St&crmCustomerId=cust1234&empty=');
    expect(r.licenseeProperties).toEqual({ address2: 'Main St', crmCustomerId: 'cust1234' });
  });

  test('a stem that ends in digits still finds its module (longest matching index first)', () => {
    const r = parse('productModuleNumber0=A&productModuleNumber10=B&param10=x&option20=y');
    expect(r.modules.get('B')).toEqual({ param: 'x' });
    expect(r.modules.get('A')).toEqual({ option2: 'y' });
  });

  test('a key ending in many digits: the lookups are only as many as the named indices have lengths', () => {
    // Every suffix of such a key was looked up (hashed) once: ~100 ms for one 64 KiB request.
    const digits = '1'.repeat(1_000);
    const r = parse(`productModuleNumber0=A&productModuleNumber11=B&x${digits}=1&usedQuantity${digits}0=2`);
    expect(r.modules.get('B')).toEqual({ [`x${digits.slice(2)}`]: '1' });
    expect(r.modules.get('A')).toEqual({ [`usedQuantity${digits}`]: '2' });

    const looked: string[] = [];
    class CountingMap extends Map<string, ModuleParameters> {
      override get(key: string) {
        looked.push(key);
        return super.get(key);
      }
    }
    const byIndex = new CountingMap([['0', {}], ['11', {}], ['7', {}]]);
    expect(lengthsOf(['', '0', '11', '7'])).toEqual([2, 1]);
    expect(indexedOwner(`x${digits}`, byIndex, [2, 1])?.stem).toBe(`x${digits.slice(2)}`);
    expect(looked).toEqual(['11']);
    looked.length = 0;
    expect(indexedOwner(`x${digits}2`, byIndex, [2, 1])).toBeUndefined();
    expect(looked).toEqual(['12', '2']);
  });

  test('the same module under two indices merges, the first index winning', () => {
    const r = parse('productModuleNumber0=A&usedQuantity0=1&productModuleNumber1=A&usedQuantity1=2&nodeSecret1=n');
    expect([...r.modules]).toEqual([['A', { usedQuantity: '1', nodeSecret: 'n' }]]);
  });

  test('a repeated key counts once, first value wins; empty module numbers are ignored', () => {
    const r = parse('productModuleNumber0=A&usedQuantity0=1&usedQuantity0=9&productModuleNumber1=');
    expect([...r.modules]).toEqual([['A', { usedQuantity: '1' }]]);
  });

  test('flags are case-insensitive "true"; anything else is false; reserved names are not licensee properties', () => {
    const r = parse('dryRun=TRUE&forOfflineUse=yes&licenseeSecret=s&vendorNumber=V&productNumber=P');
    expect(r.dryRun).toBe(true);
    expect(r.forOfflineUse).toBe(false);
    expect(r.licenseeProperties).toEqual({});
  });

  test('empty input and the deprecated GET flag', () => {
    const r = parse('', true);
    expect(r).toEqual({ dryRun: false, forOfflineUse: false, modules: new Map(), licenseeProperties: {}, deprecatedGet: true });
  });
});
