import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { BERT_BASE_CASED_VOCAB, BertTokenizer } from '../../../layers/encoder/src/index.ts';
import { NoteChunker } from '../../../layers/notes/src/chunks.ts';
import { NotesConfigError } from '../../../layers/notes/src/errors.ts';
import type { NoteRecord } from '../../../layers/notes/src/types.ts';

const NOTES = fileURLToPath(new URL('../../fixtures/notes/', import.meta.url));
const examples: NoteRecord[] = readdirSync(NOTES)
  .filter((f) => f !== 'SOURCE.md')
  .sort()
  .map((f, i) => ({
    noteId: f,
    patientId: `p${i}`,
    text: readFileSync(join(NOTES, f), 'utf8'),
    source: { key: f },
  }));

const note = (text: string): NoteRecord => ({ noteId: 'n1', patientId: 'p1', text, source: { key: 'test' } });

let chunker: NoteChunker;
let tokenizer: BertTokenizer;

beforeAll(async () => {
  tokenizer = await BertTokenizer.fromVocab(BERT_BASE_CASED_VOCAB);
  chunker = await NoteChunker.create({ tokenizer });
});

describe('NoteChunker', () => {
  it('keeps every chunk within 128 tokens and within one section, with offsets that slice the note', async () => {
    for (const n of examples) {
      const { sections, chunks } = await chunker.prepare(n);
      expect(chunks.length).toBeGreaterThan(0);
      for (const c of chunks) {
        expect(c.tokens).toBeLessThanOrEqual(128);
        expect(c.start).toBeLessThan(c.end);
        const section = sections.find((s) => s.start <= c.start && c.end <= s.end);
        expect(section?.category).toBe(c.section);
        const text = n.text.slice(c.start, c.end);
        expect(text).toBe(text.trim());
        // The count is the sum over sentences; it must equal tokenizing the chunk's own text.
        if (!c.flags.includes('split-sentence'))
          expect((await tokenizer.encode(text)).ids.length).toBe(c.tokens);
      }
    }
  });

  it('puts every sentence into a chunk, in order, and packs sentences rather than one per chunk', async () => {
    for (const n of examples) {
      const { sentences, chunks } = await chunker.prepare(n);
      for (const s of sentences) {
        if (
          !/\w/.test(n.text.slice(s.start, s.end)) &&
          (await tokenizer.encode(n.text.slice(s.start, s.end))).ids.length === 2
        )
          continue;
        expect(chunks.some((c) => c.start <= s.start && s.end <= c.end)).toBe(true);
      }
      for (let i = 1; i < chunks.length; i++)
        expect(chunks[i]!.start).toBeGreaterThanOrEqual(chunks[i - 1]!.start);
      expect(chunks.length).toBeLessThanOrEqual(sentences.length);
    }
    const total = await Promise.all(examples.map((n) => chunker.prepare(n)));
    expect(total.reduce((a, p) => a + p.chunks.length, 0)).toBeLessThan(
      total.reduce((a, p) => a + p.sentences.length, 0),
    );
  });

  it('cuts a sentence longer than the limit into overlapping pieces between words', async () => {
    // Words that WordPiece splits into several tokens, and characters outside the BMP, so that cuts
    // inside a word and UTF-16 offsets would both show.
    const words = Array.from({ length: 110 }, (_, i) =>
      i % 7 === 3 ? `hyperkalemia${i}🎵` : `word${i}`,
    ).join(' ');
    const text = `Brief Hospital Course:\n${words}.`;
    // One sentence, under the sentence length cap, over the token budget.
    expect(words.length).toBeLessThan(1000);
    const { chunks } = await chunker.prepare(note(text));
    const pieces = chunks.filter((c) => c.flags.includes('split-sentence'));
    expect(pieces.length).toBeGreaterThan(2);
    for (let i = 1; i < pieces.length; i++) {
      expect(pieces[i]!.start).toBeLessThan(pieces[i - 1]!.end);
      expect(pieces[i]!.start).toBeGreaterThan(pieces[i - 1]!.start);
    }
    expect(pieces[0]!.start).toBe(text.indexOf('word0'));
    expect(pieces.at(-1)!.end).toBe(text.length);
    for (const p of pieces) {
      const slice = text.slice(p.start, p.end);
      expect((await tokenizer.encode(slice)).ids.length).toBe(p.tokens);
      expect(p.tokens).toBeLessThanOrEqual(128);
      // Between words: white space (or the sentence's edge) on both sides.
      expect(p.start === text.indexOf('word0') || /\s/.test(text[p.start - 1]!)).toBe(true);
      expect(p.end === text.length || /\s/.test(text[p.end]!)).toBe(true);
    }
  });

  it('keeps work and scopes bounded on a run-on line with many triggers', async () => {
    // 60 KB on one line, no sentence punctuation, a trigger every few words.
    const line = Array.from(
      { length: 4000 },
      (_, i) => ['denies pain', 'possible infection', 'history of MI', 'mother has DM'][i % 4],
    ).join(' ');
    const { sentences, chunks } = await chunker.prepare(note(`Hospital Course:\n${line}`));
    expect(Math.max(...sentences.map((s) => s.end - s.start))).toBeLessThanOrEqual(1000);
    for (const c of chunks) {
      expect(c.tokens).toBeLessThanOrEqual(128);
      // Overlapping scopes of a kind are merged, so a chunk holds a handful, not one per trigger
      // before it in the line.
      const perKind = new Map<string, number>();
      for (const a of c.assertions) perKind.set(a.kind, (perKind.get(a.kind) ?? 0) + 1);
      for (const n of perKind.values()) expect(n).toBeLessThanOrEqual(40);
    }
    const total = chunks.reduce((n, c) => n + c.assertions.length, 0);
    expect(total).toBeLessThan(chunks.length * 60);
  });

  it('honours a smaller chunk size', async () => {
    const small = await NoteChunker.create({ tokenizer, maxTokens: 32, overlapTokens: 4 });
    const n = examples.find((e) => e.noteId.startsWith('medspacy'))!;
    const big = (await chunker.prepare(n)).chunks;
    const little = (await small.prepare(n)).chunks;
    expect(little.length).toBeGreaterThan(big.length);
    for (const c of little) expect(c.tokens).toBeLessThanOrEqual(32);
  });

  it('tags assertion scopes inside chunks, from triggers and from the section', async () => {
    const text =
      'History of Present Illness:\nThe patient denies chest pain. She has a cough.\n\nFamily History:\nMother had breast cancer.\n';
    const { chunks } = await chunker.prepare(note(text));
    const hpi = chunks.find((c) => c.section === 'history_of_present_illness')!;
    const negated = hpi.assertions.filter((a) => a.kind === 'negated').map((a) => text.slice(a.start, a.end));
    expect(negated.join(' ')).toContain('chest pain');
    expect(negated.join(' ')).not.toContain('cough');
    const family = chunks.find((c) => c.section === 'family_history')!;
    expect(
      family.assertions.some(
        (a) => a.kind === 'family' && a.start <= text.indexOf('breast') && a.end >= text.indexOf('cancer'),
      ),
    ).toBe(true);
    for (const c of chunks)
      for (const a of c.assertions) expect(c.start <= a.start && a.end <= c.end).toBe(true);
  });

  it('gives an empty list of chunks for a note of white space only, and refuses impossible sizes', async () => {
    expect((await chunker.prepare(note('   \n\n  '))).chunks).toEqual([]);
    await expect(NoteChunker.create({ tokenizer, maxTokens: 3 })).rejects.toThrow(NotesConfigError);
    await expect(NoteChunker.create({ tokenizer, maxTokens: 32, overlapTokens: 15 })).rejects.toThrow(
      NotesConfigError,
    );
  });
});
