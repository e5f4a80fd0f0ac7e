import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { RuleFileError } from '../errors.ts';
import { SECTION_CATEGORIES, type SectionCategory } from '../types.ts';

/**
 * Section header rules: the header phrases of medspaCy, Apache cTAKES and the C-CDA list that
 * cTAKES ships, mapped onto this project's {@link SectionCategory}s, merged into one map from
 * normalized phrase to category. The files live in `assets/sections/` (see its SOURCE.md).
 *
 * Precedence, highest first: `cohort_headers.tsv` (this project's additions and corrections, each
 * with its reason), medspaCy's literals, cTAKES' regexes (expanded into the phrases they match),
 * the C-CDA names. A `null` category in a source's table means "this source does not contribute
 * the phrase"; `[DROP]` in `cohort_headers.tsv` removes it whatever its source.
 */

const ASSET_DIR = new URL('../../assets/sections/', import.meta.url);

/** Paths of the section rule files shipped with the layer. */
export const SECTION_RULE_FILES = {
  medspacy: fileURLToPath(new URL('section_patterns_en.json', ASSET_DIR)),
  ctakes: fileURLToPath(new URL('SameLineSectionRegex.bsv', ASSET_DIR)),
  ccda: fileURLToPath(new URL('ccda_sections.txt', ASSET_DIR)),
  cohort: fileURLToPath(new URL('cohort_headers.tsv', ASSET_DIR)),
} as const;

/**
 * medspaCy category (`section_patterns_en.json`) → ours.
 *
 * | medspaCy               | ours                          | note                                   |
 * |------------------------|-------------------------------|----------------------------------------|
 * | addendum               | other                         |                                        |
 * | allergy, allergies     | allergies                     |                                        |
 * | chief_complaint        | chief_complaint               |                                        |
 * | comments               | other                         |                                        |
 * | diagnoses              | assessment_and_plan           | discharge/primary/secondary/final ones → discharge_diagnosis (cohort_headers) |
 * | family_history         | family_history                |                                        |
 * | history_of_present_illness | history_of_present_illness | "Consult" dropped                      |
 * | hospital_course        | hospital_course               | includes PROCEDURE NOTE                |
 * | imaging                | imaging                       |                                        |
 * | labs_and_studies       | labs                          | FINDINGS, ECHO → imaging; Vital Signs, On exam → physical_exam; INDICATION → chief_complaint |
 * | medications            | medications                   | discharge ones → discharge_medications |
 * | neurological           | — (not a header)              | "Neuro:" is a system line, not a section |
 * | observation_and_plan   | assessment_and_plan           | discharge/final diagnoses → discharge_diagnosis; Discharge Disposition → other |
 * | other                  | other                         |                                        |
 * | past_medical_history   | past_medical_history          | PAST SURGICAL HISTORY → past_surgical_history |
 * | patient_education      | other                         |                                        |
 * | patient_instructions   | discharge_instructions        | includes Followup Instructions         |
 * | physical_exam          | physical_exam                 |                                        |
 * | problem_list           | assessment_and_plan           | active problems are current, not history |
 * | reason_for_examination | chief_complaint               | why the patient came / the study was done |
 * | signature              | other                         |                                        |
 * | social_history         | social_history                | PSH → past_surgical_history, PMHSx → past_medical_history |
 */
const MEDSPACY_CATEGORIES: Readonly<Record<string, SectionCategory | null>> = {
  addendum: 'other',
  allergy: 'allergies',
  allergies: 'allergies',
  chief_complaint: 'chief_complaint',
  comments: 'other',
  diagnoses: 'assessment_and_plan',
  family_history: 'family_history',
  history_of_present_illness: 'history_of_present_illness',
  hospital_course: 'hospital_course',
  imaging: 'imaging',
  labs_and_studies: 'labs',
  medications: 'medications',
  neurological: null,
  observation_and_plan: 'assessment_and_plan',
  other: 'other',
  past_medical_history: 'past_medical_history',
  patient_education: 'other',
  patient_instructions: 'discharge_instructions',
  physical_exam: 'physical_exam',
  problem_list: 'assessment_and_plan',
  reason_for_examination: 'chief_complaint',
  signature: 'other',
  social_history: 'social_history',
};

