import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NotesConfigError, RuleFileError } from '../../../layers/notes/src/errors.ts';
import { normalizeHeaderPhrase, sectionLexicon, splitSections } from '../../../layers/notes/src/sections.ts';
import {
  expandHeaderRegex,
  loadSectionRules,
  parseCcdaRules,
  parseCohortRules,
  parseCtakesRules,
  parseMedspacySectionRules,
  SECTION_RULE_FILES,
} from '../../../layers/notes/src/text/section-rules.ts';
import { SECTION_CATEGORIES, type Section } from '../../../layers/notes/src/types.ts';

const FIXTURES = fileURLToPath(new URL('../../fixtures/notes/', import.meta.url));
const NOTES = readdirSync(FIXTURES).filter((f) => f !== 'SOURCE.md');
const note = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');

/** Each section as [category, header text as sliced from the note]. */
const headers = (text: string, sections: Section[]): [string, string][] =>
  sections.map((s) => [s.category, text.slice(s.start, s.bodyStart).trimEnd()]);

function expectTiling(text: string, sections: Section[]): void {
  expect(sections[0]!.start).toBe(0);
  for (let i = 1; i < sections.length; i++) expect(sections[i]!.start).toBe(sections[i - 1]!.end);
  expect(sections.at(-1)!.end).toBe(text.length);
  for (const s of sections) {
    expect(s.start).toBeLessThanOrEqual(s.bodyStart);
    expect(s.bodyStart).toBeLessThanOrEqual(s.end);
    if (s.title !== undefined) expect(text.slice(s.start, s.start + s.title.length)).toBe(s.title);
  }
}

describe('splitSections on the medspaCy discharge summary', () => {
  const text = note('medspacy_discharge_summary.txt');
  const sections = splitSections(text);

  it('finds the MIMIC headers in order, with their normalized categories', () => {
    expect(headers(text, sections)).toEqual([
      ['other', ''],
      ['other', 'Service:'],
      ['allergies', 'Allergies:'],
      ['other', 'Attending:'],
      ['chief_complaint', 'Chief Complaint:'],
      ['hospital_course', 'Major Surgical or Invasive Procedure:'],
      ['history_of_present_illness', 'History of Present Illness:'],
      ['past_medical_history', 'Past Medical History:'],
      ['social_history', 'Social History:'],
      ['family_history', 'Family History:'],
      ['hospital_course', 'Brief Hospital Course:'],
      ['discharge_medications', 'Discharge Medications:'],
      ['discharge_diagnosis', 'Discharge Diagnosis:'],
      ['discharge_instructions', 'Discharge Instructions:'],
      ['other', 'Completed by:'],
      ['other', 'Signed electronically by:'],
    ]);
  });

  it('starts each section at its header, exactly', () => {
    for (const s of sections.slice(1)) {
      expect(s.start).toBe(text.indexOf(`\n${s.title!}`) + 1);
      expect(text.slice(s.start, s.bodyStart).trimEnd()).toBe(s.title);
    }
    const hpi = sections.find((s) => s.category === 'history_of_present_illness')!;
    expect(hpi.start).toBe(text.indexOf('History of Present Illness:'));
    expect(hpi.bodyStart).toBe(hpi.start + 'History of Present Illness:'.length);
  });

  it('gives the text before the first header to an untitled section of category other', () => {
    expect(sections[0]).toEqual({ category: 'other', start: 0, bodyStart: 0, end: text.indexOf('Service:') });
    expect(sections[0]!.title).toBeUndefined();
  });

  it('tiles the note', () => {
    expectTiling(text, sections);
  });

  it('keeps a placeholder right after a header in the body', () => {
    const attending = sections.find((s) => s.title === 'Attending:')!;
    expect(text.slice(attending.bodyStart, attending.end)).toBe('[**First Name3 (LF) 1893**]\n');
  });

  it('leaves placeholders in a body alone', () => {
    const course = sections.find((s) => s.title === 'Brief Hospital Course:')!;
    expect(text.slice(course.bodyStart, course.end)).toContain(
      'Ms. [**Known patient lastname 2004**] was admitted',
    );
    expect(course.end).toBe(text.indexOf('Discharge Medications:'));
  });
});

