import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readNotes, readNotesFromFile } from '../../../../layers/notes/src/readers/index.ts';
import type { NoteRecord, QuarantinedRecord, ReadItem } from '../../../../layers/notes/src/types.ts';
import { collectorWithPieces, drain } from '../../../helpers/notes.ts';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/notes-formats');
const FHIR = join(FIXTURES, 'DocumentReference.ndjson');
const JSONL = join(FIXTURES, 'notes.jsonl');

const collect = collectorWithPieces(11);

const notes = (items: readonly ReadItem[]): NoteRecord[] =>
  items.flatMap((i) => (i.kind === 'note' ? [i.note] : []));
const quarantine = (items: readonly ReadItem[]): QuarantinedRecord[] =>
  items.flatMap((i) => (i.kind === 'quarantined' ? [i.quarantined] : []));
/** Each item as its note id or its line and reason. */
const outline = (items: readonly ReadItem[]) =>
  items.map((i) =>
    i.kind === 'note' ? i.note.noteId : `${i.quarantined.source.line}: ${i.quarantined.reason}`,
  );

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
function docRef(fields: Record<string, unknown>): string {
  return JSON.stringify({
    resourceType: 'DocumentReference',
    id: 'd',
    status: 'current',
    subject: { reference: 'Patient/p' },
    content: [{ attachment: { contentType: 'text/plain', data: b64('Some note.') } }],
    ...fields,
  });
}

describe('FHIR DocumentReference NDJSON', () => {
  it('reads DocumentReferences into notes and quarantines the rest, line by line', async () => {
    const items = await drain(readNotesFromFile(FHIR));
    expect(notes(items)).toEqual([
      {
        noteId: 'doc-1',
        patientId: 'pat-1',
        encounterId: 'enc-1',
        noteType: 'Discharge summary',
        noteDate: '2021-03-04T10:00:00Z',
        text: 'DISCHARGE SUMMARY\n\nHospital course: fever to 38.5 °C on day 2, resolved with acetaminophen.\nNo chest pain.\n',
        source: { key: FHIR, line: 1 },
      },
      {
        noteId: 'doc-2',
        patientId: 'pat-2',
        noteType: 'Progress note',
        noteDate: '2021-03-05',
        text: 'S: feels better.\nO: afebrile.\nA/P: continue current plan.',
        source: { key: FHIR, line: 2 },
      },
    ]);
    expect(quarantine(items)).toEqual([
      { source: { key: FHIR, line: 3 }, reason: 'attachment by URL only (not fetched)' },
      {
        source: { key: FHIR, line: 4 },
        reason: 'unsupported resourceType',
        detail: 'resourceType Patient, expected DocumentReference',
      },
      { source: { key: FHIR, line: 5 }, reason: 'marked as error (status entered-in-error)' },
    ]);
  });

  it('gives the same items from a gzip copy with any name', async () => {
    const plain = outline(await drain(readNotesFromFile(FHIR)));
    const gz = gzipSync(readFileSync(FHIR));
    expect(outline(await collect('DocumentReference.ndjson.gz', gz))).toEqual(plain);
    expect(outline(await collect('export/000001', gz))).toEqual(plain);
  });

  it('reads with the format forced', async () => {
    const items = await collect('x.dat', readFileSync(FHIR), { format: 'fhir' });
    expect(notes(items).map((n) => n.noteId)).toEqual(['doc-1', 'doc-2']);
  });

  it('quarantines each kind of unreadable DocumentReference and reads the good ones around them', async () => {
    const lines = [
      docRef({ id: 'good-1' }),
      docRef({ content: [{ attachment: { contentType: 'text/plain', data: 'not base64!' } }] }),
      docRef({
        content: [{ attachment: { contentType: 'text/plain; charset=ISO-8859-1', data: b64('x') } }],
      }),
      docRef({ content: [{ attachment: { contentType: 'application/pdf', data: b64('%PDF') } }] }),
      docRef({ subject: { reference: 'Group/g1' } }),
      docRef({ id: undefined }),
      docRef({ content: [{ attachment: { contentType: 'text/plain', data: b64(' \n\t ') } }] }),
      docRef({ date: '04/03/2021' }),
      docRef({ id: 'good-2' }),
    ];
    const items = await collect('DocumentReference.ndjson', `${lines.join('\n')}\n`);
    expect(items).toHaveLength(lines.length);
    expect(outline(items)).toEqual([
      'good-1',
      '2: invalid base64',
      '3: unsupported charset',
      '4: no text/plain attachment',
      '5: missing patientId',
      '6: missing noteId',
      '7: empty note',
      '8: invalid noteDate',
      'good-2',
    ]);
    expect(quarantine(items)[2]!.detail).toBe('content types: application/pdf');
  });

  it('detects FHIR from a first line too long to parse during detection', async () => {
    const big = docRef({
      id: 'big',
      content: [{ attachment: { contentType: 'text/plain', data: b64('z'.repeat(200_000)) } }],
    });
    const items = await collect('export.ndjson', `${big}\n`);
    expect(notes(items).map((n) => [n.noteId, n.text.length])).toEqual([['big', 200_000]]);
  });

  it('checks the size of an attachment before decoding it', async () => {
    const line = docRef({
      content: [{ attachment: { contentType: 'text/plain', data: b64('y'.repeat(5000)) } }],
    });
    const items = await collect('d.ndjson', line, { limits: { maxNoteBytes: 1000 } });
    expect(quarantine(items)).toEqual([
      {
        source: { key: 'd.ndjson', line: 1 },
        reason: 'note over limit',
        detail: '5000 bytes, maxNoteBytes 1000',
      },
    ]);
  });

  it('quarantines an attachment that is not UTF-8, or keeps it with U+FFFD when asked to', async () => {
    const data = Buffer.from([0x43, 0x61, 0x66, 0xe9]).toString('base64'); // "Caf" + Latin-1 é
    const line = docRef({ content: [{ attachment: { contentType: 'text/plain', data } }] });
    expect(quarantine(await collect('d.ndjson', line)).map((q) => q.reason)).toEqual(['invalid UTF-8']);
    expect(notes(await collect('d.ndjson', line, { invalidUtf8: 'replace' }))[0]!.text).toBe('Caf\uFFFD');
  });
});

