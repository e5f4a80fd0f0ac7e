import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readConfig } from '../../../layers/encoder/src/bundle.ts';
import { readCheckpointWeights } from '../../../layers/encoder/src/checkpoint/index.ts';
import { Encoder } from '../../../layers/encoder/src/encoder.ts';
import {
  BundleError,
  ProviderUnavailableError,
  SequenceTooLongError,
} from '../../../layers/encoder/src/errors.ts';
import { referenceForward } from '../../../layers/encoder/src/reference.ts';
import { providerInstalled } from '../../../layers/encoder/src/session.ts';
import { loadBertWeights } from '../../../layers/encoder/src/weights.ts';
import { CLINICAL_SENTENCES, cosine, tempDir, tinyBundle } from '../../helpers/encoder.ts';

const quiet = { debug: () => {}, info: () => {}, warn: () => {} };
let root: string;
let cleanup: () => Promise<void>;
let bundle: string;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir());
  bundle = await tinyBundle(root);
});
afterAll(() => cleanup());

describe('Encoder', () => {
  it('picks the best provider with its variant when auto (the CPU and int8 here), and logs the choice', async () => {
    const messages: [string, Record<string, unknown>][] = [];
    const logger = {
      ...quiet,
      info: (m: string, ...f: Record<string, unknown>[]) => messages.push([m, Object.assign({}, ...f)]),
    };
    const encoder = await Encoder.load(bundle, { logger });
    // Here no GPU provider is installed; on a GPU machine auto takes it, with the fp16 variant.
    const gpu = (['cuda', 'webgpu'] as const).find(providerInstalled);
    expect(encoder.provider).toBe(gpu ?? 'cpu');
    expect(encoder.variant).toBe(gpu ? 'fp16' : 'int8');
    expect(messages.find(([m]) => m === 'execution provider chosen')?.[1]).toMatchObject({
      provider: gpu ?? 'cpu',
    });
    await encoder.close();
  });

  it('embeds text end to end as the float64 reference does (fp32 variant)', async () => {
    const encoder = await Encoder.load(bundle, { variant: 'fp32', provider: 'cpu', logger: quiet });
    const weights = loadBertWeights(
      await readConfig(join(root, 'checkpoint', 'config.json')),
      (await readCheckpointWeights(join(root, 'checkpoint'))).tensors,
    );
    const { embeddings } = await encoder.embed(CLINICAL_SENTENCES);
    const tokenized = await encoder.tokenize(CLINICAL_SENTENCES);
    tokenized.forEach((t, i) => {
      expect(embeddings[i]).toHaveLength(encoder.dims);
      expect(cosine(embeddings[i]!, referenceForward(weights, t.ids).embedding)).toBeGreaterThanOrEqual(
        0.99999,
      );
    });
    await encoder.close();
  });

  it('returns vectors in input order whatever the batching', async () => {
    const encoder = await Encoder.load(bundle, { variant: 'fp32', provider: 'cpu', logger: quiet });
    const batched = await encoder.embed(CLINICAL_SENTENCES, { tokenBudget: 64 });
    const single = await encoder.embed(CLINICAL_SENTENCES, { maxBatchSize: 1 });
    expect(batched.stats.batches).toBeGreaterThan(1);
    expect(batched.stats.batches).toBeLessThan(CLINICAL_SENTENCES.length);
    expect(single.stats.batches).toBe(CLINICAL_SENTENCES.length);
    batched.embeddings.forEach((e, i) => {
      expect(cosine(e, single.embeddings[i]!)).toBeGreaterThan(0.99999);
    });
    await encoder.close();
  });

  it('counts useful and computed tokens, and pads little when batching by budget', async () => {
    const encoder = await Encoder.load(bundle, { provider: 'cpu', logger: quiet });
    const { stats } = await encoder.embed(CLINICAL_SENTENCES, { tokenBudget: 128 });
    const lengths = (await encoder.tokenize(CLINICAL_SENTENCES)).map((t) => t.ids.length);
    expect(stats.usefulTokens).toBe(lengths.reduce((a, b) => a + b, 0));
    expect(stats.computedTokens).toBeGreaterThanOrEqual(stats.usefulTokens);
    expect(stats.usefulTokens / stats.computedTokens).toBeGreaterThan(0.85);
    await encoder.close();
  });

  it('refuses an input over the maximum length unless truncation is asked for, and then reports it', async () => {
    const encoder = await Encoder.load(bundle, { provider: 'cpu', logger: quiet });
    const long = 'The patient was seen in clinic today. '.repeat(40);
    const error = await encoder.embed(['short note', long]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SequenceTooLongError);
    expect(error).toMatchObject({ index: 1, maxLength: 128 });
    const result = await encoder.embed(['short note', long], { onOverflow: 'truncate' });
    expect(result.truncated).toEqual([1]);
    expect(result.embeddings).toHaveLength(2);
    // Truncation keeps the first 127 tokens and the closing [SEP]: 128 in all.
    const [short, full] = await encoder.tokenize(['short note', long]);
    expect(result.stats.usefulTokens).toBe(short!.ids.length + 128);
    const cut = await encoder.embedIds([[...full!.ids.slice(0, 127), 102]]);
    expect(cosine(result.embeddings[1]!, cut.embeddings[0]!)).toBeGreaterThan(0.99999);
    await encoder.close();
  });

  it('fails with ProviderUnavailableError for a provider asked for by name that is missing, never falling back', async () => {
    if (!providerInstalled('cuda')) {
      await expect(Encoder.load(bundle, { provider: 'cuda', logger: quiet })).rejects.toThrow(
        /ONNXRUNTIME_NODE_INSTALL=cuda12/,
      );
    }
    for (const provider of ['cuda', 'webgpu'] as const) {
      const loaded = Encoder.load(bundle, { provider, logger: quiet });
      if (providerInstalled(provider)) await (await loaded).close();
      else await expect(loaded).rejects.toThrow(ProviderUnavailableError);
    }
  });

  it('refuses a bundle whose vocabulary was changed after import', async () => {
    const changed = await tinyBundle(root, { variants: ['int8'] });
    await appendFile(join(changed, 'vocab.txt'), 'extra\n');
    await expect(Encoder.load(changed, { logger: quiet })).rejects.toThrow(
      /vocab\.txt: sha256 .* model\.json records/,
    );
  });

  it('names the variants a bundle has when asked for one it lacks', async () => {
    const int8Only = await tinyBundle(root, { variants: ['int8'] });
    await expect(Encoder.load(int8Only, { variant: 'fp16', logger: quiet })).rejects.toThrow(BundleError);
    await expect(Encoder.load(int8Only, { variant: 'fp16', logger: quiet })).rejects.toThrow(
      /has no fp16 variant \(it has int8\)/,
    );
    const encoder = await Encoder.load(int8Only, { logger: quiet });
    expect(encoder.variant).toBe('int8');
    await encoder.close();
  });
});
