import type { AssertionKind, AssertionScope } from '../types.ts';
import { type CompiledRules, KINDS, NEAR, POST, PRE, PSEUDO, ROLE_WIDTH, roleBit, TERM } from './rules.ts';
import { type Tokens, tokenize } from './tokens.ts';

/** How far the scopes of one kind reach. */
export interface KindTuning {
  /** Most words a forward scope covers; `Infinity` for the rest of the sentence. */
  readonly forwardWords: number;
  /** Most words the scope of a `near` trigger (ConText's ONEW: "s/p", "prior") covers. */
  readonly nearWords: number;
  /** Most words a backward scope covers. */
  readonly backwardWords: number;
  /** Role bits (of any kind, see `roleBit`) that end a scope of this kind, besides sentence ends. */
  readonly stops: number;
}

/** Scope reach of every kind, by kind. */
export type ScopeTuning = Readonly<Record<AssertionKind, KindTuning>>;

// Reach of a `near` trigger; see DEFAULT_TUNING.
const NEAR_WORDS = 4;

/**
 * The reach chosen on the NegEx test set (F1 for Negated with every list merged):
 *
 * - negated: forward 15 words, backward 6. NegEx's 5-word window scores 0.957 (it misses the end
 *   of "denies palpitations, shortness of breath, chest pain, headache, or lightheadedness"),
 *   10 words 0.979, 15 words 0.980, the whole sentence as in ConText 0.979; the cap guards run-on
 *   lines that the sentence splitter could not cut. A negation ends at a negation termination
 *   ("but", "however", "aside from", "secondary to", "presents", ...) and, as in NegEx, at a
 *   pseudo-trigger, a backward negation trigger or a possibility trigger ("no fever, possible
 *   pneumonia").
 * - hypothetical, historical, family: the rest of the sentence, ended by a termination of their own
 *   kind, as in ConText; a `near` trigger ("s/p", "prior") reaches 4 words ("s/p coronary artery
 *   bypass"), which scored as well as 1 to 15 on the ConText set's historical column.
 */
export const DEFAULT_TUNING: ScopeTuning = {
  negated: {
    forwardWords: 15,
    nearWords: 15,
    backwardWords: 6,
    stops: roleBit('negated', TERM | PSEUDO | POST) | roleBit('hypothetical', PRE | POST),
  },
  hypothetical: {
    forwardWords: Infinity,
    nearWords: NEAR_WORDS,
    backwardWords: Infinity,
    stops: roleBit('hypothetical', TERM),
  },
  historical: {
    forwardWords: Infinity,
    nearWords: NEAR_WORDS,
    backwardWords: Infinity,
    stops: roleBit('historical', TERM),
  },
  family: {
    forwardWords: Infinity,
    nearWords: NEAR_WORDS,
    backwardWords: Infinity,
    stops: roleBit('family', TERM),
  },
};

/** A trigger found in the tokens: tokens [first, last], with its role bits. */
export interface TriggerMatch {
  readonly first: number;
  readonly last: number;
  readonly roles: number;
}

/**
 * Finds trigger phrases: at each token, the longest phrase of any kind that starts there, taken
 * left to right without overlap (NegEx's longest-first replacement, so "no increase" is a
 * pseudo-trigger and never the trigger "no"). The opaque token of an excluded span matches nothing.
 */
export function findTriggers(tokens: Tokens, rules: CompiledRules): TriggerMatch[] {
  const matches: TriggerMatch[] = [];
  const n = tokens.text.length;
  for (let i = 0; i < n; ) {
    let node = rules.root;
    let last = -1;
    let roles = 0;
    for (let j = i; j < n; j++) {
      const t = tokens.text[j]!;
      const next = t === '' ? undefined : node.children?.get(t);
      if (!next) break;
      node = next;
      if (node.roles !== 0) {
        last = j;
        roles = node.roles;
      }
    }
    if (last < 0) {
      i++;
      continue;
    }
    matches.push({ first: i, last, roles });
    i = last + 1;
  }
  return matches;
}

