import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { splitSections } from '../../../layers/notes/src/sections.ts';
import { splitSentences } from '../../../layers/notes/src/sentences.ts';

const FIXTURES = fileURLToPath(new URL('../../fixtures/notes/', import.meta.url));
const NOTES = readdirSync(FIXTURES).filter((f) => f !== 'SOURCE.md');
const note = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');

/** The sentences of `text` as strings. */
const split = (text: string): string[] => splitSentences(text).map((s) => text.slice(s.start, s.end));

describe('splitSentences on abbreviations', () => {
  it.each([
    [
      'titles',
      'Seen by Dr. Good today. Mr. X and Mrs. Y agree. Ms. Z too.',
      ['Seen by Dr. Good today.', 'Mr. X and Mrs. Y agree.', 'Ms. Z too.'],
    ],
    [
      'dosing',
      'Tylenol 650 mg p.o. q.d. for pain. Lasix b.i.d. and KCl t.i.d. with food, oxycodone p.r.n. 2 tabs.',
      [
        'Tylenol 650 mg p.o. q.d. for pain.',
        'Lasix b.i.d. and KCl t.i.d. with food, oxycodone p.r.n. 2 tabs.',
      ],
    ],
    [
      'dosing before an all-capitals word',
      'Aspirin 81 mg p.o. BID with food.',
      ['Aspirin 81 mg p.o. BID with food.'],
    ],
    [
      'e.g. and i.e.',
      'Avoid NSAIDs, e.g. Ibuprofen, i.e. Motrin. Continue.',
      ['Avoid NSAIDs, e.g. Ibuprofen, i.e. Motrin.', 'Continue.'],
    ],
    [
      'vs. and approx.',
      'Viral vs. Bacterial. Drained approx. 4 cc of pus.',
      ['Viral vs. Bacterial.', 'Drained approx. 4 cc of pus.'],
    ],
    [
      'mg.',
      'Give 500 mg. daily with 2 mg. 3 doses. Aspirin 81 mg. Follow up in clinic.',
      ['Give 500 mg. daily with 2 mg. 3 doses.', 'Aspirin 81 mg.', 'Follow up in clinic.'],
    ],
    [
      'No. before a number',
      'Specimen No. 2 sent. No. The patient refused.',
      ['Specimen No. 2 sent.', 'No.', 'The patient refused.'],
    ],
    [
      'a lower-case word after a period',
      'Mother with stroke at age 82. no early deaths.',
      ['Mother with stroke at age 82. no early deaths.'],
    ],
  ])('keeps %s inside the sentence', (_, text, expected) => {
    expect(split(text)).toEqual(expected);
  });

  it('ends a sentence after a dosing abbreviation only before a Title-case word', () => {
    expect(split('KCl 20 mEq t.i.d. Oxycodone p.r.n. BID. Pain controlled.')).toEqual([
      'KCl 20 mEq t.i.d.',
      'Oxycodone p.r.n. BID.',
      'Pain controlled.',
    ]);
  });

  it('ends a sentence at "?" and "!" unless a lower-case word follows', () => {
    expect(split('Any pain? None! Endoleak (Type Ib?) w/ flow.')).toEqual([
      'Any pain?',
      'None!',
      'Endoleak (Type Ib?) w/ flow.',
    ]);
  });

  it('keeps closing quotes and brackets with the sentence', () => {
    expect(split('She felt "not herself." (Seen today.) Next.')).toEqual([
      'She felt "not herself."',
      '(Seen today.)',
      'Next.',
    ]);
  });
});

describe('splitSentences on numbers', () => {
  it('does not split decimals', () => {
    expect(split('Temp 98.6 and Cr 2.5 mg/dL today. WBC 8.3 (15.4 on admission).')).toEqual([
      'Temp 98.6 and Cr 2.5 mg/dL today.',
      'WBC 8.3 (15.4 on admission).',
    ]);
  });

  it('ends a sentence after a number before a capital or a number', () => {
    expect(split('1/13: A-P 5.5, Cor 5.77.\n7/12: A-P 5.2, Cor 5.31.')).toEqual([
      '1/13: A-P 5.5, Cor 5.77.',
      '7/12: A-P 5.2, Cor 5.31.',
    ]);
    expect(split('Vital signs stable, T99.0. FHR: 145.')).toEqual([
      'Vital signs stable, T99.0.',
      'FHR: 145.',
    ]);
  });
});

