import { describe, expect, it } from 'vitest';
import {
  type CsvRecordBytes,
  CsvRecordSplitter,
  parseCsvFields,
} from '../../../../layers/notes/src/readers/csv.ts';

/** Splits `data` with pieces of `size` bytes. */
function split(data: Buffer, size: number, max = 1 << 20): CsvRecordBytes[] {
  const splitter = new CsvRecordSplitter(max);
  const out: CsvRecordBytes[] = [];
  for (let i = 0; i < data.length; i += size) splitter.push(data.subarray(i, i + size), out);
  splitter.end(out);
  return out;
}

const view = (records: readonly CsvRecordBytes[]) =>
  records.map((r) =>
    r.kind === 'record'
      ? {
          index: r.index,
          line: r.line,
          text: r.bytes.toString('utf8'),
          unterminated: r.unterminated,
        }
      : { index: r.index, line: r.line, text: undefined, unterminated: false },
  );

describe('CSV record splitter and field parser', () => {
  it('reads unescaped quotes inside a quoted field as text, in one record', () => {
    const data = Buffer.from('a,b\n1,"He said "stop, "now" please\nline two"\n2,"ok"\n');
    const records = view(split(data, 1 << 16));
    expect(records).toEqual([
      { index: 0, line: 1, text: 'a,b', unterminated: false },
      { index: 1, line: 2, text: '1,"He said "stop, "now" please\nline two"', unterminated: false },
      { index: 2, line: 4, text: '2,"ok"', unterminated: false },
    ]);
    expect(parseCsvFields(records[1]!.text!)).toEqual(['1', 'He said "stop, "now" please\nline two']);
  });

  it('parses fields: escapes, literal quotes, text after a closing quote, empty fields', () => {
    expect(parseCsvFields('')).toEqual(['']);
    expect(parseCsvFields('a,,"b ""c""",')).toEqual(['a', '', 'b "c"', '']);
    expect(parseCsvFields('x "y" z,"q"\rtail,"r"')).toEqual(['x "y" z', 'q\rtail', 'r']);
    // A quote followed by anything but a comma, CR, LF or the end is text: the field goes on.
    expect(parseCsvFields('"q"tail,"r"')).toEqual(['q"tail,"r']);
    expect(parseCsvFields('"open, never closed')).toBeUndefined();
  });

  it('counts physical lines across empty lines, CRLF and quoted line ends', () => {
    const data = Buffer.from('h\r\n\r\n"a\nb"\r\n\n\nc\n"d\n');
    const records = view(split(data, 3));
    expect(records.map((r) => ('line' in r ? r.line : -1))).toEqual([1, 3, 7, 8]);
    expect(records.at(-1)).toMatchObject({ unterminated: true });
  });

  it('agrees with the field parser and with itself, whatever the input and chunking', () => {
    // Deterministic pseudo-random CSV-ish input, malformed quoting included.
    let seed = 12345;
    const next = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const alphabet = ['a', 'b', ',', '"', '"', '\n', '\r', ' ', 'é'];
    for (let round = 0; round < 300; round++) {
      let s = '';
      const length = next() % 80;
      for (let i = 0; i < length; i++) s += alphabet[next() % alphabet.length];
      const data = Buffer.from(s, 'utf8');
      const whole = view(split(data, data.length + 1));
      for (const size of [1, 2, 5]) expect(view(split(data, size))).toEqual(whole);
      for (const r of whole) {
        if (r.text === undefined || r.unterminated) continue;
        expect(parseCsvFields(r.text), JSON.stringify(r.text)).toBeDefined();
      }
      // Records start on increasing lines, never past the data's last line.
      const lines = whole.map((r) => r.line);
      expect(lines).toEqual([...lines].sort((x, y) => x - y));
      expect(new Set(lines).size).toBe(lines.length);
      for (const line of lines) expect(line).toBeLessThanOrEqual(s.split('\n').length);
    }
  });
});
