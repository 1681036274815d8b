// Goal: whatever a value holds, the XML escapers give text an XML 1.0 parser accepts (answers,
// transfer files): markup and CR/LF/tab are escaped and come back unchanged; the characters XML
// does not allow even as references come back as U+FFFD. Method: escape, parse with saxes (the
// importer's parser), compare.
import { describe, expect, test } from 'bun:test';
import { SaxesParser } from 'saxes';
import { escapeAttribute, escapeText } from '../../src/wire/xml.ts';

function parsed(value: string): { text: string; attribute: string } {
  const parser = new SaxesParser();
  let text = '';
  let attribute = '';
  parser.on('text', (t) => (text += t));
  parser.on('opentag', (tag) => (attribute = String(tag.attributes['a'])));
  parser.write(`<x a="${escapeAttribute(value)}">${escapeText(value)}</x>`).close();
  return { text, attribute };
}

describe('XML escaping', () => {
  test('markup, quotes and line ends survive a parse unchanged', () => {
    const value = 'a & b < c > d " e \r\n f \t g ä 😀';
    expect(parsed(value)).toEqual({ text: value, attribute: value });
  });

  test('characters XML 1.0 does not allow become U+FFFD instead of breaking the document', () => {
    const forbidden = [0x0, 0x1, 0x8, 0xb, 0xc, 0xe, 0x1f, 0xfffe, 0xffff].map((code) => String.fromCharCode(code));
    for (const c of forbidden) {
      expect(parsed(`x${c}y`)).toEqual({ text: 'x\uFFFDy', attribute: 'x\uFFFDy' });
    }
  });
});