/**
 * cTAKES section name (`SameLineSectionRegex.bsv`) → ours. `null`: not a header here, mostly
 * fields that cTAKES treats as sections ("BP:", "Height:", "Admission Date:") and that would cut a
 * physical exam or a preamble into one-line sections.
 *
 * | cTAKES                                                                  | ours                       |
 * |-------------------------------------------------------------------------|----------------------------|
 * | History of Present Illness (incl. S:, CC/HPI, HPI/CC), Narrative History | history_of_present_illness |
 * | Chief Complaint, Reason for Consult                                     | chief_complaint            |
 * | Past Medical History, Clinical History, Hematologic History             | past_medical_history       |
 * | Past Surgical History, Invasive Diagnostic Procedure History            | past_surgical_history      |
 * | Family Medical History                                                  | family_history             |
 * | Patient History (SOCIAL HISTORY, SHX, SOCHX …), Living Situation, Occupational Environmental History, Psychological Stressors, Substance Abuse Treatment, Ethanol Use, Smoking Use | social_history |
 * | Review of Systems, Other Systems Reviewed                               | review_of_systems          |
 * | Medications, Medication History, Medications Outside Hospital, Medications By Type, Medications at Transfer, Immunosuppressants Medications, Current Antibiotics, Past Medications, Past MS Medications | medications |
 * | Allergies, Adverse Reactions                                            | allergies                  |
 * | General Exam (incl. PE:, O:), Vital Signs, Objective                    | physical_exam              |
 * | Hospital Course, Emergency Department Course, Principal Procedures, Special Procedures, Operative Findings | hospital_course |
 * | Analysis of Problem (A/P), Problem List, Impression, Diagnosis, Plan, Treatment Goals, Discharge Condition, Post Procedure Diagnosis | assessment_and_plan |
 * | Final Diagnosis                                                         | discharge_diagnosis        |
 * | Discharge Instructions, Discharge Activity, Instructions                 | discharge_instructions     |
 * | Findings, Technique                                                     | imaging                    |
 * | Labs, Pathologic Data, Cytologic Diagnosis, Gross Description, Microscopic Description, Histology Summary | labs |
 * | Identifying Data, Current Health, History Source, Current Pregnancy, Technical Comment, Attending Addendum, Addendum, Diagnosis at Death, Admission Condition, Cancer Risk Factors, Diet, Vaccinations | other |
 * | Case Description, Telemetry, Body Surface Area, Body Length, Height, Oxygen Saturation, Blood Pressure, Respiratory Rate, Maximum Temperature, Input Fluids, Fluid Balance, Admission Date, Consultation Attending, XML | — (not a header) |
 */
