/**
 * Evidence: the chunk's text from the stored note text (`NoteTextStore`, same encrypted store as
 * the index) sliced by the chunk's offsets, the best-matching sentence highlighted, and what the
 * note asserts about it.
 *
 * The best-matching sentence is chosen lexically (query words found in the sentence, weighted by
 * length so that "apixaban" counts more than "on"), not by embedding every sentence: the chunk was
 * already chosen by the model, and one forward pass per sentence would multiply the query's cost by
 * the number of evidence sentences (hundreds for k = 50). With no word in common, the first sentence
 * (that does not lie in an excluded scope) is highlighted.
 */
import { type ChunkAssertion, type ChunkMeta, coverage, type NoteTextRef } from '@cohort/index';
import { splitSentences } from '@cohort/notes';
import type { Evidence } from './schemas.ts';
import type { ChunkHit } from './searcher.ts';

/** Where note texts come from (`NoteTextStore` from `@cohort/index`). */
export interface NoteTexts {
  get(ref: NoteTextRef): Promise<string | undefined>;
}

/** Assertion kinds that do not count in `affirmed` mode. */
export const EXCLUDED_WHEN_AFFIRMED = ['negated', 'hypothetical', 'family'] as const;

const STOPWORDS = new Set(
  'a an and are as at be by for from has had have he her his in is it of on or she that the their them they this to was were with who whom patient patients'.split(
    ' ',
  ),
);

/** A word: letters and digits of any script. */
const WORD = /[\p{L}\p{N}]+/gu;

/** Lower-cased words of at least two letters or digits, minus stop words. */
export function queryTerms(query: string): Set<string> {
  const out = new Set<string>();
  for (const m of query.toLowerCase().matchAll(WORD)) {
    if (m[0].length >= 2 && !STOPWORDS.has(m[0])) out.add(m[0]);
  }
  return out;
}

/** The assertion of [start, end): the kind whose scopes cover at least half of it, else affirmed. */
export function assertionOf(
  start: number,
  end: number,
  scopes: readonly ChunkAssertion[],
): Evidence['assertion'] {
  // The order settles a span covered by two kinds: what excludes it first.
  for (const kind of ['negated', 'hypothetical', 'family', 'historical'] as const) {
    const of = scopes.filter((s) => s.kind === kind);
    if (of.length > 0 && coverage(start, end, of) >= 0.5) return kind;
  }
  return 'affirmed';
}

/**
 * The best-matching sentence of a chunk as [start, end) into the note text. In `affirmed` mode a
 * sentence lying in an excluded scope is chosen only when every sentence does.
 */
export function bestSentence(
  text: string,
  chunk: ChunkMeta,
  terms: ReadonlySet<string>,
  affirmedOnly: boolean,
): { start: number; end: number } | undefined {
  const sentences = splitSentences(text, chunk.start, chunk.end);
  if (sentences.length === 0) return undefined;
  let best: { start: number; end: number } | undefined;
  let bestScore = -1;
  for (const s of sentences) {
    const excluded =
      affirmedOnly &&
      chunk.assertions.length > 0 &&
      (EXCLUDED_WHEN_AFFIRMED as readonly string[]).includes(assertionOf(s.start, s.end, chunk.assertions));
    let score = 0;
    if (terms.size > 0) {
      let seen: Set<string> | undefined;
      for (const m of text.slice(s.start, s.end).toLowerCase().matchAll(WORD)) {
        if (terms.has(m[0]) && !seen?.has(m[0])) {
          (seen ??= new Set()).add(m[0]);
          score += Math.min(m[0].length, 12);
        }
      }
    }
    // An excluded sentence ranks below every other, whatever its words.
    const ranked = excluded ? score - 1e6 : score;
    if (ranked > bestScore) {
      bestScore = ranked;
      best = s;
    }
  }
  return best;
}

/** Options of {@link buildEvidence}. */
export interface BuildEvidenceOptions {
  readonly texts?: NoteTexts;
  readonly query: string;
  readonly assertion: 'affirmed' | 'any';
  /** Note texts read at once. Default 16. */
  readonly concurrency?: number;
  /** Called when a note's text cannot be read (not when it is simply absent); ids only. */
  readonly onTextError?: (noteId: string, error: unknown) => void;
}

/**
 * Evidence for each hit, in order. A note whose text is not stored gives `snippet: null`, no
 * highlights and the chunk-level assertion; a read failure is reported through `onTextError` and
 * handled the same way, so evidence is never lost for want of a snippet.
 */
export async function buildEvidence(
  hits: readonly ChunkHit[],
  options: BuildEvidenceOptions,
): Promise<Evidence[]> {
  const terms = queryTerms(options.query);
  const keyOf = (c: ChunkMeta) => JSON.stringify([c.noteId, c.source ?? null]);
  // Read each distinct note version once, a bounded number at a time.
  const wanted = [...new Map(hits.map((h) => [keyOf(h.chunk), h.chunk])).entries()];
  const limit = options.concurrency ?? 16;
  let next = 0;
  const results = new Map<string, string | undefined>();
  const worker = async () => {
    while (next < wanted.length) {
      const [key, chunk] = wanted[next++]!;
      let text: string | undefined;
      try {
        text = options.texts
          ? await options.texts.get({ noteId: chunk.noteId, source: chunk.source })
          : undefined;
      } catch (error) {
        options.onTextError?.(chunk.noteId, error);
      }
      results.set(key, text);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, wanted.length) }, worker));

  return hits.map((h) => {
    const c = h.chunk;
    const text = results.get(keyOf(c));
    const base = {
      noteId: c.noteId,
      noteType: c.noteType ?? null,
      noteDate: c.noteDate ?? null,
      section: c.section,
      score: h.score,
    };
    // A text shorter than the chunk's offsets is another version than the one indexed: no snippet.
    if (text === undefined || c.end > text.length || c.start > c.end) {
      return { ...base, snippet: null, highlights: [], assertion: assertionOf(c.start, c.end, c.assertions) };
    }
    const sentence = bestSentence(text, c, terms, options.assertion === 'affirmed');
    return {
      ...base,
      snippet: text.slice(c.start, c.end),
      highlights: sentence ? [[sentence.start - c.start, sentence.end - c.start] as [number, number]] : [],
      assertion: sentence
        ? assertionOf(sentence.start, sentence.end, c.assertions)
        : assertionOf(c.start, c.end, c.assertions),
    };
  });
}