describe('JSONL notes', () => {
  it('reads the documented schema, integer ids and null optionals included', async () => {
    const items = await drain(readNotesFromFile(JSONL));
    const obgyn = readFileSync(
      join(import.meta.dirname, '../../../fixtures/notes/OBGYN_LaborProgressNote_1'),
      'utf8',
    );
    expect(notes(items)).toEqual([
      {
        noteId: 'n-1',
        patientId: 'p-1',
        encounterId: 'e-1',
        noteType: 'Labor progress note',
        noteDate: '2012-05-01T06:30:00',
        text: obgyn,
        source: { key: JSONL, line: 1 },
      },
      {
        noteId: '42',
        patientId: '7',
        text: 'Follow-up visit.\nWound healing well; no erythema.\n',
        source: { key: JSONL, line: 2 },
      },
      {
        noteId: 'n-3',
        patientId: 'p-1',
        noteDate: '2012-05-02',
        text: 'Discharged home in stable condition.',
        source: { key: JSONL, line: 3 },
      },
    ]);
  });

  it('quarantines bad lines with their line number and reads the lines around them', async () => {
    const lines = [
      '{"noteId":"a","patientId":"p","text":"First."}',
      '',
      '{"noteId":"b","patientId":"p","text":"Unclosed',
      '["an","array"]',
      '{"noteId":"c","patientId":"p","text":17}',
      '{"noteId":"d","patientId":{"id":"p"},"text":"Object id."}',
      '{"patientId":"p","text":"No note id."}',
      '{"noteId":"f","patientId":"p","text":"   "}',
      '{"noteId":"g","patientId":"p","noteType":3,"text":"Typed."}',
      '{"noteId":"h","patientId":"p","noteDate":"yesterday","text":"Dated."}',
      '{"noteId":"i","patientId":"p","text":"Last."}',
    ];
    const items = await collect('notes.jsonl', lines.join('\r\n'));
    expect(items).toHaveLength(lines.filter((l) => l !== '').length);
    expect(outline(items)).toEqual([
      'a',
      '3: malformed JSON',
      '4: not a JSON object',
      '5: invalid text',
      '6: invalid patientId',
      '7: missing noteId',
      '8: empty note',
      '9: invalid noteType',
      '10: invalid noteDate',
      'i',
    ]);
    expect(quarantine(items)[2]!.detail).toBe('expected a string, got number');
    // No note text in any detail.
    for (const q of quarantine(items)) expect(q.detail ?? '').not.toMatch(/Unclosed|Object id|Typed|Dated/);
  });

  it('detects JSONL from the first record when the name says nothing, and drops a BOM', async () => {
    const items = await collect('upload', '\uFEFF{"noteId":"a","patientId":"p","text":"Hello."}\n');
    expect(notes(items)).toEqual([
      { noteId: 'a', patientId: 'p', text: 'Hello.', source: { key: 'upload', line: 1 } },
    ]);
  });

  it('quarantines a line over maxLineBytes as it streams past, without holding it', async () => {
    const mib = Buffer.alloc(1024 * 1024, 'x');
    let peak = 0;
    const sample = () => {
      const m = process.memoryUsage();
      peak = Math.max(peak, m.heapUsed + m.arrayBuffers);
    };
    global.gc?.();
    const m0 = process.memoryUsage();
    const base = m0.heapUsed + m0.arrayBuffers;
    async function* body(): AsyncGenerator<Uint8Array> {
      yield Buffer.from(
        '{"noteId":"a","patientId":"p","text":"Before."}\n{"noteId":"big","patientId":"p","text":"',
      );
      for (let i = 0; i < 200; i++) {
        sample();
        yield mib; // 200 MiB on one line
      }
      yield Buffer.from('"}\n{"noteId":"c","patientId":"p","text":"After."}\n');
    }
    const items = await drain(
      readNotes({ body: body(), key: 'big.jsonl' }, { limits: { maxLineBytes: 1024 } }),
    );
    expect(outline(items)).toEqual(['a', '2: line over limit', 'c']);
    const lineBytes = '{"noteId":"big","patientId":"p","text":"'.length + 200 * mib.length + '"}'.length;
    expect(quarantine(items)[0]!.detail).toBe(`${lineBytes} bytes, maxLineBytes 1024`);
    expect(peak - base).toBeLessThan(64 * 1024 * 1024);
  });

  it('quarantines text with a lone surrogate by default, and replaces it under replace', async () => {
    // JSON escapes can make a string that is no Unicode text: bytes valid UTF-8, text not.
    const jsonl = [
      '{"noteId":"a","patientId":"p","text":"Before \\ud800 after"}',
      '{"noteId":"b","patientId":"p","text":"Trail \\udc00"}',
      '{"noteId":"c","patientId":"p","text":"Pair \\ud83d\\ude00 ok"}',
    ].join('\n');
    const strict = await collect('n.jsonl', jsonl);
    expect(outline(strict)).toEqual(['1: invalid UTF-8', '2: invalid UTF-8', 'c']);
    expect(notes(strict)[0]!.text).toBe('Pair \u{1f600} ok');
    const lenient = await collect('n.jsonl', jsonl, { invalidUtf8: 'replace' });
    expect(notes(lenient).map((n) => n.text)).toEqual([
      'Before \uFFFD after',
      'Trail \uFFFD',
      'Pair \u{1f600} ok',
    ]);
  });

  it('quarantines a file of blank lines as an empty file, as it does a 0-byte one', async () => {
    for (const [key, data] of [
      ['n.jsonl', '  \n\t\r\n\n'],
      ['n.ndjson', '\n'],
      ['n.jsonl', ''],
    ] as const) {
      expect(await collect(key, data)).toEqual([
        {
          kind: 'quarantined',
          quarantined: expect.objectContaining({ source: { key }, reason: 'empty file' }),
        },
      ]);
    }
  });
});