const CTAKES_CATEGORIES: Readonly<Record<string, SectionCategory | null>> = {
  'Case Description': null,
  'History of Present Illness': 'history_of_present_illness',
  'Past Medical History': 'past_medical_history',
  'Chief Complaint': 'chief_complaint',
  'Patient History': 'social_history',
  'Review of Systems': 'review_of_systems',
  'Family Medical History': 'family_history',
  Medications: 'medications',
  Allergies: 'allergies',
  'General Exam': 'physical_exam',
  'Vital Signs': 'physical_exam',
  'Identifying Data': 'other',
  'Clinical History': 'past_medical_history',
  'Current Health': 'other',
  'Narrative History': 'history_of_present_illness',
  'Analysis of Problem': 'assessment_and_plan',
  Telemetry: null,
  'Technical Comment': 'other',
  'Discharge Activity': 'discharge_instructions',
  'Occupational Environmental History': 'social_history',
  'Immunosuppressants Medications': 'medications',
  'Medications Outside Hospital': 'medications',
  'Reason for Consult': 'chief_complaint',
  'Problem List': 'assessment_and_plan',
  'Living Situation': 'social_history',
  'Cytologic Diagnosis': 'labs',
  'Discharge Instructions': 'discharge_instructions',
  'Body Surface Area': null,
  'Discharge Condition': 'assessment_and_plan',
  'Diagnosis at Death': 'other',
  'Adverse Reactions': 'allergies',
  'Emergency Department Course': 'hospital_course',
  'Consultation Attending': null,
  'Body Length': null,
  'Past Surgical History': 'past_surgical_history',
  Height: null,
  'Principle Diagnosis': 'discharge_diagnosis',
  'Oxygen Saturation': null,
  'Principal Procedures': 'hospital_course',
  'Psychological Stressors': 'social_history',
  'Pathologic Data': 'labs',
  'Medication History': 'medications',
  'Treatment Goals': 'assessment_and_plan',
  'Input Fluids': null,
  'Admission Date': null,
  'History Source': 'other',
  'Current Pregnancy': 'other',
  'Special Procedures': 'hospital_course',
  'Operative Findings': 'hospital_course',
  'Fluid Balance': null,
  'Blood Pressure': null,
  'Post Procedure Diagnosis': 'assessment_and_plan',
  'Final Diagnosis': 'discharge_diagnosis',
  'Cancer Risk Factors': 'other',
  'Invasive Diagnostic Procedure History': 'past_surgical_history',
  Technique: 'imaging',
  'Medications By Type': 'medications',
  'Hematologic History': 'past_medical_history',
  'Respiratory Rate': null,
  'Attending Addendum': 'other',
  'Gross Description': 'labs',
  'Microscopic Description': 'labs',
  'Substance Abuse Treatment': 'social_history',
  'Hospital Course': 'hospital_course',
  'Histology Summary': 'labs',
  Addendum: 'other',
  'Medications at Transfer': 'medications',
  Findings: 'imaging',
  Instructions: 'discharge_instructions',
  'Current Antibiotics': 'medications',
  'Ethanol Use': 'social_history',
  'Maximum Temperature': null,
  'Smoking Use': 'social_history',
  'Admission Condition': 'other',
  'Other Systems Reviewed': 'review_of_systems',
  Objective: 'physical_exam',
  Impression: 'assessment_and_plan',
  Diagnosis: 'assessment_and_plan',
  Plan: 'assessment_and_plan',
  Labs: 'labs',
  Diet: 'other',
  Vaccinations: 'other',
  'Past Medications': 'medications',
  XML: null,
  'Past MS Medications': 'medications',
};

/**
 * C-CDA section LOINC code (`ccda_sections.txt`) → ours. `null`: document-level parts (header,
 * payers, operative-note fields) whose names ("record", "identification") are too generic.
 *
 * | LOINC   | C-CDA section                              | ours                   |
 * |---------|--------------------------------------------|------------------------|
 * | 42348-3 | Advance Directives                         | other                  |
 * | 48765-2 | Allergies                                  | allergies              |
 * | 59774-0 | Anesthesia                                 | other                  |
 * | 51847-2 | Assessment and Plan                        | assessment_and_plan    |
 * | 51848-0 | Assessments                                | assessment_and_plan    |
 * | 46239-0 | Chief Complaint and Reason for Visit       | chief_complaint        |
 * | 10154-3 | Chief Complaint (+ diagnosis names, see cohort_headers) | chief_complaint |
 * | 55109-3 | Complications                              | other                  |
 * | 42344-2 | Discharge Diet                             | discharge_instructions |
 * | 46240-8 | Encounters                                 | past_medical_history   |
 * | 10157-6 | Family History                             | family_history         |
 * | 47420-5 | Functional Status                          | other                  |
 * | 10210-3 | General Status                             | physical_exam          |
 * | 34133-9 | Header                                     | —                      |
 * | 11348-0 | History of Past Illness                    | past_medical_history   |
 * | 10164-2 | History of Present Illness                 | history_of_present_illness |
 * | 11369-6 | Immunizations                              | other                  |
 * | 10160-0 | History of Medication Use                  | medications            |
 * | 46241-6 | Hospital Admission Diagnosis               | assessment_and_plan    |
 * | 8653-8  | Hospital Discharge Instructions            | discharge_instructions |
 * | 11535-2 | Hospital Discharge Diagnosis               | discharge_diagnosis    |
 * | 11493-4 | Hospital Discharge Studies Summary         | labs                   |
 * | 69730-0 | Instructions                               | discharge_instructions |
 * | 18776-5 | Treatment Plan                             | assessment_and_plan    |
 * | 10183-2 | Hospital Discharge Medications             | discharge_medications  |
 * | 42349-1 | Reason for Referral                        | chief_complaint        |
 * | 10216-0 | Operative Note Fluids                      | —                      |
 * | 10223-6 | Operative Note Surgical Procedure          | —                      |
 * | 29545-1 | Physical Examination                       | physical_exam          |
 * | 48768-6 | Payers                                     | —                      |
 * | 11450-4 | Problems                                   | assessment_and_plan    |
 * | 47519-4 | Procedures                                 | past_surgical_history  |
 * | 30954-2 | Results                                    | labs                   |
 * | 29762-2 | Social History                             | social_history         |
 * | 8716-3  | Vital Signs                                | physical_exam          |
 */
