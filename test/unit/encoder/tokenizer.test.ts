import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BERT_BASE_CASED_VOCAB } from '../../../layers/encoder/src/fixture.ts';
import { BertTokenizer, codePointToUtf16Offsets } from '../../../layers/encoder/src/tokenizer.ts';

interface GoldenCase {
  name: string;
  lowercase: boolean;
  text: string;
  tokens: string[];
  ids: number[];
  offsets: [number, number][];
}

const golden = JSON.parse(
  readFileSync(
    new URL('../../fixtures/bert-base-cased-vocab/golden_tokenization.json', import.meta.url),
    'utf8',
  ),
) as { cases: GoldenCase[] };

describe('BertTokenizer', () => {
  it('has golden cases for both settings', () => {
    expect(golden.cases.filter((c) => c.lowercase).length).toBeGreaterThan(10);
    expect(golden.cases.filter((c) => !c.lowercase).length).toBeGreaterThan(10);
  });

  for (const lowercase of [false, true]) {
    describe(
      lowercase ? 'lowercase (AutoTokenizer on the ClinicalBERT repos)' : 'cased (as pretrained)',
      () => {
        for (const c of golden.cases.filter((g) => g.lowercase === lowercase)) {
          it(`reproduces Hugging Face ids, tokens and offsets for ${c.name}`, async () => {
            const tokenizer = await BertTokenizer.fromVocab(BERT_BASE_CASED_VOCAB, { lowercase });
            const out = await tokenizer.encode(c.text);
            expect(out.ids).toEqual(c.ids);
            expect(out.tokens).toEqual(c.tokens);
            // The golden file counts code points; the tokenizer reports JavaScript string indices.
            expect(out.offsets).toEqual(codePointToUtf16Offsets(c.text, c.offsets));
          });
        }
      },
    );
  }

  it('reports offsets that slice the original text in JavaScript', async () => {
    const tokenizer = await BertTokenizer.fromVocab(BERT_BASE_CASED_VOCAB);
    const text = '🎵 Café: denies chest pain 鸟';
    const out = await tokenizer.encode(text);
    const words = out.offsets.slice(1, -1).map(([s, e]) => text.slice(s, e));
    expect(words).toContain('Café');
    expect(words).toContain('denies');
    expect(words).toContain('鸟');
  });

  it('tokenizes batches in input order', async () => {
    const tokenizer = await BertTokenizer.fromVocab(BERT_BASE_CASED_VOCAB);
    const texts = ['Hello world!', 'atrial fibrillation after CABG', ''];
    const batch = await tokenizer.encodeBatch(texts);
    for (let i = 0; i < texts.length; i++) expect(batch[i]).toEqual(await tokenizer.encode(texts[i]!));
    expect(batch[2]!.ids).toEqual([101, 102]);
  });

  it('keeps accents when cased and strips them when lowercasing', async () => {
    const cased = await BertTokenizer.fromVocab(BERT_BASE_CASED_VOCAB);
    const lower = await BertTokenizer.fromVocab(BERT_BASE_CASED_VOCAB, { lowercase: true });
    expect((await cased.encode('Café')).tokens).toEqual(['[CLS]', 'Café', '[SEP]']);
    expect((await lower.encode('Café')).tokens).toEqual(['[CLS]', 'cafe', '[SEP]']);
  });
});