describe('splitSentences on lists', () => {
  it('makes each numbered item a sentence, with its number', () => {
    const text =
      'Discharge Medications:\n1. Aspirin 81 mg daily.\n2. Metoprolol 25 mg b.i.d.\n3) Lasix\n(1) Foo\n#4 Bar';
    expect(splitSentences(text, text.indexOf('\n')).map((s) => text.slice(s.start, s.end))).toEqual([
      '1. Aspirin 81 mg daily.',
      '2. Metoprolol 25 mg b.i.d.',
      '3) Lasix',
      '(1) Foo',
      '#4 Bar',
    ]);
  });

  it('never makes "1." a sentence by itself', () => {
    expect(split('1.\nAspirin 81 mg\n2. Lasix')).toEqual(['1.\nAspirin 81 mg', '2. Lasix']);
    expect(split('A. Cardiac: stable.\nB. Renal: stable.')).toEqual([
      'A. Cardiac: stable.',
      'B. Renal: stable.',
    ]);
  });

  it('splits numbered items inside a line', () => {
    expect(split('Plan: 1. Aspirin 81 mg. 2. Metoprolol 25 mg 3. Lasix')).toEqual([
      'Plan:',
      '1. Aspirin 81 mg.',
      '2. Metoprolol 25 mg',
      '3. Lasix',
    ]);
    expect(split('He was given 2. Then he left.')).toEqual(['He was given 2.', 'Then he left.']);
  });

  it('makes each bulleted item a sentence', () => {
    expect(
      split(
        'Plan:\n- Check BMP\n* CT with contrast\n• Follow up\n-Etiology of the ulcers is unclear, but\nvascular disease is likely',
      ),
    ).toEqual([
      'Plan:',
      '- Check BMP',
      '* CT with contrast',
      '• Follow up',
      '-Etiology of the ulcers is unclear, but\nvascular disease is likely',
    ]);
  });

  it('joins the wrapped rest of a medication entry', () => {
    const text = note('medspacy_discharge_summary.txt');
    const from = text.indexOf('Discharge Medications:');
    const to = text.indexOf('Discharge Diagnosis:');
    expect(
      splitSentences(text, from + 'Discharge Medications:'.length, to).map((s) => text.slice(s.start, s.end)),
    ).toEqual([
      '1. Miconazole Nitrate 2 % Powder Sig: One (1) Appl Topical  BID\n(2 times a day) as needed.',
      '2. Heparin Sodium (Porcine) 5,000 unit/mL Solution Sig: One (1)\nInjection TID (3 times a day).',
      '3. Acetaminophen 160 mg/5 mL Elixir Sig: One (1)  PO Q4-6H\n(every 4 to 6 hours) as needed.',
    ]);
  });
});

