import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { NotesConfigError } from '../../../../layers/notes/src/errors.ts';
import { readNotes, readNotesFromFile } from '../../../../layers/notes/src/readers/index.ts';
import type { ReadItem } from '../../../../layers/notes/src/types.ts';
import { chunked, collectorWithPieces, drain } from '../../../helpers/notes.ts';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/notes-formats');
const MIMIC3 = join(FIXTURES, 'NOTEEVENTS.csv');

const collect = collectorWithPieces(1000);

const reasons = (items: readonly ReadItem[]) =>
  items.flatMap((i) => (i.kind === 'quarantined' ? [i.quarantined.reason] : []));

/** A MIMIC-IV CSV of `n` notes, each a few lines long. */
function mimic4(n: number): string {
  const rows = ['note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text'];
  for (let i = 1; i <= n; i++) {
    rows.push(
      `${i}-DS-1,${i},${1000 + i},DS,1,2180-05-07 00:00:00,,"Note ${i}.\nSecond line of note ${i}, with ""quotes"".\n"`,
    );
  }
  return `${rows.join('\n')}\n`;
}

describe('readNotes: whole-file problems', () => {
  it('quarantines binary content whole, whatever its name', async () => {
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), randomBytes(4000)]);
    for (const key of ['scan.png', 'notes.csv', 'patients/p/notes/n.txt']) {
      const items = await collect(key, png);
      expect(items).toHaveLength(1);
      expect(items[0]).toMatchObject({
        kind: 'quarantined',
        quarantined: { source: { key }, reason: 'binary content' },
      });
    }
  });

  it('quarantines UTF-16 whole, saying so', async () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"noteId":"a"}\n', 'utf16le')]);
    expect(reasons(await collect('n.jsonl', utf16))).toEqual(['unsupported encoding']);
  });

  it('keeps the notes read before a gzip stream breaks off, then quarantines the rest', async () => {
    const gz = gzipSync(Buffer.from(mimic4(3000)));
    const items = await collect('discharge.csv.gz', gz.subarray(0, Math.floor(gz.length / 2)));
    const last = items.at(-1)!;
    const read = items.length - 1;
    expect(read).toBeGreaterThan(100);
    expect(read).toBeLessThan(3000);
    expect(items.slice(0, -1).every((i) => i.kind === 'note')).toBe(true);
    expect(last).toEqual({
      kind: 'quarantined',
      quarantined: {
        source: { key: 'discharge.csv.gz' },
        reason: `corrupt gzip after ${read} records`,
        detail: expect.stringContaining('unexpected end of file'),
      },
    });
  });

  it('reads concatenated gzip members as one file', async () => {
    const csv = Buffer.from(mimic4(50));
    const cut = csv.indexOf('\n21-DS-1') + 1;
    const gz = Buffer.concat([gzipSync(csv.subarray(0, cut)), gzipSync(csv.subarray(cut))]);
    const items = await collect('discharge.csv.gz', gz);
    expect(items.map((i) => i.kind === 'note' && i.note.noteId)).toEqual(
      Array.from({ length: 50 }, (_, i) => `${i + 1}-DS-1`),
    );
  });

  it('quarantines a file that starts like gzip but is not, whole', async () => {
    const bad = Buffer.concat([
      Buffer.from([0x1f, 0x8b]),
      Buffer.from('not a gzip stream at all, just text'),
    ]);
    expect(await collect('n.csv', bad)).toMatchObject([
      { quarantined: { reason: 'corrupt gzip after 0 records' } },
    ]);
  });

  it('quarantines content of no known format whole', async () => {
    expect(reasons(await collect('report.xml', '<ClinicalDocument/>'))).toEqual(['unknown format']);
    expect(
      reasons(await collect('notes.csv', '{"noteId":"a","patientId":"p","text":"JSON in a .csv"}\n')),
    ).toEqual(['unknown format']);
  });

  it('quarantines an empty record file', async () => {
    expect(await collect('notes.csv', '')).toEqual([
      { kind: 'quarantined', quarantined: { source: { key: 'notes.csv' }, reason: 'empty file' } },
    ]);
    expect(reasons(await collect('notes.csv.gz', gzipSync(Buffer.alloc(0))))).toEqual(['empty file']);
  });

  it('quarantines the rest of a file once maxRecordsPerFile records are read', async () => {
    const items = await drain(readNotesFromFile(MIMIC3, { limits: { maxRecordsPerFile: 2 } }));
    expect(items).toHaveLength(3);
    expect(items[2]).toEqual({
      kind: 'quarantined',
      quarantined: {
        source: { key: MIMIC3 },
        reason: 'record limit reached',
        detail: 'maxRecordsPerFile (2) reached; rows after the first 2 data rows were not read',
      },
    });
  });

  it('quarantines the rest of a file past maxFileBytes, after the notes before it', async () => {
    const csv = mimic4(5000);
    const items = await collect('discharge.csv', csv, { limits: { maxFileBytes: 200_000 } });
    const read = items.length - 1;
    expect(read).toBeGreaterThan(1000);
    expect(read).toBeLessThan(5000);
    expect(reasons(items)).toEqual([`file over limit after ${read} records`]);
  });
});

