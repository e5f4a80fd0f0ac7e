import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../../../layers/index/src/errors.ts';
import { ChunkTable, encodeChunks } from '../../../../layers/index/src/segment/meta.ts';
import type { ChunkMeta } from '../../../../layers/index/src/segment/types.ts';

const roundTrip = (chunks: ChunkMeta[]): ChunkMeta[] => {
  const table = ChunkTable.decode(encodeChunks(chunks));
  expect(table.count).toBe(chunks.length);
  return chunks.map((_, i) => table.get(i));
};

describe('chunks.bin codec', () => {
  it('round-trips every field, unicode included', () => {
    const chunks: ChunkMeta[] = [
      {
        noteId: 'note-ü-1',
        patientId: 'pat-😀',
        section: 'hospital_course',
        start: 0,
        end: 4_000_000_000,
        tokens: 128,
        assertions: [
          { kind: 'negated', start: 3, end: 9 },
          { kind: 'family', start: 10, end: 20 },
        ],
        flags: ['split-sentence', 'ß'],
        noteType: 'Discharge summary — 出院',
        noteDate: '2150-01-02T03:04:05Z',
        source: { key: 'incoming/a.csv', versionId: 'v1', etag: '"abc"', sequencer: '0055AED6DCD90281E5' },
      },
      {
        noteId: '',
        patientId: 'p',
        section: 'other',
        start: 5,
        end: 5,
        tokens: 2,
        assertions: [],
        flags: [],
      },
    ];
    expect(roundTrip(chunks)).toEqual(chunks);
  });

  it('leaves empty optionals absent and keeps a partial source', () => {
    const chunks: ChunkMeta[] = [
      { noteId: 'n', patientId: 'p', section: 's', start: 1, end: 2, tokens: 3, assertions: [], flags: [] },
      {
        noteId: 'n',
        patientId: 'p',
        section: 's',
        start: 1,
        end: 2,
        tokens: 3,
        assertions: [],
        flags: [],
        noteType: '',
        source: { sequencer: '01' },
      },
    ];
    const [a, b] = roundTrip(chunks);
    expect(a).toEqual(chunks[0]);
    expect(Object.keys(a!)).not.toContain('noteType');
    expect(Object.keys(a!)).not.toContain('source');
    expect(b).toEqual(chunks[1]);
  });

  it('round-trips many chunks and shares repeated strings', () => {
    const chunks: ChunkMeta[] = Array.from({ length: 20_000 }, (_, i) => ({
      noteId: `note-${i >> 3}`,
      patientId: `patient-${i >> 6}`,
      section: i % 2 ? 'labs' : 'imaging',
      start: i * 10,
      end: i * 10 + 9,
      tokens: i % 128,
      assertions: i % 5 === 0 ? [{ kind: 'hypothetical' as const, start: i * 10, end: i * 10 + 3 }] : [],
      flags: i % 7 === 0 ? ['split-sentence'] : [],
      noteDate: `2150-01-${String((i % 28) + 1).padStart(2, '0')}`,
    }));
    const bytes = encodeChunks(chunks);
    expect(bytes.length).toBeLessThan(JSON.stringify(chunks).length / 2);
    const table = ChunkTable.decode(bytes);
    for (const i of [0, 1, 5, 7, 9999, 19_999]) expect(table.get(i)).toEqual(chunks[i]);
    expect(table.patientId(64)).toBe('patient-1');
    expect(table.column('patientId')[64]).toBe(table.stringId('patient-1'));
  });

  it('rejects malformed bytes with an IntegrityError', () => {
    const bytes = encodeChunks([
      {
        noteId: 'n',
        patientId: 'p',
        section: 's',
        start: 1,
        end: 2,
        tokens: 3,
        assertions: [],
        flags: ['f'],
      },
    ]);
    expect(() => ChunkTable.decode(bytes.subarray(0, bytes.length - 4))).toThrow(IntegrityError);
    const badVersion = bytes.slice();
    badVersion[4] = 99;
    expect(() => ChunkTable.decode(badVersion)).toThrow(/unsupported version 99/);
    const badMagic = bytes.slice();
    badMagic[0] = 0;
    expect(() => ChunkTable.decode(badMagic)).toThrow(/bad magic/);
  });

  it('rejects offsets that do not fit a u32', () => {
    expect(() =>
      encodeChunks([
        {
          noteId: 'n',
          patientId: 'p',
          section: 's',
          start: -1,
          end: 2,
          tokens: 3,
          assertions: [],
          flags: [],
        },
      ]),
    ).toThrow(/chunk 0: start/);
  });
});
