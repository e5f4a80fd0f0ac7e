import type { Sentence } from './types.ts';

/*
 * A hand-written clinical sentence splitter: one pass over the lines of the range, looking only at
 * line breaks, ".", "!", "?", list markers and MIMIC placeholders. The rules:
 *
 * Inside a line, "." "!" "?" (a run of them, then any closing ) ] " ') end a sentence when white
 * space follows and the next word is not a plain lower-case word ("p.o. daily", "82. no early
 * deaths" go on; "pH 7.4" is treated as capitalized). For "." the word before it also decides:
 *   - titles and Latin connectors never end a sentence: Dr. Mr. Mrs. Ms. Prof. St. vs. approx.
 *     e.g. i.e. cf. viz. …
 *   - dosing and unit abbreviations (a word with inner periods such as p.o., b.i.d., q.d., p.r.n.,
 *     and mg. mcg. mL. tab. PO. BID. PRN. …) end one only before a Title-case word
 *     ("mg. Follow up" ends, "p.o. BID" and "mg. 2" do not);
 *   - "No." and months ("Feb.") do not end one before a number;
 *   - a period not followed by white space never ends one: decimals ("2.5", "98.6"), "e.g.,",
 *     "RRR.?Pulm".
 *
 * A line break ends a sentence when the next line is blank (always), starts a list item, or does
 * not read as a continuation. The next line continues the sentence when
 *   - the line before ends with ".", "!" or "?" that the rules above do not take as an end
 *     (an abbreviation, or a lower-case word after it);
 *   - the line before ends with , ; & / - + or a connector word ("and", "of", "with", "the", …);
 *   - it starts with a plain lower-case word or "(", and the line before is at least
 *     {@link MIN_WRAPPED_LINE} characters long (a wrapped line, not a short list entry such as
 *     "HTN"), does not end with a colon and, for a lower-case start, has lower-case letters itself
 *     (not an all-caps lab line followed by "pH 7.4");
 *   - the sentence is a list item, the line before is at least {@link MIN_WRAPPED_ITEM} long and
 *     does not end with a colon: a wrapped medication entry ("… Sig: One (1)" / "Injection TID").
 * Otherwise the break ends the sentence: vitals and lab lines ("BP 120/80 HR 72"), headings
 * without punctuation, one-per-line lists.
 *
 * List items: a line that starts with a bullet ("- ", "* ", "• ", "· ", "+ ", or "-" glued to a
 * word) or a number ("1. ", "1) ", "(1) ", "#1 ", "a) ", "A. " before a capital) starts a new
 * sentence, and its marker is part of it ("1." is never a sentence by itself). Inside a line, a
 * number marker "2. " starts a new sentence when it follows ". ; :" or continues the numbering of
 * the paragraph ("1. Aspirin 2. Metoprolol").
 *
 * MIMIC placeholders `[**…**]` are skipped whole: nothing inside one ends a sentence.
 * A sentence longer than {@link MAX_SENTENCE_CHARS} is cut at white space (see there).
 * Sentences are trimmed of white space (JavaScript's `\s`); every other character of the range is
 * in exactly one sentence.
 */

// Character tests live in this module, not in a shared one: under tsx (how the project runs its
// TypeScript) an imported function is reached through a getter on every call, which made this
// per-character loop four times slower.

/** Flags of ASCII characters for the scanner's fast path. */
const LOWER = 1;
const SPECIAL = 2; // . ! ? [ and digits: the characters that may end a sentence or start an item
const SPACE = 4;
const ASCII_FLAGS = new Uint8Array(128);
for (let c = 97; c <= 122; c++) ASCII_FLAGS[c] = LOWER;
for (let c = 48; c <= 57; c++) ASCII_FLAGS[c] = SPECIAL;
for (const c of [46, 33, 63, 91]) ASCII_FLAGS[c] = SPECIAL;
for (const c of [9, 10, 11, 12, 13, 32]) ASCII_FLAGS[c] = SPACE;

/** White space exactly as JavaScript's `\s` (so that `/\s/` in callers agrees on "trimmed"). */
function isSpaceCode(c: number): boolean {
  if (c < 128) return (ASCII_FLAGS[c]! & SPACE) !== 0;
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

function isBlankCode(c: number): boolean {
  return c === 32 || c === 9;
}

function isDigitCode(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isUpperCode(c: number): boolean {
  return c >= 65 && c <= 90;
}

function isAsciiLetterCode(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

const LOWER_LETTER = /\p{Ll}/u;
const UPPER_LETTER = /\p{Lu}/u;

/** A lower-case letter, any script (non-ASCII takes the slow path; it is rare in notes). */
function isLowerAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) return (ASCII_FLAGS[c]! & LOWER) !== 0;
  return LOWER_LETTER.test(text[i]!);
}

/** An upper-case letter, any script. */
function isUpperAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 128) return isUpperCode(c);
  return UPPER_LETTER.test(text[i]!);
}

