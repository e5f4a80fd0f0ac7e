import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  type ReadOptions,
  readNotes,
  readNotesFromFile,
} from '../../../../layers/notes/src/readers/index.ts';
import type { NoteRecord, QuarantinedRecord, ReadItem } from '../../../../layers/notes/src/types.ts';
import { collectorWithPieces } from '../../../helpers/notes.ts';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/notes-formats');
const MIMIC3 = join(FIXTURES, 'NOTEEVENTS.csv');
const MIMIC4 = join(FIXTURES, 'discharge.csv');
const M3_HEADER =
  'ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT';

const collect = collectorWithPieces(7);

async function collectFile(path: string, options?: ReadOptions): Promise<ReadItem[]> {
  const items: ReadItem[] = [];
  for await (const item of readNotesFromFile(path, options)) items.push(item);
  return items;
}

const notes = (items: readonly ReadItem[]): NoteRecord[] =>
  items.flatMap((i) => (i.kind === 'note' ? [i.note] : []));
const quarantine = (items: readonly ReadItem[]): QuarantinedRecord[] =>
  items.flatMap((i) => (i.kind === 'quarantined' ? [i.quarantined] : []));

/** A MIMIC-III row with the given TEXT (quoted) and ids. */
function m3Row(rowId: string, text: string, extra: { iserror?: string; subject?: string } = {}): string {
  const quoted = `"${text.replaceAll('"', '""')}"`;
  return `${rowId},${extra.subject ?? '9'},100,2150-01-01,,,"Nursing","Report",,${extra.iserror ?? ''},${quoted}`;
}

