import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type NoteInput,
  type ReadOptions,
  readNotes,
  readNotesFromFile,
} from '../../../../layers/notes/src/readers/index.ts';
import type { ReadItem } from '../../../../layers/notes/src/types.ts';
import { chunked, drain } from '../../../helpers/notes.ts';

const FIXTURE = join(
  import.meta.dirname,
  '../../../fixtures/notes-formats/patients/p-77/notes/vasc-followup-1.txt',
);

function read(
  key: string,
  data: Buffer | string,
  extra: Omit<NoteInput, 'body' | 'key'> = {},
  options?: ReadOptions,
): Promise<ReadItem[]> {
  const body = chunked(typeof data === 'string' ? Buffer.from(data, 'utf8') : data, 64);
  return drain(readNotes({ body, key, ...extra }, options));
}

describe('plain-text notes', () => {
  it('takes patient and note ids from a …/patients/<patientId>/notes/<noteId>.txt key', async () => {
    const items = await drain(readNotesFromFile(FIXTURE));
    expect(items).toEqual([
      {
        kind: 'note',
        note: {
          noteId: 'vasc-followup-1',
          patientId: 'p-77',
          text: readFileSync(FIXTURE, 'utf8'),
          source: { key: FIXTURE },
        },
      },
    ]);
  });

  it('reads a gzip copy the same, dropping .gz and .txt from the note id', async () => {
    const items = await read(
      'incoming/patients/p-77/notes/vasc-followup-1.txt.gz',
      gzipSync(readFileSync(FIXTURE)),
    );
    expect(items).toMatchObject([{ kind: 'note', note: { noteId: 'vasc-followup-1', patientId: 'p-77' } }]);
    const [item] = items;
    expect(item?.kind === 'note' && item.note.text).toBe(readFileSync(FIXTURE, 'utf8'));
  });

  it('takes ids from object metadata when the key does not have them, with the S3 prefix or without', async () => {
    const metadata = {
      'X-Amz-Meta-Patient-Id': 'p-1',
      'note-id': 'n-9',
      'note-type': 'Clinic note',
      'note-date': '2020-01-02 09:30',
      'encounter-id': 'e-3',
    };
    const items = await read('uploads/2020/abc.txt', 'Seen in clinic today.', {
      metadata,
      bucket: 'notes',
      etag: '"e1"',
    });
    expect(items).toEqual([
      {
        kind: 'note',
        note: {
          noteId: 'n-9',
          patientId: 'p-1',
          encounterId: 'e-3',
          noteType: 'Clinic note',
          noteDate: '2020-01-02T09:30',
          text: 'Seen in clinic today.',
          source: { bucket: 'notes', key: 'uploads/2020/abc.txt', etag: '"e1"' },
        },
      },
    ]);
  });

  it('prefers the key to metadata for ids', async () => {
    const items = await read('patients/p-1/notes/n-1.txt', 'Text.', {
      metadata: { 'patient-id': 'x', 'note-id': 'y' },
    });
    expect(items).toMatchObject([{ note: { patientId: 'p-1', noteId: 'n-1' } }]);
  });

  it('quarantines the object whole when neither key nor metadata give the ids', async () => {
    expect(await read('uploads/abc.txt', 'Some text.', { metadata: { 'patient-id': 'p-1' } })).toEqual([
      {
        kind: 'quarantined',
        quarantined: {
          source: { key: 'uploads/abc.txt' },
          reason: 'cannot tell patient and note ids',
          detail:
            'expected a key …/patients/<patientId>/notes/<noteId>.txt or metadata patient-id and note-id',
        },
      },
    ]);
  });

  it('quarantines an empty or blank object as an empty note', async () => {
    for (const text of ['', '  \n\t\n']) {
      expect(await read('patients/p/notes/n.txt', text)).toMatchObject([
        { quarantined: { reason: 'empty note' } },
      ]);
    }
  });

  it('quarantines an object over maxNoteBytes without reading all of it', async () => {
    let pulled = 0;
    async function* body(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield Buffer.alloc(1024, 'a');
      }
    }
    const items = await drain(
      readNotes({ body: body(), key: 'patients/p/notes/n.txt' }, { limits: { maxNoteBytes: 10 * 1024 } }),
    );
    expect(items).toMatchObject([{ quarantined: { reason: 'note over limit' } }]);
    expect(pulled).toBeLessThan(100);
  });

  it('quarantines invalid UTF-8 by default, and replaces it with U+FFFD when asked to', async () => {
    const latin1 = Buffer.from('Caf\xe9 au lait.', 'latin1');
    expect(await read('patients/p/notes/n.txt', latin1)).toMatchObject([
      { quarantined: { reason: 'invalid UTF-8' } },
    ]);
    const kept = await read('patients/p/notes/n.txt', latin1, {}, { invalidUtf8: 'replace' });
    expect(kept).toMatchObject([{ note: { text: 'Caf\uFFFD au lait.' } }]);
  });

  it('reads any object as text when told to', async () => {
    const items = await read('patients/p/notes/n.csv', 'a,b,c\n1,2,3\n', {}, { format: 'text' });
    expect(items).toMatchObject([{ note: { noteId: 'n.csv', text: 'a,b,c\n1,2,3\n' } }]);
  });

  it('detects text without a .txt name when the key has the layout', async () => {
    expect(await read('patients/p/notes/n-1', 'Plain words.')).toMatchObject([{ note: { noteId: 'n-1' } }]);
  });
});

describe('plain-text sidecar', () => {
  const dir = mkdtempSync(join(tmpdir(), 'notes-sidecar-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string, sidecar?: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    if (sidecar !== undefined) writeFileSync(`${path}.meta.json`, sidecar);
    return path;
  };

  it('takes ids and fields from <path>.meta.json when no metadata is given', async () => {
    const path = file(
      'visit.txt',
      'Seen today.',
      JSON.stringify({
        'patient-id': 'p1',
        'note-id': 'n1',
        'Note-Type': 'Progress',
        'note-date': '2024-05-01',
      }),
    );
    expect(await drain(readNotesFromFile(path))).toEqual([
      {
        kind: 'note',
        note: {
          noteId: 'n1',
          patientId: 'p1',
          noteType: 'Progress',
          noteDate: '2024-05-01',
          text: 'Seen today.',
          source: { key: path },
        },
      },
    ]);
  });

  it('prefers metadata given in the options to the sidecar', async () => {
    const path = file('given.txt', 'Words.', JSON.stringify({ 'patient-id': 'p1', 'note-id': 'n1' }));
    const items = await drain(readNotesFromFile(path, { metadata: { 'patient-id': 'p2', 'note-id': 'n2' } }));
    expect(items).toMatchObject([{ note: { patientId: 'p2', noteId: 'n2' } }]);
  });

  it('quarantines the file, unread, when the sidecar is malformed', async () => {
    for (const [name, sidecar] of [
      ['bad-json.txt', '{"patient-id": "p1",'],
      ['array.txt', '["p1", "n1"]'],
      ['number.txt', '{"patient-id": 1, "note-id": "n1"}'],
    ] as const) {
      const path = file(name, 'Words.', sidecar);
      const items = await drain(readNotesFromFile(path));
      expect(items).toEqual([
        {
          kind: 'quarantined',
          quarantined: { source: { key: path }, reason: 'malformed sidecar', detail: expect.any(String) },
        },
      ]);
    }
  });

  it('reads a file without a sidecar as before', async () => {
    const path = file('alone.txt', 'Words.');
    expect(await drain(readNotesFromFile(path))).toMatchObject([
      { quarantined: { reason: 'cannot tell patient and note ids' } },
    ]);
  });
});