/** Shortest line, from its first character, after which a lower-case or "(" line is taken as wrapped prose. */
const MIN_WRAPPED_LINE = 30;
/** Shortest line of a list item after which a line with a capital is taken as the item's wrapped rest. */
const MIN_WRAPPED_ITEM = 50;
/** Longest word looked at before a period (longer ones are ordinary words). */
const MAX_ABBREVIATION = 12;

/** Never end a sentence: "Dr. [**Last Name**]", "vs. placebo", "e.g. Tylenol". */
const TITLES = new Set(
  'dr drs mr mrs ms mx prof st vs v approx apprx appx e.g i.e eg ie cf viz incl esp'.split(' '),
);
/** End a sentence only before a Title-case word: "Tylenol 500 mg. p.o. BID" is one sentence. */
const DOSING = new Set(
  (
    'mg mcg ug g gm kg ml l dl cc meq mmol units tab tabs cap caps tsp tbsp oz inj susp soln sol po ' +
    'pr iv im sc sq sl qd qod bid tid qid qhs hs prn ac pc q hr hrs min mins'
  ).split(' '),
);
/** Do not end a sentence before a number: "No. 2", "Feb. 5". */
const BEFORE_NUMBER = new Set(
  'no nos num vol fig figs pg pp ref jan feb mar apr jun jul aug sep sept oct nov dec'.split(' '),
);
/** A line ending with one of these words goes on on the next line. */
const CONNECTORS = new Set(
  (
    'a an and are as at be been but by for from had has have her his in into is its nor of on or per ' +
    'than that the their this to was were which who with without w/ w/o'
  ).split(' '),
);

const INNER_PERIODS = /^(?=[a-z0-9]*[a-z])[a-z0-9]{1,3}(?:\.(?=[a-z0-9]*[a-z])[a-z0-9]{1,3})+$/;

enum Abbrev {
  None,
  Title,
  Dosing,
  BeforeNumber,
}

/** What decides whether a "." "!" or "?" ends a sentence, given the next word. */
interface Terminal {
  /** The punctuation character (the first of its run). */
  readonly punct: number;
  readonly abbrev: Abbrev;
}

/** What the previous line tells about a break after it. */
interface LineEnd {
  /** A ".", "!" or "?" ended the line, not yet decided. */
  readonly terminal: Terminal | undefined;
  /** Ends with , ; & / - + or a connector word. */
  readonly continues: boolean;
  readonly endsWithColon: boolean;
  readonly hasLower: boolean;
  /** Characters from the line's first non-blank character (of the whole line, not the range) to its end. */
  readonly length: number;
  /** The line held nothing but a list marker ("1." with the item on the next line). */
  readonly markerOnly: boolean;
}

/** Kind of a list marker at a line start: bullet, or a number with its value. */
interface Marker {
  /** Index after the marker and the blanks after it. */
  readonly end: number;
  /** The item number, or 0 for bullets and letters. */
  readonly number: number;
}

const PUNCT_PERIOD = 46;

function classify(text: string, wordStart: number, wordEnd: number): Abbrev {
  if (wordEnd - wordStart > MAX_ABBREVIATION || wordEnd === wordStart) return Abbrev.None;
  const word = text.slice(wordStart, wordEnd).toLowerCase();
  if (TITLES.has(word)) return Abbrev.Title;
  if (BEFORE_NUMBER.has(word)) return Abbrev.BeforeNumber;
  if (DOSING.has(word)) return Abbrev.Dosing;
  // Inner periods between short groups that each hold a letter: p.o, b.i.d, q.6h, a.m, E.C (not 5.77).
  return INNER_PERIODS.test(word) ? Abbrev.Dosing : Abbrev.None;
}

/** A word that starts lower case and has no capital ("daily", not "pH" or "mIVF"). */
function isPlainLowerWord(text: string, i: number, end: number): boolean {
  if (!isLowerAt(text, i)) return false;
  for (let k = i + 1; k < end; k++) {
    const c = text.charCodeAt(k);
    if (isSpaceCode(c)) return true;
    if (isUpperCode(c)) return false;
  }
  return true;
}