describe('splitSections on the cTAKES example notes', () => {
  it('finds all-capitals headers without a colon (demo note)', () => {
    const text = note('ID000_clinic_demo.txt');
    const found = headers(text, splitSections(text)).slice(1);
    expect(found).toEqual([
      ['other', 'DEMOGRAPHIC INFORMATION'],
      ['other', 'Service:'],
      ['chief_complaint', 'CHIEF COMPLAINT/PURPOSE OF VISIT'],
      ['history_of_present_illness', 'HISTORY OF PRESENT ILLNESS'],
      ['medications', 'CURRENT MEDICATIONS'],
      ['allergies', 'ALLERGIES/ADVERSE REACTIONS'],
      ['past_medical_history', 'PAST MEDICAL/SURGICAL HISTORY'],
      ['physical_exam', 'PHYSICAL EXAMINATION'],
      ['assessment_and_plan', 'IMPRESSION/REPORT/PLAN'],
      ['assessment_and_plan', 'PLANS/RECOMMENDATIONS:'],
      ['other', 'BILLING'],
    ]);
  });

  it('finds abbreviated headers with same-line text (general surgery note)', () => {
    const text = note('GenSurg_UmbilicalHernia_1');
    expect(headers(text, splitSections(text))).toEqual([
      ['other', ''],
      ['history_of_present_illness', 'CC/HPI:'],
      ['review_of_systems', 'ROS:'],
      ['past_medical_history', 'PMHx:'],
      ['past_surgical_history', 'PSHx:'],
      ['medications', 'Meds:'],
      ['allergies', 'Allergies:'],
      ['physical_exam', 'PE:'],
      ['labs', 'Labs/Ancillary studies:'],
      ['assessment_and_plan', 'A/P:'],
    ]);
  });

  it('finds SOAP headers (labor progress note)', () => {
    const text = note('OBGYN_LaborProgressNote_1');
    expect(headers(text, splitSections(text)).slice(1)).toEqual([
      ['history_of_present_illness', 'S:'],
      ['physical_exam', 'O:'],
      ['assessment_and_plan', 'A:'],
      ['assessment_and_plan', 'P:'],
    ]);
  });

  it('finds the headers of the pediatric and vascular notes', () => {
    const peds = note('Peds_FebrileSez_1');
    expect(headers(peds, splitSections(peds)).map(([c, h]) => `${c} ${h}`)).toEqual([
      'other ',
      'history_of_present_illness CC/HPI:',
      'review_of_systems ROS:',
      'past_medical_history Past Medical History:',
      'past_surgical_history Past Surgical History:',
      'allergies Allergies:',
      'medications Medications:',
      'other Vaccinations:',
      'other Diet:',
      'social_history Social History:',
      'family_history Family History:',
      'physical_exam PE:',
      'physical_exam Vit:',
      'labs Labs/Ancillary:',
      'assessment_and_plan Problem list:',
      'assessment_and_plan A/P:',
    ]);
    const pvd = note('VascSurg_PVD_1');
    expect(headers(pvd, splitSections(pvd)).map(([, h]) => h)).toEqual([
      '',
      'ROS:',
      'PMH:',
      'PSH:',
      'Meds:',
      'All:',
      'FH:',
      'SH:',
      'PE:',
      'Vitals:',
      'Labs:',
      'A/P:',
    ]);
    expect(splitSections(pvd).find((s) => s.title === 'PSH:')!.category).toBe('past_surgical_history');
  });

  it('tiles every example note', () => {
    for (const name of NOTES) {
      const text = note(name);
      const sections = splitSections(text);
      expectTiling(text, sections);
      expect(sections.length, name).toBeGreaterThan(1);
    }
  });

  it('does not take labels, prose or exam lines for headers', () => {
    const demo = note('ID000_clinic_demo.txt');
    const titles = splitSections(demo).map((s) => s.title);
    // "Medication :" labels an allergy list; "Allergies above current…" and "Surgical history
    // includes…" are prose that starts with a header word; "Neuro:" is an exam line.
    expect(titles).not.toContain('Medication :');
    expect(titles.some((t) => t?.startsWith('Allergies above'))).toBe(false);
    expect(titles.some((t) => t?.startsWith('Surgical history'))).toBe(false);
    expect(titles).not.toContain('Neuro:');
  });
});

