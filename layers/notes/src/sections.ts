import { NotesConfigError } from './errors.ts';
import { loadSectionRules, normalizeHeaderPhrase } from './text/section-rules.ts';
import { SECTION_CATEGORIES, type Section, type SectionCategory } from './types.ts';

export { normalizeHeaderPhrase } from './text/section-rules.ts';

/** Options of {@link splitSections}. */
export interface SectionOptions {
  /**
   * Header phrases to add to the built-in rules, or to override them: phrase (any case, without
   * its colon) → category, or `null` so that a built-in phrase is never a header. Default none.
   * Pass the same object on every call: the merged rules are cached per object.
   */
  readonly headers?: Readonly<Record<string, SectionCategory | null>>;
}

/** Header phrases with their categories, and the longest raw header worth looking at. */
interface Lexicon {
  readonly phrases: ReadonlyMap<string, SectionCategory>;
  /** Characters from a header's first letter to its colon, beyond which a line is not a header. */
  readonly maxHeaderChars: number;
}

// Slack over the longest phrase for doubled spaces and spaces around "/" in the text.
const HEADER_SLACK = 16;
// A header without a colon must be at least this long: "PE" or "CC" alone on a line is too likely
// to be something else (an initial, a list label).
const MIN_BARE_HEADER = 3;
// A prefix before "/" ("LABS" of "LABS/STUDIES") is looked up alone when at least this long, so
// that "S/P:" does not become the SOAP header "S:".
const MIN_SLASH_PREFIX = 3;

// Character tests are local: under tsx an imported function costs a getter call per use.
function isBlankCode(c: number): boolean {
  return c === 32 || c === 9;
}

function isUpperCode(c: number): boolean {
  return c >= 65 && c <= 90;
}

function makeLexicon(phrases: ReadonlyMap<string, SectionCategory>): Lexicon {
  let longest = 0;
  for (const p of phrases.keys()) longest = Math.max(longest, p.length);
  return { phrases, maxHeaderChars: longest + HEADER_SLACK };
}

let builtIn: Lexicon | undefined;
const custom = new WeakMap<object, Lexicon>();

function defaultLexicon(): Lexicon {
  builtIn ??= makeLexicon(loadSectionRules());
  return builtIn;
}

function lexiconFor(options: SectionOptions): Lexicon {
  const extra = options.headers;
  if (!extra) return defaultLexicon();
  let lexicon = custom.get(extra);
  if (!lexicon) {
    const phrases = new Map(defaultLexicon().phrases);
    for (const [phrase, category] of Object.entries(extra)) {
      const key = normalizeHeaderPhrase(phrase);
      if (!/^[a-z]/.test(key))
        throw new NotesConfigError(`header phrase must start with a letter, got "${phrase}"`);
      if (category === null) phrases.delete(key);
      else if ((SECTION_CATEGORIES as readonly string[]).includes(category)) phrases.set(key, category);
      else
        throw new NotesConfigError(`unknown section category "${String(category)}" for header "${phrase}"`);
    }
    lexicon = makeLexicon(phrases);
    custom.set(extra, lexicon);
  }
  return lexicon;
}

/**
 * The built-in header rules: normalized phrase (see {@link normalizeHeaderPhrase}) → category,
 * merged from medspaCy, cTAKES, C-CDA and this project's list (`assets/sections/`).
 * @throws RuleFileError when a shipped rule file cannot be read or parsed
 */
export function sectionLexicon(): ReadonlyMap<string, SectionCategory> {
  return defaultLexicon().phrases;
}

function lookup(lexicon: Lexicon, raw: string): SectionCategory | undefined {
  const key = normalizeHeaderPhrase(raw);
  const found = lexicon.phrases.get(key);
  if (found !== undefined) return found;
  // "IMPRESSION/REPORT/PLAN", "Labs/Ancillary studies": the first part names the section.
  const slash = key.indexOf('/');
  return slash >= MIN_SLASH_PREFIX ? lexicon.phrases.get(key.slice(0, slash)) : undefined;
}

interface Header {
  readonly start: number;
  readonly bodyStart: number;
  readonly title: string;
  readonly category: SectionCategory;
}