/** Whether a terminal punctuation ends the sentence, given the next word's first character at `next`. */
function endsSentence(text: string, t: Terminal, next: number, end: number): boolean {
  if (isPlainLowerWord(text, next, end)) return false;
  if (t.punct !== PUNCT_PERIOD) return true;
  switch (t.abbrev) {
    case Abbrev.Title:
      return false;
    case Abbrev.BeforeNumber:
      return !isDigitCode(text.charCodeAt(next));
    case Abbrev.Dosing:
      return isUpperAt(text, next) && next + 1 < end && isLowerAt(text, next + 1);
    default:
      return true;
  }
}

function isTerminalCode(c: number): boolean {
  return c === 46 || c === 33 || c === 63;
}

/** ) ] " ' ” ’ » after a sentence's last punctuation. */
function isCloserCode(c: number): boolean {
  return c === 41 || c === 93 || c === 34 || c === 39 || c === 0x201d || c === 0x2019 || c === 0xbb;
}

/** (, [, quotes before a word: not part of it for abbreviation tests. */
function isOpenerCode(c: number): boolean {
  return c === 40 || c === 91 || c === 34 || c === 39 || c === 0x201c || c === 0x2018 || c === 0xab;
}

/** Index of the first non-blank character at or after `k` in the line. */
function skipBlanks(text: string, k: number, lineEnd: number): number {
  while (k < lineEnd && isBlankCode(text.charCodeAt(k))) k++;
  return k;
}

function blankOrEnd(text: string, k: number, lineEnd: number): boolean {
  return k >= lineEnd || isBlankCode(text.charCodeAt(k));
}

/** List marker at `p` (first non-blank character of a line, or the range start); undefined if none. */
function markerAt(text: string, p: number, lineEnd: number): Marker | undefined {
  const c = text.charCodeAt(p);
  // Bullets: - * • · + ▪ –
  if (c === 45 || c === 42 || c === 0x2022 || c === 0xb7 || c === 43 || c === 0x25aa || c === 0x2013) {
    if (blankOrEnd(text, p + 1, lineEnd)) return { end: skipBlanks(text, p + 1, lineEnd), number: 0 };
    // "-Etiology of …": a dash glued to a word (not "-5").
    if (c === 45 && p + 1 < lineEnd && isAsciiLetterCode(text.charCodeAt(p + 1)))
      return { end: p + 1, number: 0 };
    return undefined;
  }
  // #1, (1), 1. 1)
  let k = p;
  const hash = c === 35;
  const paren = c === 40;
  if (hash || paren) k++;
  const digits = k;
  while (k < lineEnd && k - digits < 3 && isDigitCode(text.charCodeAt(k))) k++;
  if (k > digits) {
    const number = Number(text.slice(digits, k));
    if (hash) return blankOrEnd(text, k, lineEnd) ? { end: skipBlanks(text, k, lineEnd), number } : undefined;
    const close = text.charCodeAt(k);
    if (paren ? close === 41 : close === 46 || close === 41) {
      return blankOrEnd(text, k + 1, lineEnd) ? { end: skipBlanks(text, k + 1, lineEnd), number } : undefined;
    }
    return undefined;
  }
  if (hash || paren || !isAsciiLetterCode(c)) return undefined;
  // a) A) a. A. — a letter with "." only before a capital ("A. Cardiac", not "S. aureus").
  const close = text.charCodeAt(p + 1);
  if (close === 41 && blankOrEnd(text, p + 2, lineEnd))
    return { end: skipBlanks(text, p + 2, lineEnd), number: 0 };
  if (close === 46 && p + 2 < lineEnd && isBlankCode(text.charCodeAt(p + 2))) {
    const next = skipBlanks(text, p + 2, lineEnd);
    if (next < lineEnd && isUpperAt(text, next)) return { end: next, number: 0 };
  }
  return undefined;
}

/** The sentence being built, and the sentences so far. */
interface Builder {
  readonly out: Sentence[];
  /** First character of the open sentence, -1 when none is open. */
  start: number;
  /** Character after its last non-space character so far. */
  end: number;
  /** It began with a list marker. */
  isItem: boolean;
}

function closeSentence(b: Builder): void {
  if (b.start >= 0) b.out.push({ start: b.start, end: b.end });
  b.start = -1;
  b.isItem = false;
}

/**
 * Splits [start, end) of `text` (typically a section body) into sentences, with offsets into the
 * whole text, trimmed of white space, none empty. Rules suited to clinical notes (abbreviations,
 * decimals, numbered and bulleted lists, vitals and lab lines, headings without punctuation,
 * line-wrapped prose, MIMIC placeholders) are described at the top of this module.
 * One linear pass; lines end at "\n" ("\r\n" works too).
 * @param start first character. Default 0; clamped to the text.
 * @param end character after the last. Default `text.length`; clamped to the text.
 */