describe('readNotes: the body', () => {
  it('reads Node streams, Uint8Array chunks and strings alike', async () => {
    const data = readFileSync(MIMIC3);
    const fromStream = await drain(readNotes({ body: Readable.from([data]), key: 'a.csv' }));
    const fromStrings = await drain(
      readNotes({ body: Readable.from([data.toString('utf8')]), key: 'a.csv' }),
    );
    const fromBytes = await drain(readNotes({ body: chunked(new Uint8Array(data), 3), key: 'a.csv' }));
    expect(fromStrings).toEqual(fromStream);
    expect(fromBytes).toEqual(fromStream);
    expect(fromStream).toHaveLength(5);
  });

  it('carries bucket, version and etag into every source', async () => {
    const input = {
      body: chunked(readFileSync(MIMIC3), 1000),
      key: 'k.csv',
      bucket: 'b',
      versionId: 'v1',
      etag: '"x"',
    };
    for (const item of await drain(readNotes(input))) {
      const source = item.kind === 'note' ? item.note.source : item.quarantined.source;
      expect(source).toMatchObject({ bucket: 'b', key: 'k.csv', versionId: 'v1', etag: '"x"' });
    }
  });

  it('stops reading the body when the consumer stops, and when a file is quarantined whole', async () => {
    let pulled = 0;
    let closed = false;
    const csv = Buffer.from(mimic4(5000));
    async function* body(data: Buffer): AsyncGenerator<Uint8Array> {
      try {
        for (let i = 0; i < data.length; i += 100) {
          pulled++;
          yield data.subarray(i, i + 100);
        }
      } finally {
        closed = true;
      }
    }
    for await (const item of readNotes({ body: body(csv), key: 'a.csv' })) {
      expect(item.kind).toBe('note');
      break;
    }
    expect(closed).toBe(true);
    expect(pulled).toBeLessThan(1000);

    pulled = 0;
    closed = false;
    await drain(readNotes({ body: body(randomBytes(1_000_000)), key: 'a.csv' }));
    expect(closed).toBe(true);
    expect(pulled).toBeLessThan(1000);
  });

  it('lets an error of the body itself through, plain or gzip, rather than quarantining it', async () => {
    const failure = new Error('connection reset');
    async function* failing(data: Buffer): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 200);
      throw failure;
    }
    await expect(drain(readNotes({ body: failing(readFileSync(MIMIC3)), key: 'a.csv' }))).rejects.toBe(
      failure,
    );
    const gz = gzipSync(Buffer.from(mimic4(100)));
    await expect(drain(readNotes({ body: failing(gz), key: 'a.csv.gz' }))).rejects.toBe(failure);
  });

  it('fails on iteration for a missing file', async () => {
    await expect(drain(readNotesFromFile(join(FIXTURES, 'no-such-file.csv')))).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});

describe('readNotes: options', () => {
  it('refuses an unknown format, a bad limit or a bad UTF-8 policy at once', () => {
    const body = chunked(Buffer.from(''), 1000);
    expect(() => readNotes({ body, key: 'a' }, { format: 'pdf' as never })).toThrow(NotesConfigError);
    expect(() => readNotes({ body, key: 'a' }, { limits: { maxNoteBytes: 0 } })).toThrow(NotesConfigError);
    expect(() => readNotes({ body, key: 'a' }, { limits: { maxLineBytes: 1.5 } })).toThrow(NotesConfigError);
    expect(() => readNotes({ body, key: 'a' }, { invalidUtf8: 'ignore' as never })).toThrow(NotesConfigError);
    expect(() =>
      readNotes({ body, key: 'a' }, { limits: { maxFileBytes: Number.POSITIVE_INFINITY } }),
    ).not.toThrow();
  });
});
