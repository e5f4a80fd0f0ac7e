import { describe, expect, it } from 'vitest';
import { assertionOf, buildEvidence, type ChunkHit, queryTerms } from '../../../functions/query/src/index.ts';

const text =
  'Chief complaint: chest pain.\n\nNo pneumonia on chest x-ray. Started apixaban for atrial fibrillation. Follow up in clinic.';
const start = text.indexOf('No pneumonia');
const negEnd = text.indexOf('x-ray.') + 'x-ray.'.length;
const chunk = (over: Partial<ChunkHit['chunk']> = {}): ChunkHit => ({
  segmentId: 's',
  chunkIndex: 0,
  score: 0.8,
  chunk: {
    noteId: 'n1',
    patientId: 'p1',
    section: 'hospital_course',
    start,
    end: text.length,
    tokens: 30,
    assertions: [{ kind: 'negated', start, end: negEnd }],
    flags: [],
    ...over,
  },
});
const texts = { get: async ({ noteId }: { noteId: string }) => (noteId === 'n1' ? text : undefined) };

describe('queryTerms', () => {
  it('keeps words of two or more letters or digits, lower-cased, without stop words', () => {
    expect([...queryTerms('Patients with AF on apixaban, 5 mg')]).toEqual(['af', 'apixaban', 'mg']);
  });
});

describe('assertionOf', () => {
  it('names the kind covering at least half of a span, else affirmed', () => {
    const scopes = [{ kind: 'negated' as const, start: 0, end: 10 }];
    expect(assertionOf(0, 20, scopes)).toBe('negated');
    expect(assertionOf(0, 21, scopes)).toBe('affirmed');
  });
});

describe('buildEvidence', () => {
  it('highlights the sentence sharing most query words, offsets into the snippet', async () => {
    const [e] = await buildEvidence([chunk()], {
      texts,
      query: 'atrial fibrillation on apixaban',
      assertion: 'any',
    });
    expect(e!.snippet).toBe(text.slice(start));
    const [[a, b]] = e!.highlights as [[number, number]];
    expect(e!.snippet!.slice(a, b)).toBe('Started apixaban for atrial fibrillation.');
    expect(e!.assertion).toBe('affirmed');
  });

  it('matches whole words in sentences with letters beyond ASCII as in plain ones', async () => {
    const accented = 'Paciente con neumonía. Control de fiebre en 48 horas.';
    const [e] = await buildEvidence(
      [chunk({ noteId: 'n2', start: 0, end: accented.length, assertions: [] })],
      // "neumonía" (8 letters) outweighs "fiebre" (6) only when read as one word.
      { texts: { get: async () => accented }, query: 'NEUMONÍA fiebre', assertion: 'affirmed' },
    );
    const [[a, b]] = e!.highlights as [[number, number]];
    expect(accented.slice(a, b)).toBe('Paciente con neumonía.');
  });

  it('labels a highlighted negated sentence in "any" mode and avoids it in "affirmed" mode', async () => {
    const [any] = await buildEvidence([chunk()], {
      texts,
      query: 'pneumonia on chest x-ray',
      assertion: 'any',
    });
    expect(any!.assertion).toBe('negated');
    const [affirmed] = await buildEvidence([chunk()], {
      texts,
      query: 'pneumonia on chest x-ray',
      assertion: 'affirmed',
    });
    expect(affirmed!.assertion).toBe('affirmed');
    expect(affirmed!.snippet!.slice(...(affirmed!.highlights[0] as [number, number]))).not.toContain(
      'pneumonia',
    );
  });

  it('gives a null snippet when the text is missing, unreadable or shorter than the chunk', async () => {
    const errors: string[] = [];
    const broken = { get: async () => Promise.reject(new Error('AccessDenied')) };
    const [missing] = await buildEvidence([chunk({ noteId: 'n2' })], { texts, query: 'x', assertion: 'any' });
    const [failed] = await buildEvidence([chunk()], {
      texts: broken,
      query: 'x',
      assertion: 'any',
      onTextError: (id) => errors.push(id),
    });
    const [short] = await buildEvidence([chunk({ end: text.length + 5 })], {
      texts,
      query: 'x',
      assertion: 'any',
    });
    for (const e of [missing, failed, short]) expect(e).toMatchObject({ snippet: null, highlights: [] });
    expect(errors).toEqual(['n1']);
  });
});