describe('splitSections rules', () => {
  const split = (text: string) => splitSections(text).map((s) => [s.category, s.title ?? null]);

  it('puts same-line text after a header into the body', () => {
    const text = 'CC: chest pain\nHPI: 3 days of pain.';
    const [cc, hpi] = splitSections(text);
    expect(cc).toEqual({ category: 'chief_complaint', title: 'CC:', start: 0, bodyStart: 4, end: 15 });
    expect(text.slice(cc!.bodyStart, cc!.end)).toBe('chest pain\n');
    expect(text.slice(hpi!.bodyStart, hpi!.end)).toBe('3 days of pain.');
  });

  it('does not take "Plan:" inside a sentence for a header', () => {
    expect(split('HPI: We discussed the Plan: continue aspirin.')).toEqual([
      ['history_of_present_illness', 'HPI:'],
    ]);
  });

  it('does not take a drug name or a time before a colon for a header', () => {
    const text = 'Medications:\nTylenol: 500 mg q6h\nAspirin: 81 mg\n10:30 given\nLasix: 40 mg';
    expect(split(text)).toEqual([['medications', 'Medications:']]);
  });

  it('does not take a lower-case line start for a header', () => {
    expect(split('HPI: The patient and the team agreed on the\nplan: continue aspirin')).toEqual([
      ['history_of_present_illness', 'HPI:'],
    ]);
  });

  it('does not take a placeholder for a header, nor let one break a header', () => {
    const text =
      'Chief Complaint: [**First Name**] reports pain\n[**Known patient lastname 2004**]: seen\n[**2101-3-4**] 10:30\nAllergies:[**Name**]';
    expect(split(text)).toEqual([
      ['chief_complaint', 'Chief Complaint:'],
      ['allergies', 'Allergies:'],
    ]);
    const sections = splitSections(text);
    expect(text.slice(sections[0]!.bodyStart, sections[0]!.end)).toContain('[**2101-3-4**] 10:30');
    expect(text.slice(sections[1]!.bodyStart)).toBe('[**Name**]');
  });

  it('takes an indented header, starting the section at its first letter', () => {
    const text = 'note\n   HPI: pain\n';
    const [, hpi] = splitSections(text);
    expect(hpi).toMatchObject({ category: 'history_of_present_illness', start: 8, bodyStart: 13 });
  });

  it('needs a colon for mixed-case headers, and all capitals without one', () => {
    expect(split('Physical Exam\nnormal')).toEqual([['other', null]]);
    expect(split('PHYSICAL EXAM\nnormal')).toEqual([['physical_exam', 'PHYSICAL EXAM']]);
    expect(split('x\nPE\nnormal')).toEqual([['other', null]]);
  });

  it('reads SOAP letters but not vitals such as "P: 72"', () => {
    expect(split('T: 98.6\nP: 72\nP: continue')).toEqual([
      ['other', null],
      ['assessment_and_plan', 'P:'],
    ]);
  });

  it('looks up "X/Y" headers by X, but not a short X', () => {
    expect(split('IMPRESSION/PLAN: stable')).toEqual([['assessment_and_plan', 'IMPRESSION/PLAN:']]);
    expect(split('S/P: appendectomy')).toEqual([['other', null]]);
  });

  it('handles CRLF line ends', () => {
    const text = 'CHIEF COMPLAINT\r\npain\r\nHPI: worse\r\n';
    const sections = splitSections(text);
    expect(sections.map((s) => s.title)).toEqual(['CHIEF COMPLAINT', 'HPI:']);
    expectTiling(text, sections);
  });

  it('gives no section for empty text and one for text without headers', () => {
    expect(splitSections('')).toEqual([]);
    expect(splitSections('just text')).toEqual([{ category: 'other', start: 0, bodyStart: 0, end: 9 }]);
  });

  it('takes extra headers, and drops built-in ones, from options', () => {
    const options = { headers: { 'Speculum exam': 'physical_exam', Meds: null } } as const;
    const text = 'Speculum exam: normal\nMeds: none';
    expect(splitSections(text, options).map((s) => [s.category, s.title])).toEqual([
      ['physical_exam', 'Speculum exam:'],
    ]);
    expect(split(text)).toEqual([
      ['other', null],
      ['medications', 'Meds:'],
    ]);
  });

  it('refuses an unknown category in options', () => {
    expect(() => splitSections('x', { headers: { foo: 'bar' as never } })).toThrow(NotesConfigError);
  });
});

