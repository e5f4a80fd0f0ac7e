import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  compileRules,
  parseAdditions,
  parseMedspacyContextRules,
  parseTriggerList,
} from '../../../layers/notes/src/context/rules.ts';
import {
  classifyCondition,
  evaluateContext,
  evaluateNegEx,
  findAssertionScopes,
  parseContextTestSet,
  parseNegExTestSet,
} from '../../../layers/notes/src/context.ts';
import { RuleFileError } from '../../../layers/notes/src/errors.ts';
import type { AssertionScope } from '../../../layers/notes/src/types.ts';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../fixtures/negex/${name}`, import.meta.url), 'utf8');

/** The text of each scope of `kind`. */
function scopeTexts(text: string, scopes: AssertionScope[], kind: AssertionScope['kind']): string[] {
  return scopes.filter((s) => s.kind === kind).map((s) => text.slice(s.start, s.end));
}

describe('classifyCondition', () => {
  it.each([
    ['Patient denies chest pain.', 'chest pain'],
    ['No evidence of pneumonia.', 'pneumonia'],
    ['Pneumonia was ruled out.', 'pneumonia'],
    ["He doesn't have a fever.", 'fever'],
    ['Neither fever nor chills.', 'chills'],
    ['Fever: none.', 'fever'],
  ])('negates "%s" for %s', (sentence, condition) => {
    expect(classifyCondition(sentence, condition)).toEqual({
      negated: true,
      hypothetical: false,
      historical: false,
      experiencer: 'patient',
    });
  });

  it('gives family members as the experiencer, before or after the condition', () => {
    expect(classifyCondition('Mother had breast cancer.', 'breast cancer').experiencer).toBe('other');
    expect(classifyCondition('Breast cancer in her mother.', 'breast cancer').experiencer).toBe('other');
    expect(classifyCondition('Family history of diabetes.', 'diabetes')).toMatchObject({
      experiencer: 'other',
    });
    expect(classifyCondition('Brought in by his family for chest pain.', 'chest pain').experiencer).toBe(
      'patient',
    );
  });

  it('marks possible and conditional findings hypothetical, not negated', () => {
    for (const [sentence, condition] of [
      ['Rule out PE.', 'PE'],
      ['R/O pneumonia.', 'pneumonia'],
      ['Possible pneumonia.', 'pneumonia'],
      ['Call if chest pain should return.', 'chest pain'],
      ['Should chest pain return, call 911.', 'chest pain'],
    ] as const) {
      expect(classifyCondition(sentence, condition), sentence).toMatchObject({
        hypothetical: true,
        negated: false,
      });
    }
  });

  it('marks history historical', () => {
    expect(classifyCondition('History of MI.', 'MI')).toMatchObject({ historical: true, negated: false });
    expect(classifyCondition('Status post CABG in 2010.', 'CABG').historical).toBe(true);
    expect(classifyCondition('History of present illness: chest pain.', 'chest pain').historical).toBe(false);
  });

  it('does not negate after a pseudo-trigger', () => {
    expect(classifyCondition('No increase in pain.', 'pain').negated).toBe(false);
    expect(classifyCondition('Gram negative rods in the blood.', 'rods').negated).toBe(false);
  });

  it('ends a negation at a termination term', () => {
    expect(classifyCondition('No fever but has cough.', 'cough').negated).toBe(false);
    expect(classifyCondition('No fever but has cough.', 'fever').negated).toBe(true);
    expect(classifyCondition('No chest pain, however reports dyspnea.', 'dyspnea').negated).toBe(false);
  });

  it('ends a negation after its window of words', () => {
    const far = `No fever ${'and then some more words '.repeat(4)}later cough.`;
    expect(classifyCondition(far, 'fever').negated).toBe(true);
    expect(classifyCondition(far, 'cough').negated).toBe(false);
  });

  it('matches triggers as whole words, case-insensitively', () => {
    expect(classifyCondition('Nodule in the right lung.', 'lung').negated).toBe(false);
    expect(classifyCondition('DENIES CHEST PAIN.', 'chest pain').negated).toBe(true);
  });

  it('finds the condition across spacing and case, and affirms one that is absent', () => {
    expect(classifyCondition('Denies  CHEST\n pain.', 'chest pain').negated).toBe(true);
    expect(classifyCondition('Denies chest pain.', 'dyspnea')).toEqual({
      negated: false,
      hypothetical: false,
      historical: false,
      experiencer: 'patient',
    });
  });

  it('applies the section: Family History is about family', () => {
    expect(classifyCondition('Diabetes.', 'diabetes', { section: 'family_history' }).experiencer).toBe(
      'other',
    );
    expect(classifyCondition('Diabetes.', 'diabetes', { section: 'past_medical_history' }).historical).toBe(
      true,
    );
  });
});

describe('findAssertionScopes', () => {
  it('returns scopes with their trigger, as offsets into the whole text', () => {
    const text = 'Chief complaint: cough. No fever or chills. Mother has diabetes.';
    const start = text.indexOf('No fever');
    const scopes = findAssertionScopes(text, start, text.indexOf(' Mother'));
    const end = text.indexOf('chills') + 'chills'.length;
    expect(scopes).toEqual([{ kind: 'negated', start: start + 3, end, trigger: { start, end: start + 2 } }]);
    expect(text.slice(scopes[0]!.start, scopes[0]!.end)).toBe('fever or chills');
  });

  it('clips scopes to the range', () => {
    const text = 'Denies fever, chills and cough today';
    const scopes = findAssertionScopes(text, 0, 13);
    expect(scopeTexts(text, scopes, 'negated')).toEqual(['fever']);
    expect(findAssertionScopes(text, 14, text.length)).toEqual([]);
    for (const s of findAssertionScopes(text, 7, 20)) {
      expect(s.start).toBeGreaterThanOrEqual(7);
      expect(s.end).toBeLessThanOrEqual(20);
    }
  });

  it('stops scopes at a sentence end inside the range', () => {
    const text = 'No fever. Cough for two days.';
    expect(scopeTexts(text, findAssertionScopes(text, 0, text.length), 'negated')).toEqual(['fever']);
    // "p.o." is not a sentence end.
    const po = 'No p.o. intake overnight.';
    expect(scopeTexts(po, findAssertionScopes(po, 0, po.length), 'negated')).toEqual([
      'p.o. intake overnight',
    ]);
  });

  it('gives a backward trigger the words before it', () => {
    const text = 'Pulmonary embolism was ruled out.';
    expect(scopeTexts(text, findAssertionScopes(text, 0, text.length), 'negated')).toEqual([
      'Pulmonary embolism',
    ]);
  });

  it('makes the whole range family in Family History, without a trigger', () => {
    const text = 'FAMILY HISTORY: Diabetes in many relatives; no cancer.';
    const start = text.indexOf('Diabetes');
    const scopes = findAssertionScopes(text, start, text.length, { section: 'family_history' });
    expect(scopes.filter((s) => s.kind === 'family')).toEqual([{ kind: 'family', start, end: text.length }]);
    expect(scopeTexts(text, scopes, 'negated')).toEqual(['cancer']);
  });

  it('makes the whole range historical in Past Medical History', () => {
    const scopes = findAssertionScopes('Hypertension.', 0, 13, { section: 'past_medical_history' });
    expect(scopes).toEqual([{ kind: 'historical', start: 0, end: 13 }]);
  });

  it('returns nothing for an empty or inverted range', () => {
    expect(findAssertionScopes('no fever', 5, 5)).toEqual([]);
    expect(findAssertionScopes('no fever', 6, 2)).toEqual([]);
  });
});

describe('rule files', () => {
  it('reads NegEx trigger lines, CRLF included, with PREP/POSP as hypothetical', () => {
    const rules = parseTriggerList(
      'no\t\t[PREN]\r\nrule out\t\t[PREP]\r\nbut\t\t[CONJ]\r\n',
      'negated',
      't.txt',
    );
    expect(rules.map((r) => [r.kind, r.phrase, r.role])).toEqual([
      ['negated', 'no', 'forward'],
      ['hypothetical', 'rule out', 'forward'],
      ['negated', 'but', 'terminate'],
    ]);
  });

  it('rejects a malformed trigger line with its file and line', () => {
    expect(() => parseTriggerList('no\t\t[PREN]\nbroken line\n', 'negated', 't.txt')).toThrow(RuleFileError);
    expect(() => parseTriggerList('no\t\t[XXXX]\n', 'negated', 't.txt')).toThrow(/t\.txt line 1/);
    expect(() => parseAdditions('nonsense\tno\t[PREN]\n', 'a.tsv')).toThrow(/unknown|kind/);
  });

  it('expands medspaCy token patterns into phrases', () => {
    const json = JSON.stringify({
      context_rules: [
        {
          category: 'NEGATED_EXISTENCE',
          literal: 'does not look like',
          direction: 'FORWARD',
          pattern: [
            { LOWER: { IN: ['does', 'did'] } },
            { LOWER: { IN: ['not', "n't"] } },
            { LOWER: 'look' },
            { LOWER: 'like' },
          ],
        },
        {
          category: 'FAMILY',
          literal: 'mother',
          direction: 'FORWARD',
          pattern: [{ LOWER: 'mother' }, { LOWER: "'s", OP: '?' }],
        },
      ],
    });
    expect(parseMedspacyContextRules(json, 'r.json').map((r) => r.phrase)).toEqual([
      'does not look like',
      "doesn't look like",
      'did not look like',
      "didn't look like",
      'mother',
      "mother's",
    ]);
    expect(() => parseMedspacyContextRules('{', 'r.json')).toThrow(RuleFileError);
  });

  it('merges the roles of a phrase listed twice', () => {
    const rules = compileRules([
      { kind: 'negated', phrase: 'resolved', role: 'forward', source: 'a' },
      { kind: 'negated', phrase: 'Resolved', role: 'backward', source: 'b' },
    ]);
    expect(rules.phrases).toBe(1);
    expect(rules.root.children?.get('resolved')?.roles).toBe(3);
  });
});

describe('NegEx test set', () => {
  it('scores F1 >= 0.93 for Negated', () => {
    const rows = parseNegExTestSet(fixture('negex_testset_Annotations-1-120-random.tsv'));
    expect(rows).toHaveLength(2376);
    expect(rows.filter((r) => r.negated)).toHaveLength(491);
    const m = evaluateNegEx(rows);
    console.log(
      `NegEx test set, Negated: precision ${m.precision.toFixed(3)} recall ${m.recall.toFixed(3)} ` +
        `F1 ${m.f1.toFixed(3)} accuracy ${m.accuracy.toFixed(3)} (tp ${m.tp} fp ${m.fp} fn ${m.fn} tn ${m.tn})`,
    );
    expect(m.tp + m.fp + m.fn + m.tn).toBe(2376);
    expect(m.f1).toBeGreaterThanOrEqual(0.93);
  });

  it('scores historical and experiencer on the ConText set', () => {
    const rows = parseContextTestSet(fixture('negex_context_testset_rsAnnotations-1-120-random.tsv'));
    expect(rows).toHaveLength(2376);
    const e = evaluateContext(rows);
    console.log(
      `ConText test set: historical accuracy ${e.historical.accuracy.toFixed(3)} ` +
        `(precision ${e.historical.precision.toFixed(3)} recall ${e.historical.recall.toFixed(3)}), ` +
        `experiencer accuracy ${e.experiencer.accuracy.toFixed(3)}, ` +
        `hypothetical recall ${e.hypothetical.recall.toFixed(3)} (${e.hypothetical.tp}/${e.hypothetical.tp + e.hypothetical.fn})`,
    );
    expect(e.negated.f1).toBeGreaterThanOrEqual(0.93);
    // Accuracy alone would pass a tagger that never says "historical" (0.892) or "other" (0.997).
    expect(e.historical.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(e.historical.recall).toBeGreaterThanOrEqual(0.5);
    expect(e.historical.precision).toBeGreaterThanOrEqual(0.8);
    expect(e.experiencer.accuracy).toBeGreaterThanOrEqual(0.99);
    expect(e.experiencer.tp).toBeGreaterThanOrEqual(4);
    expect(e.experiencer.fp).toBeLessThanOrEqual(1);
    expect(e.hypothetical.recall).toBeGreaterThanOrEqual(0.8);
  });

  it('parses quoted fields and rejects malformed rows', () => {
    const rows = parseNegExTestSet('7\tfever\t"Denies ""high"" FEVER."\tNegated\r\n');
    expect(rows).toEqual([{ id: '7', condition: 'fever', sentence: 'Denies "high" FEVER.', negated: true }]);
    expect(() => parseNegExTestSet('7\tfever\tDenies FEVER.\n')).toThrow(/4 tab-separated fields/);
    expect(() => parseNegExTestSet('7\tfever\tDenies FEVER.\tMaybe\n')).toThrow(/Affirmed or Negated/);
  });
});