const CCDA_CATEGORIES: Readonly<Record<string, SectionCategory | null>> = {
  '42348-3': 'other',
  '48765-2': 'allergies',
  '59774-0': 'other',
  '51847-2': 'assessment_and_plan',
  '51848-0': 'assessment_and_plan',
  '46239-0': 'chief_complaint',
  '10154-3': 'chief_complaint',
  '55109-3': 'other',
  '42344-2': 'discharge_instructions',
  '46240-8': 'past_medical_history',
  '10157-6': 'family_history',
  '47420-5': 'other',
  '10210-3': 'physical_exam',
  '34133-9': null,
  '11348-0': 'past_medical_history',
  '10164-2': 'history_of_present_illness',
  '11369-6': 'other',
  '10160-0': 'medications',
  '46241-6': 'assessment_and_plan',
  '8653-8': 'discharge_instructions',
  '11535-2': 'discharge_diagnosis',
  '11493-4': 'labs',
  '69730-0': 'discharge_instructions',
  '18776-5': 'assessment_and_plan',
  '10183-2': 'discharge_medications',
  '42349-1': 'chief_complaint',
  '10216-0': null,
  '10223-6': null,
  '29545-1': 'physical_exam',
  '48768-6': null,
  '11450-4': 'assessment_and_plan',
  '47519-4': 'past_surgical_history',
  '30954-2': 'labs',
  '29762-2': 'social_history',
  '8716-3': 'physical_exam',
};

const DROP = '[DROP]';

/**
 * The form in which header phrases are compared: lower case (ASCII), runs of spaces and tabs
 * collapsed to one space, no spaces around "/", no leading or trailing spaces or colons.
 * "History of Present  Illness:" and "HISTORY OF PRESENT ILLNESS" both become
 * "history of present illness"; "A / P" becomes "a/p".
 */
export function normalizeHeaderPhrase(phrase: string): string {
  let out = '';
  let pendingSpace = false;
  for (let i = 0; i < phrase.length; i++) {
    let c = phrase.charCodeAt(i);
    if (c === 32 || c === 9 || c === 0xa0) {
      pendingSpace = out.length > 0;
      continue;
    }
    if (c >= 65 && c <= 90) c += 32;
    if (pendingSpace && c !== 47 && out.charCodeAt(out.length - 1) !== 47) out += ' ';
    pendingSpace = false;
    out += String.fromCharCode(c);
  }
  let end = out.length;
  while (end > 0) {
    const c = out.charCodeAt(end - 1);
    if (c !== 58 && c !== 32) break;
    end--;
  }
  return end === out.length ? out : out.slice(0, end);
}

function readRuleFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    throw new RuleFileError(`cannot read section rule file ${path}`, { cause });
  }
}

function mapped<T>(table: Readonly<Record<string, T>>, key: string, file: string): T {
  if (!Object.hasOwn(table, key)) {
    throw new RuleFileError(
      `${file}: no category mapping for "${key}"; add it to the table in section-rules.ts`,
    );
  }
  return table[key]!;
}

/** One source's phrases with their categories (`null`: listed, but not a header). */
type PhraseRules = Map<string, SectionCategory | null>;