export function splitSentences(text: string, start = 0, end: number = text.length): Sentence[] {
  const to = Math.max(0, Math.min(end, text.length));
  const from = Math.max(0, Math.min(start, to));
  const b: Builder = { out: [], start: -1, end: -1, isItem: false };
  let lastNumber = 0;
  let prev: LineEnd | undefined;
  // Index after the next "**]" at or after the last search, -2 before any search, -1 if none:
  // keeps placeholder skipping linear when "[**" has no close.
  let placeholderClose = -2;

  // The real start of the range's first line: a body that starts after "CC:" is measured with its header.
  const firstLineOrigin = from === 0 ? 0 : text.lastIndexOf('\n', from - 1) + 1;
  for (let lineStart = from; lineStart < to; ) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd < 0 || lineEnd > to) lineEnd = to;
    let cs = lineStart;
    while (cs < lineEnd && isSpaceCode(text.charCodeAt(cs))) cs++;
    let ce = lineEnd;
    while (ce > cs && isSpaceCode(text.charCodeAt(ce - 1))) ce--;

    if (cs === ce) {
      // A blank line always ends the sentence, and any numbering.
      closeSentence(b);
      prev = undefined;
      lastNumber = 0;
      lineStart = lineEnd + 1;
      continue;
    }
    const marker = markerAt(text, cs, ce);
    if (b.start >= 0 && (marker || !continues(text, prev!, b.isItem, cs, ce))) closeSentence(b);
    if (b.start < 0) {
      b.start = cs;
      b.isItem = marker !== undefined;
    }
    if (marker && marker.number > 0) lastNumber = marker.number;

    let terminal: Terminal | undefined;
    let hasLower = false;
    let i = marker ? marker.end : cs;
    while (i < ce) {
      const c = text.charCodeAt(i);
      const flags = c < 128 ? ASCII_FLAGS[c]! : 0;
      if ((flags & SPECIAL) === 0) {
        if (flags & LOWER) hasLower = true;
        i++;
        continue;
      }
      if (c === 91) {
        if (text.charCodeAt(i + 1) === 42 && text.charCodeAt(i + 2) === 42) {
          if (placeholderClose !== -1 && placeholderClose < i + 3) {
            const k = text.indexOf('**]', i + 3);
            placeholderClose = k < 0 ? -1 : k + 3;
          }
          // Placeholders are names and dates: prose, whatever their case.
          if (placeholderClose > 0 && placeholderClose <= ce) {
            i = placeholderClose;
            hasLower = true;
            continue;
          }
        }
        i++;
        continue;
      }
      if (isDigitCode(c)) {
        if (i > cs && isSpaceCode(text.charCodeAt(i - 1))) {
          const inline = inlineMarker(text, i, ce, cs, lastNumber);
          if (inline) {
            if (b.start >= 0 && b.start < i) {
              let e = i;
              while (isSpaceCode(text.charCodeAt(e - 1))) e--;
              b.end = e;
              closeSentence(b);
            }
            b.start = i;
            b.isItem = true;
            lastNumber = inline.number;
            i = inline.end;
            continue;
          }
        }
        i++;
        continue;
      }
      // . ! ?
      let q = i + 1;
      while (q < ce && isTerminalCode(text.charCodeAt(q))) q++;
      while (q < ce && isCloserCode(text.charCodeAt(q))) q++;
      if (q < ce && !isSpaceCode(text.charCodeAt(q))) {
        i = q;
        continue;
      }
      const t: Terminal = {
        punct: c,
        abbrev: c === PUNCT_PERIOD ? classifyWordBefore(text, i, cs) : Abbrev.None,
      };
      if (q === ce) {
        terminal = t;
        break;
      }
      let r = q;
      while (isSpaceCode(text.charCodeAt(r))) r++;
      if (endsSentence(text, t, r, ce)) {
        b.end = q;
        closeSentence(b);
        // r < ce: the line goes on, so a sentence is always open inside this loop.
        b.start = r;
      }
      i = r;
    }
    if (b.start >= 0) b.end = ce;
    prev = {
      terminal,
      continues: !terminal && endsWithContinuation(text, cs, ce),
      endsWithColon: text.charCodeAt(ce - 1) === 58,
      hasLower,
      length: ce - (lineStart === from ? firstLineOrigin : cs),
      markerOnly: marker !== undefined && marker.end >= ce,
    };
    lineStart = lineEnd + 1;
  }
  closeSentence(b);
  return capSentenceLength(text, b.out);
}

