import { BERT_BASE_CASED_VOCAB, BertTokenizer } from '@cohort/encoder';
import { findAssertionScopes } from './context.ts';
import { NotesConfigError } from './errors.ts';
import { type SectionOptions, splitSections } from './sections.ts';
import { splitSentences } from './sentences.ts';
import type { AssertionScope, Chunk, NoteRecord, Section, SectionCategory, Sentence } from './types.ts';

/** Options of {@link NoteChunker.create}. */
export interface ChunkerOptions {
  /**
   * Tokenizer that counts tokens. Default: the ClinicalBERT vocabulary shipped with the encoder
   * (bert-base-cased), cased. Pass the model bundle's tokenizer to count exactly as it embeds.
   */
  readonly tokenizer?: BertTokenizer;
  /** Most WordPiece tokens per chunk, [CLS] and [SEP] included. Default 128 (ClinicalBERT's pretraining length). */
  readonly maxTokens?: number;
  /** Tokens shared by consecutive pieces of a sentence too long for one chunk. Default 16. */
  readonly overlapTokens?: number;
  /** Section header rules (extra or overriding header phrases). Default: the shipped rules. */
  readonly sections?: SectionOptions;
}

/** A sentence with the section it belongs to. */
export interface SectionedSentence extends Sentence {
  readonly section: SectionCategory;
  /** Index of its section in {@link PreparedNote.sections}. */
  readonly sectionIndex: number;
}

/** A note split for embedding: its sections, sentences and chunks. */
export interface PreparedNote {
  readonly note: NoteRecord;
  readonly sections: Section[];
  readonly sentences: SectionedSentence[];
  readonly chunks: Chunk[];
}

// [CLS] and [SEP] around every chunk.
const SPECIAL_TOKENS = 2;

/**
 * Splits notes into chunks for embedding: sections, then sentences, then consecutive sentences of
 * one section packed into chunks of at most `maxTokens` WordPiece tokens, never across a section
 * boundary. A sentence longer than that is cut on token boundaries into overlapping pieces. Every
 * chunk keeps character offsets into the note (`note.text.slice(chunk.start, chunk.end)` is its
 * text) and the assertion scopes (negated, hypothetical, historical, family) that overlap it.
 */
export class NoteChunker {
  private constructor(
    private readonly tokenizer: BertTokenizer,
    /** Most tokens per chunk, special tokens included. */
    readonly maxTokens: number,
    /** Overlap between pieces of a long sentence. */
    readonly overlapTokens: number,
    private readonly sectionOptions: SectionOptions | undefined,
  ) {}

  /** Creates a chunker. @throws NotesConfigError for sizes that cannot work */
  static async create(options: ChunkerOptions = {}): Promise<NoteChunker> {
    const maxTokens = options.maxTokens ?? 128;
    const overlapTokens = options.overlapTokens ?? 16;
    if (!Number.isInteger(maxTokens) || maxTokens < SPECIAL_TOKENS + 2) {
      throw new NotesConfigError(
        `maxTokens must be an integer of at least ${SPECIAL_TOKENS + 2}, got ${maxTokens}`,
      );
    }
    if (
      !Number.isInteger(overlapTokens) ||
      overlapTokens < 0 ||
      overlapTokens >= (maxTokens - SPECIAL_TOKENS) / 2
    ) {
      throw new NotesConfigError(
        `overlapTokens must be an integer from 0 to under half of maxTokens - 2, got ${overlapTokens}`,
      );
    }
    const tokenizer = options.tokenizer ?? (await BertTokenizer.fromVocab(BERT_BASE_CASED_VOCAB));
    return new NoteChunker(tokenizer, maxTokens, overlapTokens, options.sections);
  }