function addPhrase(rules: PhraseRules, phrase: string, category: SectionCategory | null): void {
  const key = normalizeHeaderPhrase(phrase);
  // A phrase must start with a letter: the splitter only looks at lines that do.
  if (key.length === 0 || !/^[a-z]/.test(key)) return;
  // Within one file the first listing wins, as in the files' own first-match semantics.
  if (!rules.has(key)) rules.set(key, category);
}

/** medspaCy's `{"section_rules":[{"literal","category"}]}`. */
export function parseMedspacySectionRules(json: string, file = 'section_patterns_en.json'): PhraseRules {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (cause) {
    throw new RuleFileError(`${file}: not valid JSON`, { cause });
  }
  const list = (data as { section_rules?: unknown } | null)?.section_rules;
  if (!Array.isArray(list)) throw new RuleFileError(`${file}: expected {"section_rules": [...]}`);
  const rules: PhraseRules = new Map();
  for (const [i, rule] of list.entries()) {
    const { literal, category } = (rule ?? {}) as { literal?: unknown; category?: unknown };
    if (typeof literal !== 'string' || typeof category !== 'string') {
      throw new RuleFileError(`${file}: rule ${i} lacks a string "literal" and "category"`);
    }
    addPhrase(rules, literal, mapped(MEDSPACY_CATEGORIES, category, file));
  }
  return rules;
}

/** Most phrases one cTAKES regex may expand into; the largest in the shipped file has about 1,300. */
const MAX_EXPANSIONS = 10_000;

/**
 * Expands a cTAKES header regex into the literal strings it matches. Supports what those files
 * use: literals, escapes, `(...)`/`(?:...)` groups with `|`, `?` `*` `+` on one atom, `[\t ]` and
 * `\s` (as one space), `^` and `$`. Optional colons and surrounding spaces come out in both forms
 * and are removed by normalization. cTAKES' top-level `A|B|C` without a group (several of its
 * lines) would anchor only the first and last alternative; here every alternative is a whole
 * header, which is what the lines mean.
 * @throws Error on syntax outside that subset, or on more than {@link MAX_EXPANSIONS} strings
 */
export function expandHeaderRegex(source: string): string[] {
  let pos = 0;
  const fail = (what: string): never => {
    throw new Error(`${what} at ${pos} in ${source}`);
  };
  const product = (a: string[], b: string[]): string[] => {
    if (a.length * b.length > MAX_EXPANSIONS) fail('too many expansions');
    const out: string[] = [];
    for (const x of a) for (const y of b) out.push(x + y);
    return out;
  };
  const alternation = (): string[] => {
    const out = [...sequence()];
    while (source[pos] === '|') {
      pos++;
      out.push(...sequence());
      if (out.length > MAX_EXPANSIONS) fail('too many expansions');
    }
    return out;
  };
  const sequence = (): string[] => {
    let acc = [''];
    while (pos < source.length && source[pos] !== '|' && source[pos] !== ')') {
      let options = atom();
      const q = source[pos];
      if (q === '?' || q === '*') {
        options = ['', ...options];
        pos++;
      } else if (q === '+') {
        pos++;
      }
      if (source[pos] === '?') pos++; // lazy quantifier: same strings
      acc = product(acc, options);
    }
    return acc;
  };
  const atom = (): string[] => {
    const c = source[pos]!;
    if (c === '(') {
      pos++;
      if (source.startsWith('?:', pos)) pos += 2;
      else if (source[pos] === '?') fail('unsupported group');
      const inner = alternation();
      if (source[pos] !== ')') fail('unclosed group');
      pos++;
      return inner;
    }
    if (c === '[') {
      const close = source.indexOf(']', pos);
      if (close < 0) fail('unclosed class');
      const body = source.slice(pos + 1, close);
      if (body !== '\\t ' && body !== ' \\t') fail('unsupported class');
      pos = close + 1;
      return [' '];
    }
    if (c === '\\') {
      const e = source[pos + 1];
      pos += 2;
      if (e === 's' || e === 't') return [' '];
      if (e !== undefined && /[^A-Za-z0-9]/.test(e)) return [e];
      return fail('unsupported escape');
    }
    if (c === '^' || c === '$') {
      pos++;
      return [''];
    }
    if (c === '.' || c === '{' || c === '}') fail('unsupported syntax');
    pos++;
    return [c];
  };
  const result = alternation();
  if (pos !== source.length) fail('unbalanced ")"');
  return result;
}

