import { describe, expect, it } from 'vitest';
import {
  type ChunkHit,
  cohortHash,
  decodeCursor,
  encodeCursor,
  groupByPatient,
  InvalidCursorError,
  SearchRequestSchema,
} from '../../../functions/query/src/index.ts';

let n = 0;
const hit = (patientId: string, noteId: string, score: number): ChunkHit => ({
  segmentId: 's',
  chunkIndex: n++,
  score,
  chunk: { noteId, patientId, section: 'other', start: 0, end: 1, tokens: 3, assertions: [], flags: [] },
});

describe('groupByPatient', () => {
  it('scores a patient by their best chunk, whatever their number of notes', () => {
    const groups = groupByPatient([
      hit('many', 'm1', 0.8),
      hit('many', 'm2', 0.79),
      hit('many', 'm3', 0.78),
      hit('many', 'm4', 0.77),
      hit('one', 'o1', 0.81),
    ]);
    expect(groups.map((g) => [g.patientId, g.score])).toEqual([
      ['one', 0.81],
      ['many', 0.8],
    ]);
  });

  it('breaks a tie by the best chunk of the second, then the third note, then the patient id', () => {
    const groups = groupByPatient([
      hit('b', 'b1', 0.9),
      hit('a', 'a1', 0.9),
      hit('c', 'c1', 0.9),
      hit('c', 'c2', 0.5),
      hit('d', 'd1', 0.9),
      hit('d', 'd2', 0.5),
      hit('d', 'd3', 0.4),
      // A second chunk of the same note is not a second note.
      hit('a', 'a1', 0.89),
    ]);
    expect(groups.map((g) => g.patientId)).toEqual(['d', 'c', 'a', 'b']);
    expect(groups.find((g) => g.patientId === 'a')!.noteScores).toEqual([0.9]);
  });

  it("keeps each patient's hits best first", () => {
    const [g] = groupByPatient([hit('p', 'x', 0.2), hit('p', 'y', 0.7), hit('p', 'z', 0.5)]);
    expect(g!.hits.map((h) => h.score)).toEqual([0.7, 0.5, 0.2]);
  });
});

describe('cursors', () => {
  const request = SearchRequestSchema.parse({ query: 'sepsis', minScore: 0.5 });

  it('round-trips and ties a cursor to the cohort-defining fields only', () => {
    const cursor = encodeCursor({ h: cohortHash(request), v: 3, o: 50 });
    expect(decodeCursor(cursor, request)).toEqual({ h: cohortHash(request), v: 3, o: 50 });
    const otherPage = SearchRequestSchema.parse({ query: 'sepsis', minScore: 0.5, k: 10, format: 'csv' });
    expect(decodeCursor(cursor, otherPage).o).toBe(50);
    const otherCohort = SearchRequestSchema.parse({ query: 'sepsis', minScore: 0.6 });
    expect(() => decodeCursor(cursor, otherCohort)).toThrow(InvalidCursorError);
  });

  it('refuses malformed cursors', () => {
    for (const bad of [
      '',
      'x',
      encodeCursor({ h: cohortHash(request), v: 1, o: -1 }),
      Buffer.from('[1]').toString('base64url'),
    ]) {
      expect(() => decodeCursor(bad, request)).toThrow(InvalidCursorError);
    }
  });
});