describe('MIMIC-III NOTEEVENTS', () => {
  it('reads every row into a note with ids, type, date and multi-line text intact', async () => {
    const items = await collectFile(MIMIC3);
    expect(items).toHaveLength(5);
    const [first, second, radiology, ecg] = notes(items);
    expect(first).toEqual({
      noteId: '174',
      patientId: '22532',
      encounterId: '167853',
      noteType: 'Discharge summary: Report',
      noteDate: '2151-08-04',
      text: expect.stringContaining(
        'presented with "crushing" chest pain, radiating to the left arm.\nHe denies',
      ),
      source: { key: MIMIC3, row: 1, line: 2 },
    });
    expect(first!.text.startsWith('Admission Date:  [**2151-7-16**]')).toBe(true);
    expect(first!.text.endsWith('2. Metoprolol 25 mg p.o. b.i.d.\n')).toBe(true);
    expect(second).toMatchObject({ noteId: '1001', patientId: '13702', noteDate: '2118-06-12T14:20:00' });
    expect(second).not.toHaveProperty('encounterId');
    expect(radiology).toMatchObject({
      noteId: '2001',
      noteType: 'Radiology: CHEST (PORTABLE AP)',
      source: { row: 4, line: 21 },
    });
    expect(ecg).toMatchObject({
      noteId: '3001',
      noteType: 'ECG: Report',
      noteDate: '2130-02-04',
      source: { row: 5, line: 26 },
    });
  });

  it('excludes a row with ISERROR=1 and yields it as quarantined, so that it is counted', async () => {
    const items = await collectFile(MIMIC3);
    expect(notes(items).map((n) => n.noteId)).toEqual(['174', '1001', '2001', '3001']);
    expect(quarantine(items)).toEqual([
      { source: { key: MIMIC3, row: 3, line: 19 }, reason: 'marked as error (ISERROR=1)' },
    ]);
  });

  it('gives the same notes from a gzip copy, detected by its magic bytes whatever the name', async () => {
    const plain = await collectFile(MIMIC3);
    const gz = gzipSync(readFileSync(MIMIC3));
    for (const key of ['NOTEEVENTS.csv.gz', 'NOTEEVENTS.csv', 'incoming/blob']) {
      const items = await collect(key, gz);
      expect(items.map(withoutKey)).toEqual(plain.map(withoutKey));
    }
  });

  it('detects the layout from the header when the name says nothing', async () => {
    const items = await collect('upload-123', readFileSync(MIMIC3));
    expect(notes(items)).toHaveLength(4);
  });

  it('matches columns case-insensitively (database exports are lower-case)', async () => {
    const csv = `${M3_HEADER.toLowerCase()}\n${m3Row('1', 'Lower-case header.')}\n`;
    expect(notes(await collect('n.csv', csv))).toMatchObject([{ noteId: '1', text: 'Lower-case header.' }]);
  });

  it('drops a UTF-8 BOM before the header', async () => {
    const csv = `\uFEFF${M3_HEADER}\n${m3Row('1', 'After a BOM.')}\n`;
    expect(notes(await collect('n.csv', csv))).toMatchObject([{ noteId: '1', text: 'After a BOM.' }]);
  });

  it('reads CRLF line ends, keeping CRLF inside quoted text', async () => {
    const csv = `${M3_HEADER}\r\n${m3Row('1', 'Line one.\r\nLine two.')}\r\n${m3Row('2', 'Second.')}\r\n`;
    expect(notes(await collect('n.csv', csv)).map((n) => n.text)).toEqual([
      'Line one.\r\nLine two.',
      'Second.',
    ]);
  });

  it('drops the .0 of ids written as floats', async () => {
    const csv = `${M3_HEADER}\n174.0,22532.0,167853.0,2151-08-04,,,"Discharge summary","Report",,,"Text."\n`;
    expect(notes(await collect('n.csv', csv))[0]).toMatchObject({
      noteId: '174',
      patientId: '22532',
      encounterId: '167853',
    });
  });

  it('quarantines bad rows with their row number and reads the rows around them', async () => {
    const rows = [
      m3Row('1', 'Good one.'),
      m3Row('2', '   \n  '), // white space only
      '3,9,100,2150-01-01,,,"Nursing"', // too few fields
      m3Row('4', 'No subject.', { subject: '' }),
      '5,9,100,2150-13-45,,,"Nursing","Report",,,"Bad date."',
      m3Row('6', 'x'.repeat(300)),
      m3Row('7', 'Good two.'),
    ];
    const csv = `${M3_HEADER}\n${rows.join('\n')}\n`;
    const items = await collect('n.csv', csv, { limits: { maxNoteBytes: 200 } });
    expect(items).toHaveLength(rows.length);
    expect(notes(items).map((n) => [n.noteId, n.source.row])).toEqual([
      ['1', 1],
      ['7', 7],
    ]);
    expect(quarantine(items).map((q) => [q.source.row, q.reason])).toEqual([
      [2, 'empty note'],
      [3, 'wrong column count'],
      [4, 'missing patientId'],
      [5, 'invalid noteDate'],
      [6, 'note over limit'],
    ]);
    expect(quarantine(items)[1]!.detail).toBe('expected 11 fields, got 7');
  });

  it('skips a record over maxLineBytes without holding it, and finds the next record', async () => {
    const long = `Line with "quotes", commas,\nand line ends. `.repeat(2000);
    const csv = `${M3_HEADER}\n${m3Row('1', 'Before.')}\n${m3Row('2', long)}\n${m3Row('3', 'After.')}\n`;
    const items = await collect('n.csv', csv, { limits: { maxLineBytes: 4096 } });
    expect(items.map((i) => (i.kind === 'note' ? i.note.noteId : i.quarantined.reason))).toEqual([
      '1',
      'record over limit',
      '3',
    ]);
    expect(quarantine(items)[0]!.source.row).toBe(2);
  });

  it('holds no more than the limit of a huge quoted record while skipping it', async () => {
    const mib = Buffer.alloc(1024 * 1024, 'x');
    let peak = 0;
    global.gc?.();
    const m0 = process.memoryUsage();
    async function* body(): AsyncGenerator<Uint8Array> {
      yield Buffer.from(
        `${M3_HEADER}\n${m3Row('1', 'Before.')}\n2,9,100,2150-01-01,,,"Nursing","Report",,,"`,
      );
      for (let i = 0; i < 200; i++) {
        const m = process.memoryUsage();
        peak = Math.max(peak, m.heapUsed + m.arrayBuffers - m0.heapUsed - m0.arrayBuffers);
        yield mib; // 200 MiB of one TEXT field, no line end
      }
      yield Buffer.from(`"\n${m3Row('3', 'After.')}\n`);
    }
    const items: ReadItem[] = [];
    for await (const item of readNotes(
      { body: body(), key: 'n.csv' },
      { limits: { maxLineBytes: 1024 * 1024 } },
    )) {
      items.push(item);
    }
    expect(items.map((i) => (i.kind === 'note' ? i.note.noteId : i.quarantined.reason))).toEqual([
      '1',
      'record over limit',
      '3',
    ]);
    expect(peak).toBeLessThan(64 * 1024 * 1024);
  });

  it('quarantines a last row cut inside its quoted text (a truncated file)', async () => {
    const csv = `${M3_HEADER}\n${m3Row('1', 'Whole.')}\n2,9,100,2150-01-01,,,"Nursing","Report",,,"Cut in the mid`;
    const items = await collect('n.csv', csv);
    expect(notes(items)).toHaveLength(1);
    expect(quarantine(items)).toEqual([
      {
        source: { key: 'n.csv', row: 2, line: 3 },
        reason: 'malformed CSV row',
        detail: 'quote not closed at end of file',
      },
    ]);
  });

  it('quarantines a row with invalid UTF-8 by default, and keeps it with U+FFFD when asked to', async () => {
    const csv = Buffer.concat([
      Buffer.from(`${M3_HEADER}\n${m3Row('1', 'Caf')}`.slice(0, -1)),
      Buffer.from([0xe9]), // Latin-1 é
      Buffer.from(`"\n${m3Row('2', 'Fine.')}\n`),
    ]);
    const strict = await collect('n.csv', csv);
    expect(strict.map((i) => (i.kind === 'note' ? i.note.noteId : i.quarantined.reason))).toEqual([
      'invalid UTF-8',
      '2',
    ]);
    const lenient = await collect('n.csv', csv, { invalidUtf8: 'replace' });
    expect(notes(lenient).map((n) => n.text)).toEqual(['Caf\uFFFD', 'Fine.']);
  });

  it('reads a row with unescaped quotes in its text as one item, and the rows after keep their numbers', async () => {
    const bad = '2,9,100,2150-01-01,,,"Nursing","Report",,,"He said "stop, "now" please\nline two"';
    const csv = `${M3_HEADER}\n${m3Row('1', 'Before.')}\n${bad}\n\n${m3Row('3', 'After.')}\n${m3Row('4', 'Last.')}\n`;
    for (const items of [await collect('n.csv', csv), await collect('n.csv', csv.replaceAll('\n', '\r\n'))]) {
      expect(items).toHaveLength(4);
      expect(quarantine(items)).toEqual([]);
      expect(notes(items).map((n) => [n.noteId, n.source.row, n.source.line])).toEqual([
        ['1', 1, 2],
        ['2', 2, 3],
        ['3', 3, 6],
        ['4', 4, 7],
      ]);
      expect(notes(items)[1]!.text.replace('\r', '')).toBe('He said "stop, "now" please\nline two');
    }
  });

  it('gives every physical line to exactly one item, even when quoting swallows rows', async () => {
    // The closing quote of row 2 is missing: its text runs on into row 3 up to row 3's closing
    // quote. One quarantined item, on row 2's line; row 4 is read, numbered as the second row after.
    const bad = '2,9,100,2150-01-01,,,"Nursing","Report",,,"Never "closed';
    const csv = `${M3_HEADER}\n${m3Row('1', 'Before.')}\n${bad}\n${m3Row('3', 'Swallowed.')}\n${m3Row('4', 'After.')}\n`;
    const items = await collect('n.csv', csv);
    expect(items.map((i) => (i.kind === 'note' ? i.note.noteId : i.quarantined.reason))).toEqual([
      '1',
      'wrong column count',
      '4',
    ]);
    expect(quarantine(items)[0]!.source).toEqual({ key: 'n.csv', row: 2, line: 3 });
    expect(notes(items)[1]!.source).toEqual({ key: 'n.csv', row: 3, line: 5 });
  });

  it('quarantines a CSV with a header and no data row as an empty file', async () => {
    for (const csv of [`${M3_HEADER}\n`, `${M3_HEADER}\n\n\r\n`, '\n\n']) {
      expect(await collect('n.csv', csv)).toEqual([
        {
          kind: 'quarantined',
          quarantined: expect.objectContaining({ source: { key: 'n.csv' }, reason: 'empty file' }),
        },
      ]);
    }
  });

  it('quarantines the whole file when a required column is missing', async () => {
    const csv = 'ROW_ID,SUBJECT_ID,HADM_ID,CATEGORY\n1,2,3,"Nursing"\n';
    expect(await collect('n.csv', csv)).toEqual([
      {
        kind: 'quarantined',
        quarantined: {
          source: { key: 'n.csv' },
          reason: 'missing column TEXT',
          detail: 'required for mimic3',
        },
      },
    ]);
  });

  it('quarantines a CSV with neither layout as unknown format', async () => {
    const items = await collect('n.csv', 'a,b,c\n1,2,3\n');
    expect(quarantine(items).map((q) => q.reason)).toEqual(['unknown format']);
  });

  it('reads a MIMIC-IV file as MIMIC-III only when told to, and then misses its columns', async () => {
    const items = await collectFile(MIMIC4, { format: 'mimic3' });
    expect(quarantine(items).map((q) => q.reason)).toEqual(['missing column ROW_ID']);
  });
});