// A sentence end inside the range: ".", "!", "?" followed by white space or the range's end, unless
// after a single letter ("p.o.", "q.d."); or ";".
function sentenceBreaks(tokens: Tokens): Uint8Array {
  const n = tokens.text.length;
  const breaks = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (tokens.word[i]) continue;
    const c = tokens.text[i]!.charCodeAt(0);
    if (c === 59 /* ; */) breaks[i] = 1;
    else if (c === 46 /* . */ || c === 33 /* ! */ || c === 63 /* ? */) {
      const followedBySpace = i + 1 === n || tokens.starts[i + 1]! > tokens.ends[i]!;
      const prev = i > 0 ? tokens.text[i - 1]! : '';
      const afterInitial = c === 46 && tokens.word[i - 1] === true && prev.length === 1;
      if (followedBySpace && !afterInitial) breaks[i] = 1;
    }
  }
  return breaks;
}

/**
 * Assertion scopes of the text in [start, end), by ConText over trigger matches. Offsets index the
 * whole text. A scope spans words only (never the trigger itself, nor leading or trailing
 * punctuation); a bidirectional trigger's scope spans both sides and the trigger.
 *
 * @param exclude a span (the condition being classified) that counts as one word and holds no trigger
 */
export function computeScopes(
  text: string,
  start: number,
  end: number,
  rules: CompiledRules,
  tuning: ScopeTuning,
  skipKinds: ReadonlySet<AssertionKind>,
  exclude?: readonly [number, number],
): AssertionScope[] {
  const tokens = tokenize(text, start, end, exclude);
  const matches = findTriggers(tokens, rules);
  if (matches.length === 0) return [];
  const n = tokens.text.length;
  // Role bits of the trigger starting at each token (0 elsewhere), and the first token of the
  // trigger ending at each token (-1 elsewhere), for the backward walk.
  const rolesAt = new Int32Array(n);
  const firstAt = new Int32Array(n).fill(-1);
  for (const m of matches) {
    rolesAt[m.first] = m.roles;
    firstAt[m.last] = m.first;
  }
  const breaks = sentenceBreaks(tokens);
  const scopes: AssertionScope[] = [];
  KINDS.forEach((kind, k) => {
    if (skipKinds.has(kind)) return;
    const shift = ROLE_WIDTH * k;
    const tune = tuning[kind];
    for (const m of matches) {
      const own = (m.roles >>> shift) & 31;
      if ((own & (PRE | NEAR | POST)) === 0) continue;
      let from = -1;
      let to = -1;
      if (own & (PRE | NEAR)) {
        // Forward: words after the trigger up to a break, a stopping trigger, or the window.
        const window = own & PRE ? tune.forwardWords : tune.nearWords;
        let words = 0;
        for (let t = m.last + 1; t < n; t++) {
          if (breaks[t] || rolesAt[t]! & tune.stops) break;
          if (!tokens.word[t]) continue;
          if (++words > window) break;
          if (from < 0) from = tokens.starts[t]!;
          to = tokens.ends[t]!;
        }
      }
      if (own & POST) {
        let words = 0;
        let backFrom = -1;
        for (let t = m.first - 1; t >= 0; t--) {
          if (breaks[t]) break;
          // A stopping trigger ends the scope at its last token, so look up its first.
          const f = firstAt[t]!;
          if (f >= 0 && rolesAt[f]! & tune.stops) break;
          if (!tokens.word[t]) continue;
          if (++words > tune.backwardWords) break;
          backFrom = tokens.starts[t]!;
          if (to < 0 && !(own & (PRE | NEAR))) to = tokens.ends[t]!;
        }
        if (backFrom >= 0) {
          // Bidirectional: one scope over both sides and the trigger.
          if (own & (PRE | NEAR)) to = Math.max(to, tokens.ends[m.last]!);
          from = backFrom;
        }
      }
      if (from < 0 || to <= from) continue;
      scopes.push({
        kind,
        start: from,
        end: to,
        trigger: { start: tokens.starts[m.first]!, end: tokens.ends[m.last]! },
      });
    }
  });
  return scopes;
}