/**
 * Longest sentence in characters. A run-on line longer than this (a pasted table, a note without
 * punctuation) is cut at the last white space before the limit, so that work per sentence (token
 * offsets, assertion scopes) stays bounded and a note's cost stays linear in its length.
 */
export const MAX_SENTENCE_CHARS = 1000;

function capSentenceLength(text: string, sentences: Sentence[], max = MAX_SENTENCE_CHARS): Sentence[] {
  if (!sentences.some((s) => s.end - s.start > max)) return sentences;
  const out: Sentence[] = [];
  for (const s of sentences) {
    let start = s.start;
    while (s.end - start > max) {
      let cut = start + max;
      while (cut > start && !isSpaceOrBreak(text, cut)) cut--;
      if (cut === start) cut = start + max; // one "word" longer than the limit: cut inside it
      let end = cut;
      while (end > start && isSpaceOrBreak(text, end - 1)) end--;
      out.push({ start, end });
      start = cut;
      while (start < s.end && isSpaceOrBreak(text, start)) start++;
    }
    if (start < s.end) out.push({ start, end: s.end });
  }
  return out;
}

// Sentences are trimmed of JavaScript's \s, so cuts use the same class.
const WHITE_SPACE = /\s/;
function isSpaceOrBreak(text: string, i: number): boolean {
  return WHITE_SPACE.test(text[i] ?? '');
}

/** The abbreviation class of the word before a punctuation at `i`, without brackets or quotes. */
function classifyWordBefore(text: string, i: number, lineStart: number): Abbrev {
  let w = i;
  while (w > lineStart && !isSpaceCode(text.charCodeAt(w - 1)) && i - w <= MAX_ABBREVIATION) w--;
  while (w < i && isOpenerCode(text.charCodeAt(w))) w++;
  let e = i;
  while (e > w && isCloserCode(text.charCodeAt(e - 1))) e--;
  return classify(text, w, e);
}

/** A "2. " or "2) " inside a line that starts a list item. */
function inlineMarker(
  text: string,
  i: number,
  ce: number,
  cs: number,
  lastNumber: number,
): Marker | undefined {
  let k = i;
  while (k < ce && k - i < 2 && isDigitCode(text.charCodeAt(k))) k++;
  const c = text.charCodeAt(k);
  if ((c !== 46 && c !== 41) || k + 1 >= ce || !isBlankCode(text.charCodeAt(k + 1))) return undefined;
  let r = k + 1;
  while (r < ce && isBlankCode(text.charCodeAt(r))) r++;
  // The item must start with a capital or a placeholder, so that "given 2. then" stays prose.
  if (!(isUpperAt(text, r) || text.charCodeAt(r) === 91)) return undefined;
  const number = Number(text.slice(i, k));
  let p = i - 1;
  while (p > cs && isSpaceCode(text.charCodeAt(p))) p--;
  const before = text.charCodeAt(p);
  const afterPunct = before === 46 || before === 59 || before === 58;
  if (!afterPunct && !(lastNumber > 0 && number === lastNumber + 1)) return undefined;
  return { end: r, number };
}

/** Ends with , ; & / - + or a connector word. */
function endsWithContinuation(text: string, cs: number, ce: number): boolean {
  const c = text.charCodeAt(ce - 1);
  if (c === 44 || c === 59 || c === 38 || c === 47 || c === 45 || c === 43) return true;
  let w = ce;
  while (w > cs && ce - w <= 8 && !isSpaceCode(text.charCodeAt(w - 1))) w--;
  if (ce - w > 8 || (w > cs && !isSpaceCode(text.charCodeAt(w - 1)))) return false;
  return CONNECTORS.has(text.slice(w, ce).toLowerCase());
}

/** Whether the line at [cs, ce) goes on with the open sentence that the previous line `prev` ended. */
function continues(text: string, prev: LineEnd, sentIsItem: boolean, cs: number, ce: number): boolean {
  if (prev.markerOnly) return true;
  if (prev.terminal) return !endsSentence(text, prev.terminal, cs, ce);
  if (prev.continues) return true;
  const c = text.charCodeAt(cs);
  if (c === 40) return prev.length >= MIN_WRAPPED_LINE && !prev.endsWithColon;
  if (isPlainLowerWord(text, cs, ce))
    return prev.length >= MIN_WRAPPED_LINE && prev.hasLower && !prev.endsWithColon;
  return sentIsItem && prev.length >= MIN_WRAPPED_ITEM && !prev.endsWithColon && isUpperAt(text, cs);
}
