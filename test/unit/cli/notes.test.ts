import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, runCohort } from '../../helpers/cli.ts';
import { tempDir } from '../../helpers/encoder.ts';

const FORMATS = fileURLToPath(new URL('../../fixtures/notes-formats/', import.meta.url));
const cohort = (...args: string[]) => runCohort(args);

let root: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir());
});
afterAll(() => cleanup());

describe('cohort notes inspect', () => {
  it('prints one JSON line per note with chunks, offsets, tokens and assertions, and one per quarantined record', async () => {
    const out = await cohort('notes', 'inspect', join(FORMATS, 'NOTEEVENTS.csv'), '--json');
    expect(out.code, out.stderr).toBe(0);
    const lines = jsonLines(out.stdout);
    const notes = lines.filter((l) => 'noteId' in l);
    const quarantined = lines.filter((l) => 'quarantined' in l);
    expect(notes.length).toBeGreaterThan(0);
    expect(quarantined.map((q) => (q['quarantined'] as { reason: string }).reason)).toContain(
      'marked as error (ISERROR=1)',
    );
    const first = notes[0] as {
      noteId: string;
      patientId: string;
      chunks: {
        section: string;
        start: number;
        end: number;
        tokens: number;
        assertions: { kind: string }[];
      }[];
    };
    expect(first).toMatchObject({ noteId: '174', patientId: '22532' });
    expect(first.chunks.some((c) => c.section === 'history_of_present_illness')).toBe(true);
    expect(first.chunks.some((c) => c.assertions.some((a) => a.kind === 'negated'))).toBe(true);
    const sentences = (notes[0] as { sentences: { section: string; start: number; end: number }[] })
      .sentences;
    expect(sentences.length).toBeGreaterThan(first.chunks.length - 1);
    for (const s of sentences) expect(s.start).toBeLessThan(s.end);
    for (const c of first.chunks) {
      expect(c.start).toBeLessThan(c.end);
      expect(c.tokens).toBeLessThanOrEqual(128);
    }
    // JSON output carries offsets, never note text.
    expect(out.stdout).not.toContain('crushing');
  });

  it('prints a readable summary per note without --json', async () => {
    const out = await cohort('notes', 'inspect', join(FORMATS, 'notes.jsonl'));
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^note \S+ patient \S+.*chunks$/m);
    expect(out.stdout).toMatch(/^ {2}chunk \w+ \[\d+, \d+\) \d+ tokens/m);
    expect(out.stdout).toMatch(/^ {4}sentence \[\d+, \d+\)$/m);
  });

  it('reads a forced format and explains a file it cannot read', async () => {
    const forced = await cohort(
      'notes',
      'inspect',
      join(FORMATS, 'notes.jsonl'),
      '--format',
      'mimic3',
      '--json',
    );
    expect(forced.code).toBe(0);
    expect(jsonLines(forced.stdout).every((l) => 'quarantined' in l)).toBe(true);
    const missing = await cohort('notes', 'inspect', join(root, 'nope.csv'));
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/^cohort: .*nope\.csv/m);
  });
});

describe('cohort notes context', () => {
  it('prints the assertion status of each condition, one JSON line per input line', async () => {
    const tsv = join(root, 'context.tsv');
    await writeFile(
      tsv,
      [
        'Patient denies chest pain.\tchest pain',
        'Mother had breast cancer at 45.\tbreast cancer',
        'History of myocardial infarction.\tmyocardial infarction',
        'Rule out pulmonary embolism.\tpulmonary embolism',
        'She has a productive cough.\tcough',
      ].join('\n'),
    );
    const out = await cohort('notes', 'context', '--tsv', tsv);
    expect(out.code, out.stderr).toBe(0);
    expect(jsonLines(out.stdout)).toEqual([
      { negated: true, hypothetical: false, historical: false, experiencer: 'patient' },
      { negated: false, hypothetical: false, historical: false, experiencer: 'other' },
      { negated: false, hypothetical: false, historical: true, experiencer: 'patient' },
      { negated: false, hypothetical: true, historical: false, experiencer: 'patient' },
      { negated: false, hypothetical: false, historical: false, experiencer: 'patient' },
    ]);
  });

  it('names the line that has no condition column', async () => {
    const tsv = join(root, 'bad.tsv');
    await writeFile(tsv, 'Patient denies chest pain.\tchest pain\nno tab here\n');
    const out = await cohort('notes', 'context', '--tsv', tsv);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/bad\.tsv:2: expected "sentence<TAB>condition"/);
  });
});