describe('section rules', () => {
  it('maps every medspaCy literal, cTAKES section and C-CDA code of the shipped files', () => {
    const rules = loadSectionRules();
    expect(rules.size).toBeGreaterThan(500);
    for (const category of rules.values()) expect(SECTION_CATEGORIES).toContain(category);
  });

  it('reaches every category from some header', () => {
    const reached = new Set(sectionLexicon().values());
    for (const c of SECTION_CATEGORIES) expect(reached.has(c), c).toBe(true);
  });

  it("lets this project's list override medspaCy and cTAKES", () => {
    const lexicon = sectionLexicon();
    expect(lexicon.get('discharge medications')).toBe('discharge_medications'); // medspaCy: medications
    expect(lexicon.get('discharge diagnosis')).toBe('discharge_diagnosis'); // medspaCy: observation_and_plan
    expect(lexicon.get('psh')).toBe('past_surgical_history'); // medspaCy: social_history
    expect(lexicon.get('history')).toBe('past_medical_history'); // medspaCy over cTAKES' social history
    expect(lexicon.get('problem list')).toBe('assessment_and_plan');
    expect(lexicon.get('labs')).toBe('labs');
    expect(lexicon.has('neuro')).toBe(false);
    expect(lexicon.has('medication')).toBe(false);
    expect(lexicon.has('blood pressure')).toBe(false); // a cTAKES "section" that is a vitals field
  });

  it('normalizes phrases for lookup', () => {
    expect(normalizeHeaderPhrase('  History of Present\tIllness :')).toBe('history of present illness');
    expect(normalizeHeaderPhrase('A / P:')).toBe('a/p');
  });

  it('expands cTAKES header regexes into the headers they match', () => {
    const complaints = expandHeaderRegex('^[\\t ]*(?:CHIEF|PRIMARY) COMPLAINTS?[\\t ]*:?\\s+');
    expect(new Set(complaints.map(normalizeHeaderPhrase))).toEqual(
      new Set(['chief complaint', 'chief complaints', 'primary complaint', 'primary complaints']),
    );
    // A top-level alternation without a group: each alternative is a header.
    expect(
      new Set(expandHeaderRegex('^[\\t ]*(?:FAM HX)|FH|FHX[\\t ]*:?\\s+').map(normalizeHeaderPhrase)),
    ).toEqual(new Set(['fam hx', 'fh', 'fhx']));
    expect(() => expandHeaderRegex('CASE DESCRIPTION[^:]*:')).toThrow(/unsupported class/);
  });

  it('reports a rule file that is missing, malformed or has an unmapped category', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sections-'));
    const missing = { ...SECTION_RULE_FILES, medspacy: join(dir, 'nope.json') };
    expect(() => loadSectionRules(missing)).toThrow(RuleFileError);
    expect(() => parseMedspacySectionRules('{')).toThrow(RuleFileError);
    expect(() =>
      parseMedspacySectionRules('{"section_rules":[{"literal":"X:","category":"martian"}]}'),
    ).toThrow(/martian/);
    expect(() => parseCtakesRules('Martian Section||^MARTIAN$')).toThrow(RuleFileError);
    expect(() => parseCtakesRules('Plan||^(?<n>PLAN)$')).toThrow(RuleFileError);
    expect(() => parseCcdaRules('1.2.3,00000-0,Martian')).toThrow(RuleFileError);
    expect(() => parseCohortRules('foo\tmartian\treason')).toThrow(RuleFileError);
    const bad = join(dir, 'bad.tsv');
    writeFileSync(bad, 'x\n');
    expect(() => loadSectionRules({ ...SECTION_RULE_FILES, cohort: bad })).toThrow(RuleFileError);
    rmSync(dir, { recursive: true, force: true });
  });
});
