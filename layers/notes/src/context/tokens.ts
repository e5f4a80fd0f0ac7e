/**
 * Word tokens for trigger matching. Triggers and text go through the same tokenizer, so a phrase
 * such as "r/o", "s/p" or ": none" matches however the note spaces it, and a trigger never
 * matches inside a longer word ("no" in "nodule").
 */

// A word (letters, combining marks and digits, with inner apostrophes: "patient's", "doesn't"), or
// a run of one punctuation character ("...", "___" count once, so a rule line does not eat a word
// window).
const TOKEN = /([\p{L}\p{M}\p{N}]+(?:['\u2019][\p{L}\p{M}\p{N}]+)*)|([^\s\p{L}\p{M}\p{N}])\2*/gu;

// Stems of "n't" contractions whose spelling differs from the verb.
const CONTRACTION_STEMS: Readonly<Record<string, string>> = { ca: 'can', wo: 'will', sha: 'shall' };

/** Tokens of a text range, in parallel arrays (one entry per token). */
export interface Tokens {
  /** Lower-cased token text; `''` for the opaque token that stands for an excluded span. */
  readonly text: string[];
  /** [start, end) of each token in the text that was tokenized. */
  readonly starts: number[];
  readonly ends: number[];
  /** Whether the token is a word (counts toward scope windows) rather than punctuation. */
  readonly word: boolean[];
}

/**
 * Tokenizes `text` in [start, end). "n't" contractions become two tokens, the verb and "not", so
 * that "doesn't look like" matches the trigger "does not look like". A curly apostrophe reads as a
 * straight one.
 *
 * @param exclude a span that becomes one opaque word token: no trigger matches in or across it. A
 *   condition being classified is excluded this way, as NegEx replaces it by one placeholder word.
 */
export function tokenize(
  text: string,
  start: number,
  end: number,
  exclude?: readonly [number, number],
): Tokens {
  const out: Tokens = { text: [], starts: [], ends: [], word: [] };
  const slice = text.slice(start, end);
  const exStart = exclude ? Math.max(exclude[0], start) : -1;
  const exEnd = exclude ? Math.min(exclude[1], end) : -1;
  let opaquePushed = !(exclude && exStart < exEnd);
  TOKEN.lastIndex = 0;
  for (let m = TOKEN.exec(slice); m !== null; m = TOKEN.exec(slice)) {
    const s = start + m.index;
    const e = s + m[0].length;
    if (!opaquePushed && e > exStart) {
      push(out, '', exStart, exEnd, true);
      opaquePushed = true;
    }
    if (s < exEnd && e > exStart) continue;
    if (m[1] === undefined) {
      push(out, m[0], s, e, false);
      continue;
    }
    const lower = m[0].toLowerCase().replaceAll('\u2019', "'");
    if (lower.length > 3 && lower.endsWith("n't")) {
      const stem = lower.slice(0, -3);
      push(out, CONTRACTION_STEMS[stem] ?? stem, s, e - 3, true);
      push(out, 'not', e - 3, e, true);
    } else {
      push(out, lower, s, e, true);
    }
  }
  if (!opaquePushed) push(out, '', exStart, exEnd, true);
  return out;
}

function push(out: Tokens, text: string, start: number, end: number, word: boolean): void {
  out.text.push(text);
  out.starts.push(start);
  out.ends.push(end);
  out.word.push(word);
}

/** A trigger phrase as the token sequence it matches (lower-cased). */
export function phraseTokens(phrase: string): string[] {
  return tokenize(phrase.trim(), 0, phrase.trim().length).text;
}