describe('MIMIC-IV-Note', () => {
  it('reads every row into a note', async () => {
    const items = await collectFile(MIMIC4);
    expect(quarantine(items)).toEqual([]);
    expect(notes(items).map(({ text: _, ...rest }) => rest)).toEqual([
      {
        noteId: '10000032-DS-21',
        patientId: '10000032',
        encounterId: '22595853',
        noteType: 'DS',
        noteDate: '2180-05-07T00:00:00',
        source: { key: MIMIC4, row: 1, line: 2 },
      },
      {
        noteId: '10000032-RR-14',
        patientId: '10000032',
        encounterId: '22595853',
        noteType: 'RR',
        noteDate: '2180-05-06T21:19:00',
        source: { key: MIMIC4, row: 2, line: 13 },
      },
      {
        noteId: '10000084-DS-17',
        patientId: '10000084',
        noteType: 'DS',
        noteDate: '2160-11-25T00:00:00',
        source: { key: MIMIC4, row: 3, line: 20 },
      },
    ]);
    const first = notes(items)[0]!.text;
    expect(first.startsWith(' \nName:  ___')).toBe(true);
    expect(first).toContain('Patient reports "tightness" of the abdomen');
  });

  it('reads with the format forced', async () => {
    expect(notes(await collect('whatever.bin', readFileSync(MIMIC4), { format: 'mimic4' }))).toHaveLength(3);
  });
});

function withoutKey(item: ReadItem): unknown {
  if (item.kind === 'note') return { ...item.note, source: { ...item.note.source, key: '' } };
  return { ...item.quarantined, source: { ...item.quarantined.source, key: '' } };
}