  /** Splits one note. Sentences are tokenized in one batch per note. */
  async prepare(note: NoteRecord): Promise<PreparedNote> {
    const { text } = note;
    const sections = splitSections(text, this.sectionOptions);
    const sentences: SectionedSentence[] = [];
    sections.forEach((section, sectionIndex) => {
      for (const s of splitSentences(text, section.bodyStart, section.end)) {
        sentences.push({ ...s, section: section.category, sectionIndex });
      }
    });
    const tokenized = await this.tokenizer.encodeBatch(sentences.map((s) => text.slice(s.start, s.end)));
    const budget = this.maxTokens - SPECIAL_TOKENS;
    const chunks: Chunk[] = [];
    // Scopes are found once per sentence and clipped to each chunk that holds part of it.
    const scopes = sentences.map((s) => findAssertionScopes(text, s.start, s.end, { section: s.section }));
    let open:
      | {
          sectionIndex: number;
          section: SectionCategory;
          start: number;
          end: number;
          tokens: number;
          sentences: number[];
        }
      | undefined;
    const close = (): void => {
      if (!open) return;
      chunks.push(
        this.makeChunk(note, open.section, open.start, open.end, open.tokens, open.sentences, scopes, []),
      );
      open = undefined;
    };
    sentences.forEach((sentence, i) => {
      const t = tokenized[i]!;
      const count = t.ids.length - SPECIAL_TOKENS;
      if (count === 0) return;
      // Never across a section boundary, even between two sections of the same category.
      if (open && (open.sectionIndex !== sentence.sectionIndex || open.tokens + count > budget)) close();
      if (count > budget) {
        for (const piece of splitLongSentence(
          t.tokens.slice(1, -1),
          t.offsets.slice(1, -1),
          budget,
          this.overlapTokens,
        )) {
          const start = sentence.start + piece.start;
          const end = sentence.start + piece.end;
          chunks.push(
            this.makeChunk(note, sentence.section, start, end, piece.tokens, [i], scopes, ['split-sentence']),
          );
        }
        return;
      }
      if (!open) {
        open = {
          sectionIndex: sentence.sectionIndex,
          section: sentence.section,
          start: sentence.start,
          end: sentence.end,
          tokens: 0,
          sentences: [],
        };
      }
      open.end = sentence.end;
      open.tokens += count;
      open.sentences.push(i);
    });
    close();
    return { note, sections, sentences, chunks };
  }

  private makeChunk(
    note: NoteRecord,
    section: SectionCategory,
    start: number,
    end: number,
    tokens: number,
    sentenceIndices: readonly number[],
    scopes: readonly AssertionScope[][],
    flags: string[],
  ): Chunk {
    const clipped: AssertionScope[] = [];
    for (const i of sentenceIndices) {
      for (const scope of scopes[i]!) {
        const clippedStart = Math.max(scope.start, start);
        const clippedEnd = Math.min(scope.end, end);
        if (clippedStart < clippedEnd) clipped.push({ ...scope, start: clippedStart, end: clippedEnd });
      }
    }
    const assertions = mergeScopes(clipped);
    return {
      noteId: note.noteId,
      patientId: note.patientId,
      section,
      start,
      end,
      tokens: tokens + SPECIAL_TOKENS,
      assertions,
      flags,
    };
  }
}

/** A piece of a sentence: [start, end) relative to the sentence, and its token count. */
interface SentencePiece {
  readonly start: number;
  readonly end: number;
  readonly tokens: number;
}

/**
 * Cuts a sentence too long for one chunk into pieces of at most `budget` tokens that overlap by
 * about `overlap` tokens. Cuts fall between words (before a token that is not a `##` continuation),
 * so each piece's text tokenizes to exactly its tokens; only a single word longer than the budget
 * is cut inside. Token offsets are relative to the sentence.
 */
export function splitLongSentence(
  tokens: readonly string[],
  offsets: readonly (readonly [number, number])[],
  budget: number,
  overlap: number,
): SentencePiece[] {
  const count = tokens.length;
  const wordStart = (j: number): boolean => j >= count || !tokens[j]!.startsWith('##');
  const pieces: SentencePiece[] = [];
  for (let first = 0; first < count; ) {
    let next = Math.min(first + budget, count);
    while (next > first + 1 && !wordStart(next)) next--;
    if (next === first + 1 && !wordStart(next)) next = Math.min(first + budget, count); // one giant word
    pieces.push({ start: offsets[first]![0], end: offsets[next - 1]![1], tokens: next - first });
    if (next >= count) break;
    // Step back by the overlap to a word start, but always move forward.
    let following = Math.max(next - overlap, first + 1);
    while (following < next && !wordStart(following)) following++;
    first = following;
  }
  return pieces;
}

/** Merges overlapping or touching scopes of the same kind (keeping the first trigger), sorted by start. */
function mergeScopes(scopes: AssertionScope[]): AssertionScope[] {
  if (scopes.length < 2) return scopes;
  scopes.sort((a, b) => (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : a.start - b.start));
  const merged: AssertionScope[] = [];
  for (const s of scopes) {
    const last = merged.at(-1);
    if (last && last.kind === s.kind && s.start <= last.end) {
      if (s.end > last.end) merged[merged.length - 1] = { ...last, end: s.end };
    } else {
      merged.push(s);
    }
  }
  return merged.sort((a, b) => a.start - b.start || (a.kind < b.kind ? -1 : 1));
}
