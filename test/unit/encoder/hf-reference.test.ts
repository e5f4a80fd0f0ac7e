// The Hugging Face route: a random BertModel saved by transformers in both weight formats and run by
// PyTorch on clinical sentences through the Hugging Face tokenizer (test/fixtures/hf-tiny-bert,
// written on a GPU machine by tools/gpu/hf_reference.py). The project must reproduce its token ids,
// hidden states and pooled outputs from either file.
import { copyFile, cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importCheckpoint } from '../../../layers/encoder/src/bundle.ts';
import { Encoder } from '../../../layers/encoder/src/encoder.ts';
import { BERT_BASE_CASED_VOCAB } from '../../../layers/encoder/src/fixture.ts';
import { tempDir } from '../../helpers/encoder.ts';

const FIXTURE = new URL('../../fixtures/hf-tiny-bert/', import.meta.url).pathname;

interface ReferenceSentence {
  readonly text: string;
  readonly ids: number[];
  readonly hidden: number[][];
  readonly mean_pooled: number[];
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
let root: string;
let cleanup: () => Promise<void>;
let sentences: ReferenceSentence[];
const fingerprints = new Map<string, string>();

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-hf-'));
  sentences = JSON.parse(await readFile(join(FIXTURE, 'outputs.json'), 'utf8')).sentences;
});
afterAll(async () => cleanup());

/** Copies one saved format beside the vocabulary, imports it (fp32), and loads it on the CPU. */
async function load(format: 'safetensors' | 'pytorch'): Promise<Encoder> {
  const checkpoint = join(root, `${format}-checkpoint`);
  await cp(join(FIXTURE, format), checkpoint, { recursive: true });
  await copyFile(BERT_BASE_CASED_VOCAB, join(checkpoint, 'vocab.txt'));
  const bundle = join(root, `${format}-bundle`);
  await importCheckpoint(checkpoint, bundle, { variants: ['fp32'] });
  return Encoder.load(bundle, { variant: 'fp32', provider: 'cpu', threads: 1, logger: quiet });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

function normalized(v: readonly number[]): number[] {
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

describe.each(['safetensors', 'pytorch'] as const)('a transformers checkpoint saved as %s', (format) => {
  let encoder: Encoder;
  beforeAll(async () => {
    encoder = await load(format);
    fingerprints.set(format, encoder.info.fingerprint);
  });
  afterAll(async () => encoder.close());

  it('tokenizes every sentence to the Hugging Face tokenizer ids', async () => {
    const ours = await encoder.tokenize(sentences.map((s) => s.text));
    expect(ours.map((t) => t.ids)).toEqual(sentences.map((s) => s.ids));
  });

  it('reproduces hidden states (≤ 1e-4) and mean-pooled embeddings of PyTorch in one padded batch', async () => {
    const out = await encoder.forward(
      sentences.map((s) => s.ids),
      true,
    );
    const dims = encoder.dims;
    let worstHidden = 0;
    let worstPooled = 0;
    sentences.forEach((s, i) => {
      const hidden = out.hiddenStates![i]!;
      // Real tokens only: the reference holds no padded positions.
      worstHidden = Math.max(
        worstHidden,
        maxAbsDiff(hidden.subarray(0, s.ids.length * dims), s.hidden.flat()),
      );
      worstPooled = Math.max(worstPooled, maxAbsDiff(out.embeddings[i]!, normalized(s.mean_pooled)));
    });
    expect(worstHidden).toBeLessThanOrEqual(1e-4);
    expect(worstPooled).toBeLessThanOrEqual(1e-5);
  });
});

describe('both formats', () => {
  it('give the same model fingerprint', () => {
    expect(fingerprints.size).toBe(2);
    expect(new Set(fingerprints.values()).size).toBe(1);
  });
});
