import type { AssertionKind, AssertionScope, SectionCategory } from '../types.ts';
import { compileRules, loadShippedRules } from './rules.ts';
import { computeScopes, DEFAULT_TUNING } from './scopes.ts';

/** Options of {@link findAssertionScopes} and {@link classifyCondition}. */
export interface AssertionOptions {
  /**
   * The section the text is in. Family History makes the whole range a `family` scope, Past Medical
   * and Past Surgical History a `historical` one, with no trigger. Default none.
   */
  readonly section?: SectionCategory;
}

/** How a condition is asserted in a sentence. */
export interface ConditionAssertion {
  readonly negated: boolean;
  /** Hypothetical or possible: "rule out", "possible", "if", "return if". */
  readonly hypothetical: boolean;
  readonly historical: boolean;
  /** `other` when the condition is about a family member or another person. */
  readonly experiencer: 'patient' | 'other';
}

// Compiled once: reading and merging the lists costs a few milliseconds, matching then costs one
// map lookup per token.
const RULES = compileRules(loadShippedRules());

const SECTION_KINDS: Partial<Record<SectionCategory, AssertionKind>> = {
  family_history: 'family',
  past_medical_history: 'historical',
  past_surgical_history: 'historical',
};

const NO_KINDS: ReadonlySet<AssertionKind> = new Set();
const WORD_CHAR = /[\p{L}\p{N}]/u;
const ONLY: Readonly<Record<AssertionKind, ReadonlySet<AssertionKind>>> = {
  negated: new Set(['negated']),
  hypothetical: new Set(['hypothetical']),
  historical: new Set(['historical']),
  family: new Set(['family']),
};

/**
 * Assertion scopes of the sentence or sentences in [start, end) of `text`: character ranges
 * (offsets into `text`) that are negated, hypothetical, historical, or about family, each with the
 * span of the trigger that opened it. Scopes never leave [start, end), and end at a termination
 * term, at a sentence end inside the range, or (negation only) after a window of words; see
 * `DEFAULT_TUNING` in `scopes.ts`. A section that implies a kind (Family History) adds one
 * scope over the whole range, without trigger, instead of that kind's trigger scopes.
 *
 * @returns scopes sorted by start; empty when nothing is asserted
 */
export function findAssertionScopes(
  text: string,
  start: number,
  end: number,
  options: AssertionOptions = {},
): AssertionScope[] {
  const from = Math.max(0, start);
  const to = Math.min(text.length, end);
  if (from >= to) return [];
  const sectionKind = options.section === undefined ? undefined : SECTION_KINDS[options.section];
  const scopes = computeScopes(
    text,
    from,
    to,
    RULES,
    DEFAULT_TUNING,
    sectionKind ? ONLY[sectionKind] : NO_KINDS,
  );
  if (sectionKind) scopes.push({ kind: sectionKind, start: from, end: to });
  return scopes.sort((a, b) => a.start - b.start || a.end - b.end);
}

/**
 * Classifies a condition in a sentence: whether it lies in a negated, hypothetical, historical or
 * family scope. The condition is found case-insensitively, white space runs matching any white
 * space, at its first occurrence as whole words (else its first occurrence anywhere); a condition
 * that is not in the sentence is affirmed, recent and about the patient. This is what
 * `cohort notes context --tsv` prints for each line.
 */
export function classifyCondition(
  sentence: string,
  condition: string,
  options: AssertionOptions = {},
): ConditionAssertion {
  const span = locateCondition(sentence, condition);
  if (!span) return { negated: false, hypothetical: false, historical: false, experiencer: 'patient' };
  return classifySpan(sentence, span[0], span[1], options);
}

/**
 * Classifies the condition at [start, end) of `sentence`. The condition counts as one word in the
 * scope windows and no trigger matches inside it (as NegEx replaces it by one placeholder), so a
 * condition such as "no acute distress" is not negated by its own "no".
 */
export function classifySpan(
  sentence: string,
  start: number,
  end: number,
  options: AssertionOptions = {},
): ConditionAssertion {
  const sectionKind = options.section === undefined ? undefined : SECTION_KINDS[options.section];
  const scopes = computeScopes(sentence, 0, sentence.length, RULES, DEFAULT_TUNING, NO_KINDS, [start, end]);
  const inScope = (kind: AssertionKind): boolean =>
    kind === sectionKind || scopes.some((s) => s.kind === kind && s.start < end && s.end > start);
  return {
    negated: inScope('negated'),
    hypothetical: inScope('hypothetical'),
    historical: inScope('historical'),
    experiencer: inScope('family') ? 'other' : 'patient',
  };
}

/**
 * Where a condition occurs in a sentence: [start, end), or undefined. Case-insensitive; white space
 * in the condition matches any run of white space; a whole-word occurrence is preferred.
 *
 * @param preferCase first look for the condition written in upper case, as the NegEx test set marks
 *   the annotated occurrence (its sentences may hold the condition twice). Default false.
 */
export function locateCondition(
  sentence: string,
  condition: string,
  preferCase = false,
): [number, number] | undefined {
  const words = condition
    .trim()
    .split(/\s+/)
    .filter((w) => w !== '');
  if (words.length === 0) return undefined;
  const pattern = (ws: string[]): string =>
    ws.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('\\s+');
  // Word boundaries are checked by hand: a \p{L} class in a fresh RegExp costs a third of a
  // millisecond to compile, more than classifying the sentence.
  const isWordAt = (i: number): boolean => i >= 0 && i < sentence.length && WORD_CHAR.test(sentence[i]!);
  let anywhere: [number, number] | undefined;
  const search = (source: string, flags: string): [number, number] | undefined => {
    for (const m of sentence.matchAll(new RegExp(source, `${flags}g`))) {
      const span: [number, number] = [m.index, m.index + m[0].length];
      anywhere ??= span;
      if (!isWordAt(span[0] - 1) && !isWordAt(span[1])) return span;
    }
    return undefined;
  };
  if (preferCase) {
    const upper = search(pattern(words.map((w) => w.toUpperCase())), '');
    anywhere = undefined;
    if (upper) return upper;
  }
  return search(pattern(words), 'i') ?? anywhere;
}