/** cTAKES' `Section Name||regex` lines; `//` starts a comment line. */
export function parseCtakesRules(bsv: string, file = 'SameLineSectionRegex.bsv'): PhraseRules {
  const rules: PhraseRules = new Map();
  for (const [i, raw] of bsv.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('//')) continue;
    const bar = line.indexOf('||');
    if (bar < 0) throw new RuleFileError(`${file}:${i + 1}: expected "Section Name||regex"`);
    const category = mapped(CTAKES_CATEGORIES, line.slice(0, bar).trim(), file);
    // Unmapped sections are not expanded: some use syntax outside the expander's subset.
    if (category === null) continue;
    let phrases: string[];
    try {
      phrases = expandHeaderRegex(line.slice(bar + 2));
    } catch (cause) {
      throw new RuleFileError(`${file}:${i + 1}: cannot expand the header regex`, { cause });
    }
    for (const p of phrases) addPhrase(rules, p, category);
  }
  return rules;
}

/** cTAKES' C-CDA list: `templateId,LOINC,name,name,…`; `#` starts a comment line. */
export function parseCcdaRules(text: string, file = 'ccda_sections.txt'): PhraseRules {
  const rules: PhraseRules = new Map();
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(',');
    if (fields.length < 3) throw new RuleFileError(`${file}:${i + 1}: expected "templateId,LOINC,name,…"`);
    const category = mapped(CCDA_CATEGORIES, fields[1]!.trim(), file);
    if (category === null) continue;
    for (const name of fields.slice(2)) addPhrase(rules, name, category);
  }
  return rules;
}

/** This project's `phrase<TAB>category|[DROP]<TAB>reason` lines; `#` starts a comment line. */
export function parseCohortRules(tsv: string, file = 'cohort_headers.tsv'): PhraseRules {
  const rules: PhraseRules = new Map();
  for (const [i, raw] of tsv.split(/\r?\n/).entries()) {
    if (raw.trim() === '' || raw.startsWith('#')) continue;
    const [phrase, category] = raw.split('\t');
    if (phrase === undefined || category === undefined) {
      throw new RuleFileError(`${file}:${i + 1}: expected "phrase<TAB>category<TAB>reason"`);
    }
    if (category !== DROP && !(SECTION_CATEGORIES as readonly string[]).includes(category)) {
      throw new RuleFileError(`${file}:${i + 1}: unknown category "${category}"`);
    }
    const key = normalizeHeaderPhrase(phrase);
    if (key === '') throw new RuleFileError(`${file}:${i + 1}: empty phrase`);
    rules.set(key, category === DROP ? null : (category as SectionCategory));
  }
  return rules;
}

/**
 * Merges phrase rules, highest precedence first: the first source that lists a phrase with a
 * category decides it; `null` in a lower source is no opinion. `drops` are removed at the end.
 */
export function mergePhraseRules(
  sources: readonly PhraseRules[],
  drops: Iterable<string> = [],
): Map<string, SectionCategory> {
  const merged = new Map<string, SectionCategory>();
  for (const rules of sources) {
    for (const [phrase, category] of rules) {
      if (category !== null && !merged.has(phrase)) merged.set(phrase, category);
    }
  }
  for (const phrase of drops) merged.delete(phrase);
  return merged;
}

/** Reads the shipped rule files and merges them (see the module comment for the precedence). */
export function loadSectionRules(
  files: typeof SECTION_RULE_FILES = SECTION_RULE_FILES,
): Map<string, SectionCategory> {
  const cohort = parseCohortRules(readRuleFile(files.cohort));
  const drops = [...cohort].filter(([, c]) => c === null).map(([p]) => p);
  return mergePhraseRules(
    [
      cohort,
      parseMedspacySectionRules(readRuleFile(files.medspacy)),
      parseCtakesRules(readRuleFile(files.ctakes)),
      parseCcdaRules(readRuleFile(files.ccda)),
    ],
    drops,
  );
}
