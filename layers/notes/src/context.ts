/**
 * Assertion tags by ConText (Harkema et al. 2009), the successor of NegEx (Chapman et al. 2001):
 * which words of a sentence are negated, hypothetical or possible, historical, or about someone
 * other than the patient. Triggers come from the NegEx and ConText lists and medspaCy's ConText
 * rules, shipped in `assets/context/` (see its SOURCE.md), merged into one token trie at module load.
 */
export {
  type AssertionOptions,
  type ConditionAssertion,
  classifyCondition,
  classifySpan,
  findAssertionScopes,
  locateCondition,
} from './context/classify.ts';
export {
  type ContextEvaluation,
  type ContextRow,
  evaluateContext,
  evaluateNegEx,
  type NegExRow,
  parseContextTestSet,
  parseNegExTestSet,
  type TagMetrics,
} from './context/evaluate.ts';