/** The header that line [p, lineEnd) starts with, where p is its first non-blank character. */
function headerAt(text: string, p: number, lineEnd: number, lexicon: Lexicon): Header | undefined {
  // Headers start with a capital: this rejects times ("10:30"), list numbers, placeholders
  // ("[**First Name**]:") and wrapped prose that happens to start a line with "plan:".
  if (!isUpperCode(text.charCodeAt(p))) return undefined;
  const limit = Math.min(lineEnd, p + lexicon.maxHeaderChars);
  let colon = -1;
  let lower = false;
  for (let q = p + 1; q < limit; q++) {
    const c = text.charCodeAt(q);
    if (c === 58) {
      colon = q;
      break;
    }
    if (c >= 97 && c <= 122) lower = true;
  }
  if (colon >= 0) {
    // Only known phrases count: "Tylenol: 500 mg" or "Speculum exam:" are not headers.
    const category = lookup(lexicon, text.slice(p, colon));
    if (category === undefined) return undefined;
    let body = colon + 1;
    while (body < lineEnd && isBlankCode(text.charCodeAt(body))) body++;
    // SOAP letters ("S:", "P:") but not vitals such as "P: 72".
    if (colon === p + 1 && body < lineEnd) {
      const d = text.charCodeAt(body);
      if (d >= 48 && d <= 57) return undefined;
    }
    return { start: p, bodyStart: body, title: text.slice(p, colon + 1), category };
  }
  // Without a colon, only an all-capitals line that is nothing but a known phrase
  // ("HISTORY OF PRESENT ILLNESS", the cTAKES demo format). Mixed-case lines need the colon, so
  // that prose such as "Surgical history includes tonsils…" or a list item stays text.
  if (lower || lineEnd > limit) return undefined;
  let e = lineEnd;
  while (e > p && (isBlankCode(text.charCodeAt(e - 1)) || text.charCodeAt(e - 1) === 13)) e--;
  if (e - p < MIN_BARE_HEADER) return undefined;
  const category = lookup(lexicon, text.slice(p, e));
  if (category === undefined) return undefined;
  return { start: p, bodyStart: e, title: text.slice(p, e), category };
}

/**
 * Splits a note into sections by rule-based header detection, with normalized categories.
 *
 * A header is found at the start of a line (after spaces or tabs only), starts with a capital
 * letter, and is a known header phrase (case-insensitive; see {@link sectionLexicon}) followed
 * by a colon, with or without text after it on the same line ("CC: chest pain", "PE:?CV: …"),
 * or, without a colon, an all-capitals line holding nothing but the phrase. "X/Y" headers not
 * listed whole are looked up by X. Nothing else is a header: not a phrase inside a line
 * ("…discussed the Plan: …"), not an unknown label ("Tylenol: 500 mg"), not a time ("10:30"),
 * not a MIMIC placeholder (`[**First Name**]:`), which may follow a header on its line
 * ("Attending:[**First Name3 (LF) 1893**]"). Lines are separated by "\n" ("\r\n" works too).
 *
 * The sections tile the text: text before the first header is a section of category `other`
 * without title; each section runs from its header's first character to the next header; the
 * last one ends at `text.length`. `bodyStart` is after the header's colon and the spaces or tabs
 * after it (for a header without colon, after the phrase). Empty text gives no section.
 *
 * One pass over the lines with a map lookup per candidate line: a line is looked at only when its
 * first non-blank character is a capital, and only up to the longest phrase's length.
 * @throws RuleFileError when a shipped rule file cannot be read or parsed (first call only)
 * @throws NotesConfigError when `options.headers` names an unknown category
 */
export function splitSections(text: string, options: SectionOptions = {}): Section[] {
  const lexicon = lexiconFor(options);
  const sections: Section[] = [];
  let open: Header | undefined;
  const n = text.length;
  for (let lineStart = 0; lineStart < n; ) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd < 0) lineEnd = n;
    let p = lineStart;
    while (p < lineEnd && isBlankCode(text.charCodeAt(p))) p++;
    const header = p < lineEnd ? headerAt(text, p, lineEnd, lexicon) : undefined;
    if (header) {
      if (open) sections.push(toSection(open, header.start));
      else if (header.start > 0)
        sections.push({ category: 'other', start: 0, bodyStart: 0, end: header.start });
      open = header;
    }
    lineStart = lineEnd + 1;
  }
  if (open) sections.push(toSection(open, n));
  else if (n > 0) sections.push({ category: 'other', start: 0, bodyStart: 0, end: n });
  return sections;
}

function toSection(h: Header, end: number): Section {
  return { category: h.category, title: h.title, start: h.start, bodyStart: h.bodyStart, end };
}
