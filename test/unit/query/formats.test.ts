import { describe, expect, it } from 'vitest';
import {
  csvField,
  SearchRequestSchema,
  type SearchResponse,
  toCsv,
  toFhirGroup,
} from '../../../functions/query/src/index.ts';

const response: SearchResponse = {
  cohort: [
    {
      patientId: 'p1',
      score: 0.9,
      rank: 1,
      matchingNotes: 1,
      evidence: [
        {
          noteId: 'n1',
          noteType: 'discharge',
          noteDate: '2020-01-01',
          section: 'hospital_course',
          score: 0.9,
          snippet: '=HYPERLINK("x")\nsecond, "quoted" line',
          highlights: [[0, 5]],
          assertion: 'affirmed',
        },
      ],
    },
    { patientId: 'p2', score: 0.8, rank: 2, matchingNotes: 1, evidence: [] },
  ],
  totalPatients: 7,
  nextCursor: 'abc',
  model: { fingerprint: 'sha256:m' },
  index: { manifestVersion: 4, chunks: 10 },
  timings: { encodeMs: 1, searchMs: 1, evidenceMs: 1, totalMs: 3 },
};

describe('csvField', () => {
  it('quotes commas, quotes and line breaks and defuses formulas', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('=1+1')).toBe("'=1+1");
    expect(csvField('-2')).toBe("'-2");
    expect(csvField('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvField(-0.5)).toBe('-0.5');
    expect(csvField(null)).toBe('');
  });
});

describe('toCsv', () => {
  it('writes one row per patient, the top evidence on one line, empty cells without evidence', () => {
    const lines = toCsv(response).split('\r\n');
    expect(lines[1]).toBe(
      `1,p1,0.9,n1,discharge,2020-01-01,hospital_course,affirmed,0.9,"'=HYPERLINK(""x"") second, ""quoted"" line"`,
    );
    expect(lines[2]).toBe('2,p2,0.8,,,,,,,');
    expect(lines[3]).toBe('');
  });
});

describe('toFhirGroup', () => {
  it('is an actual person Group with Patient references and the query in the description', () => {
    const request = SearchRequestSchema.parse({
      query: 'sepsis after surgery',
      minScore: 0.5,
      filters: { noteTypes: ['discharge'] },
    });
    const group = toFhirGroup(response, request);
    expect(group).toMatchObject({ resourceType: 'Group', type: 'person', actual: true, quantity: 2 });
    expect(group.member).toEqual([
      { entity: { reference: 'Patient/p1' }, inactive: false },
      { entity: { reference: 'Patient/p2' }, inactive: false },
    ]);
    expect(group.description).toBe(
      'Patients matching the query: sepsis after surgery (assertion=affirmed; minScore=0.5; filters={"noteTypes":["discharge"]})',
    );
    expect(group.extension.map((e) => e.url.split(':').at(-1))).toEqual([
      'manifest-version',
      'model-fingerprint',
      'total-patients',
      'next-cursor',
    ]);
  });
});