describe('splitSentences on lines', () => {
  it('makes each vitals or lab line a sentence', () => {
    expect(
      split('BP 120/80 HR 72\nRR 18 SpO2 98% RA\nWBC URINE >100 (H)\npH URINE 6.0\nGlucose URINE NEGATIVE'),
    ).toEqual([
      'BP 120/80 HR 72',
      'RR 18 SpO2 98% RA',
      'WBC URINE >100 (H)',
      'pH URINE 6.0',
      'Glucose URINE NEGATIVE',
    ]);
  });

  it('ends a heading without punctuation at its line', () => {
    expect(split('Urinalysis Site/Specimen\nWBC 12')).toEqual(['Urinalysis Site/Specimen', 'WBC 12']);
  });

  it('joins line-wrapped prose', () => {
    const text =
      '74y female with type 2 dm and a recent stroke affecting her\nspeech, who presents with abdominal pain. Last CEA was in the 8 range\n(down from 9)\nMeds: Lisinopril, Mobec,\nSynthroid';
    expect(split(text)).toEqual([
      '74y female with type 2 dm and a recent stroke affecting her\nspeech, who presents with abdominal pain.',
      'Last CEA was in the 8 range\n(down from 9)',
      'Meds: Lisinopril, Mobec,\nSynthroid',
    ]);
  });

  it('does not join a short list line to a lower-case line', () => {
    expect(split('Type 2 DM\nHTN\nh/o aspiration')).toEqual(['Type 2 DM', 'HTN', 'h/o aspiration']);
  });

  it('always ends a sentence at a blank line', () => {
    expect(split('Patient denies fever and\n\n  \nchills today')).toEqual([
      'Patient denies fever and',
      'chills today',
    ]);
  });

  it('never splits inside a placeholder', () => {
    const text =
      'Ms. [**Known patient lastname 2004**] was admitted on [**2573-5-30**]. Seen by Dr. [**Last Name. (NamePattern1) **]. Done.';
    expect(split(text)).toEqual([
      'Ms. [**Known patient lastname 2004**] was admitted on [**2573-5-30**].',
      'Seen by Dr. [**Last Name. (NamePattern1) **].',
      'Done.',
    ]);
  });

  it('handles CRLF and trims white space', () => {
    const text = '  First line.\r\n\r\n\tSecond?  \r\n';
    const sentences = splitSentences(text);
    expect(sentences.map((s) => text.slice(s.start, s.end))).toEqual(['First line.', 'Second?']);
  });
});

describe('splitSentences offsets', () => {
  it('gives offsets into the whole text and stays inside [start, end)', () => {
    const text = 'HPI: Pain. Worse today.\nROS: none';
    const end = text.indexOf('\nROS');
    const sentences = splitSentences(text, 5, end);
    expect(sentences).toEqual([
      { start: 5, end: 10 },
      { start: 11, end: 23 },
    ]);
  });

  it('clamps the range and returns nothing for an empty one', () => {
    expect(splitSentences('abc', 5, 10)).toEqual([]);
    expect(splitSentences('abc', 2, 1)).toEqual([]);
    expect(splitSentences('   \n\t ')).toEqual([]);
    expect(splitSentences('abc', -3, 99)).toEqual([{ start: 0, end: 3 }]);
  });

  it('covers every non-space character of every section body of the example notes exactly once', () => {
    for (const name of NOTES) {
      const text = note(name);
      for (const section of splitSections(text)) {
        const sentences = splitSentences(text, section.bodyStart, section.end);
        let previousEnd = section.bodyStart;
        for (const s of sentences) {
          const slice = text.slice(s.start, s.end);
          expect(slice.length, name).toBeGreaterThan(0);
          expect(slice.trim(), name).toBe(slice);
          expect(s.start, name).toBeGreaterThanOrEqual(previousEnd);
          expect(text.slice(previousEnd, s.start).trim(), `${name}: text between sentences`).toBe('');
          previousEnd = s.end;
        }
        expect(previousEnd).toBeLessThanOrEqual(section.end);
        expect(text.slice(previousEnd, section.end).trim(), `${name}: text after the last sentence`).toBe('');
      }
    }
  });

  it('splits the medspaCy discharge summary as a reader would', () => {
    const text = note('medspacy_discharge_summary.txt');
    const course = splitSections(text).find(
      (s) => s.category === 'hospital_course' && s.title === 'Brief Hospital Course:',
    )!;
    expect(splitSentences(text, course.bodyStart, course.end).map((s) => text.slice(s.start, s.end))).toEqual(
      [
        'Ms. [**Known patient lastname 2004**] was admitted on [**2573-5-30**].',
        'Ultrasound at the time of\nadmission demonstrated pancreatic duct dilitation and an\nedematous gallbladder.',
        'She was admitted to the ICU.',
      ],
    );
  });
});
