import { copyFile, cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importCheckpoint, readBundleInfo, verifyBundle } from '../../../layers/encoder/src/bundle.ts';
import {
  float32Tensor,
  readSafetensors,
  writeSafetensors,
} from '../../../layers/encoder/src/checkpoint/safetensors.ts';
import { BundleError, CheckpointContentError } from '../../../layers/encoder/src/errors.ts';
import {
  BERT_BASE_CASED_VOCAB,
  TINY_BERT_CONFIG,
  writeRandomBertCheckpoint,
} from '../../../layers/encoder/src/fixture.ts';
import type { RawTensor } from '../../../layers/encoder/src/tensor.ts';
import { tempDir } from '../../helpers/encoder.ts';

const TORCH_FIXTURES = new URL('../../fixtures/tiny-bert-torch/', import.meta.url).pathname;

let root: string;
let cleanup: () => Promise<void>;
let checkpoint: string;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir());
  checkpoint = join(root, 'checkpoint');
  await writeRandomBertCheckpoint(checkpoint);
});
afterAll(() => cleanup());

/** A copy of the fixture checkpoint whose tensors or config the test may change. */
async function variantCheckpoint(
  name: string,
  change: { tensors?: (t: Map<string, RawTensor>) => void; config?: (c: Record<string, unknown>) => void },
): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await copyFile(join(checkpoint, 'vocab.txt'), join(dir, 'vocab.txt'));
  const config = JSON.parse(await readFile(join(checkpoint, 'config.json'), 'utf8'));
  change.config?.(config);
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
  const tensors = await readSafetensors(join(checkpoint, 'model.safetensors'));
  change.tensors?.(tensors);
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}

describe('importCheckpoint', () => {
  it('writes every variant, the vocabulary, the config and a model.json that validates', async () => {
    const bundle = join(root, 'all');
    const info = await importCheckpoint(checkpoint, bundle, {
      source: { repo: 'example/tiny', revision: 'main', commit: 'abc123' },
    });
    expect((await readdir(bundle)).sort()).toEqual([
      'config.json',
      'model.fp16.onnx',
      'model.int8.onnx',
      'model.json',
      'model.onnx',
      'vocab.txt',
    ]);
    expect(info).toMatchObject({
      dims: TINY_BERT_CONFIG.hidden_size,
      layers: 2,
      pooling: 'mean',
      lowercase: false,
      maxLength: 128,
      source: { repo: 'example/tiny', revision: 'main', commit: 'abc123', weightsFormat: 'safetensors' },
    });
    expect(info.fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await verifyBundle(bundle)).toEqual(info);
    expect(await readBundleInfo(bundle)).toEqual(info);
  });

  it('writes only the variants asked for', async () => {
    const info = await importCheckpoint(checkpoint, join(root, 'int8-only'), { variants: ['int8'] });
    expect(Object.keys(info.variants)).toEqual(['int8']);
  });

  it('gives the same fingerprint to the same weights in safetensors, torch zip and legacy torch files', async () => {
    const fingerprints = new Set<string>();
    const formats = new Set<string>();
    for (const source of [
      checkpoint,
      join(TORCH_FIXTURES, 'torch-zip'),
      join(TORCH_FIXTURES, 'torch-legacy'),
    ]) {
      const dir = join(root, `from-${formats.size}`);
      await cp(source, dir, { recursive: true });
      await copyFile(BERT_BASE_CASED_VOCAB, join(dir, 'vocab.txt'));
      const info = await importCheckpoint(dir, join(dir, 'bundle'), { variants: ['fp32'] });
      fingerprints.add(info.fingerprint);
      formats.add(info.source.weightsFormat);
    }
    expect(formats).toEqual(new Set(['safetensors', 'torch-zip', 'torch-legacy']));
    expect(fingerprints.size).toBe(1);
  });

  it('changes the fingerprint with the weights, the pooling and the lowercase setting', async () => {
    const base = (await importCheckpoint(checkpoint, join(root, 'fp-base'), { variants: ['fp32'] }))
      .fingerprint;
    const lower = (
      await importCheckpoint(checkpoint, join(root, 'fp-lower'), { variants: ['fp32'], lowercase: true })
    ).fingerprint;
    const cls = (
      await importCheckpoint(checkpoint, join(root, 'fp-cls'), { variants: ['fp32'], pooling: 'cls' })
    ).fingerprint;
    const nudged = await variantCheckpoint('nudged', {
      tensors: (t) => {
        const name = 'encoder.layer.1.output.dense.bias';
        const data = new Float32Array(new Uint8Array(t.get(name)!.bytes).buffer);
        data[0]! += 1e-3;
        t.set(name, float32Tensor([TINY_BERT_CONFIG.hidden_size], data));
      },
    });
    const changed = (await importCheckpoint(nudged, join(root, 'fp-nudged'), { variants: ['fp32'] }))
      .fingerprint;
    expect(new Set([base, lower, cls, changed]).size).toBe(4);
  });

  it('refuses a destination that holds files, and with overwrite replaces only a bundle', async () => {
    const taken = join(root, 'taken');
    await mkdir(taken);
    await writeFile(join(taken, 'keep.txt'), 'x');
    await expect(importCheckpoint(checkpoint, taken, { variants: ['fp32'] })).rejects.toThrow(
      /already holds files/,
    );
    await expect(
      importCheckpoint(checkpoint, taken, { variants: ['fp32'], overwrite: true }),
    ).rejects.toThrow(/no model bundle/);
    expect(await readdir(taken)).toEqual(['keep.txt']);

    const bundle = join(root, 'replaced');
    const first = await importCheckpoint(checkpoint, bundle, { variants: ['fp32'] });
    await expect(importCheckpoint(checkpoint, bundle, { variants: ['int8'] })).rejects.toThrow(BundleError);
    const second = await importCheckpoint(checkpoint, bundle, { variants: ['int8'], overwrite: true });
    expect(Object.keys(second.variants)).toEqual(['int8']);
    expect((await readdir(bundle)).sort()).toEqual([
      'config.json',
      'model.int8.onnx',
      'model.json',
      'vocab.txt',
    ]);
    expect(second.fingerprint).toBe(first.fingerprint);
    expect((await readdir(root)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('never writes into the checkpoint directory or a directory that contains it', async () => {
    await expect(importCheckpoint(checkpoint, checkpoint, { overwrite: true })).rejects.toThrow(
      /holds the checkpoint/,
    );
    await expect(importCheckpoint(checkpoint, root, { overwrite: true })).rejects.toThrow(
      /holds the checkpoint/,
    );
    expect((await readdir(checkpoint)).sort()).toEqual(['config.json', 'model.safetensors', 'vocab.txt']);
  });

  it('removes temporary directories left by an import that was killed', async () => {
    const bundle = join(root, 'after-kill');
    await mkdir(join(root, '.after-kill.tmp-999-1'), { recursive: true });
    await writeFile(join(root, '.after-kill.tmp-999-1', 'model.onnx'), 'partial');
    await importCheckpoint(checkpoint, bundle, { variants: ['fp32'] });
    expect((await readdir(root)).filter((n) => n.startsWith('.after-kill'))).toEqual([]);
  });

  it('names the tensor and both shapes when a shape disagrees with the config', async () => {
    const dir = await variantCheckpoint('bad-shape', {
      tensors: (t) =>
        t.set(
          'encoder.layer.0.intermediate.dense.weight',
          float32Tensor([32, 64], new Float32Array(32 * 64)),
        ),
    });
    await expect(importCheckpoint(dir, join(root, 'bad-shape-bundle'))).rejects.toThrow(
      'tensor encoder.layer.0.intermediate.dense.weight: shape [32, 64] found, [64, 32] expected from config.json',
    );
    expect((await readdir(root)).filter((f) => f.includes('bad-shape-bundle'))).toEqual([]);
  });

  it('reports a missing tensor, an integer weight and a config that is not BERT', async () => {
    const missing = await variantCheckpoint('missing', {
      tensors: (t) => t.delete('encoder.layer.1.attention.self.key.bias'),
    });
    await expect(importCheckpoint(missing, join(root, 'm-bundle'))).rejects.toThrow(
      /encoder\.layer\.1\.attention\.self\.key\.bias is missing/,
    );
    const integer = await variantCheckpoint('integer', {
      tensors: (t) =>
        t.set('embeddings.LayerNorm.bias', { dtype: 'I32', shape: [32], bytes: new Uint8Array(128) }),
    });
    await expect(importCheckpoint(integer, join(root, 'i-bundle'))).rejects.toThrow(
      /dtype I32 found, a floating-point dtype/,
    );
    const roberta = await variantCheckpoint('roberta', { config: (c) => (c['model_type'] = 'roberta') });
    await expect(importCheckpoint(roberta, join(root, 'r-bundle'))).rejects.toThrow(CheckpointContentError);
    await expect(importCheckpoint(roberta, join(root, 'r-bundle'))).rejects.toThrow(
      /model_type is "roberta"/,
    );
  });

  it('accepts a BertForPreTraining dump with a bert. prefix, LayerNorm gamma/beta names and heads', async () => {
    const dir = await variantCheckpoint('pretraining', {
      tensors: (t) => {
        for (const [name, tensor] of [...t]) {
          t.delete(name);
          t.set(
            `bert.${name.replace('LayerNorm.weight', 'LayerNorm.gamma').replace('LayerNorm.bias', 'LayerNorm.beta')}`,
            tensor,
          );
        }
        t.set('cls.predictions.bias', float32Tensor([28996], new Float32Array(28996)));
      },
    });
    const a = await importCheckpoint(dir, join(root, 'pretraining-bundle'), { variants: ['fp32'] });
    const b = await importCheckpoint(checkpoint, join(root, 'plain-bundle'), { variants: ['fp32'] });
    expect(a.fingerprint).toBe(b.fingerprint);
  });

  it('rejects a vocabulary whose size disagrees with the config and a max length beyond the position table', async () => {
    const small = await variantCheckpoint('vocab', { config: (c) => (c['vocab_size'] = 30522) });
    await expect(importCheckpoint(small, join(root, 'v-bundle'))).rejects.toThrow(
      /vocab\.txt has 28996 tokens but config\.json says vocab_size 30522/,
    );
    await expect(importCheckpoint(checkpoint, join(root, 'l-bundle'), { maxLength: 513 })).rejects.toThrow(
      /max_position_embeddings 512/,
    );
  });
});

describe('readBundleInfo and verifyBundle', () => {
  it('explain what is wrong with a directory that is not a bundle, or a damaged one', async () => {
    await expect(readBundleInfo(join(root, 'nowhere'))).rejects.toThrow(/is .* a model bundle/);
    const bundle = join(root, 'damaged');
    await importCheckpoint(checkpoint, bundle, { variants: ['fp32'] });
    const model = join(bundle, 'model.onnx');
    const bytes = await readFile(model);
    bytes[bytes.length - 1]! ^= 0xff;
    await writeFile(model, bytes);
    await expect(readBundleInfo(bundle)).resolves.toBeDefined();
    await expect(verifyBundle(bundle)).rejects.toThrow(/model\.onnx: sha256 .* model\.json records/);
    await writeFile(model, bytes.subarray(0, 100));
    await expect(readBundleInfo(bundle)).rejects.toThrow(/variant fp32 \(model\.onnx\) is 100 bytes/);
  });

  it('refuses a model.json whose file names point outside the bundle', async () => {
    const bundle = join(root, 'escape');
    await importCheckpoint(checkpoint, bundle, { variants: ['fp32'] });
    const info = JSON.parse(await readFile(join(bundle, 'model.json'), 'utf8'));
    info.variants.fp32.file = '../../etc/passwd';
    await writeFile(join(bundle, 'model.json'), JSON.stringify(info));
    await expect(readBundleInfo(bundle)).rejects.toThrow(/not a valid model\.json/);
    info.variants.fp32.file = 'model.int8.onnx';
    await writeFile(join(bundle, 'model.json'), JSON.stringify(info));
    await expect(readBundleInfo(bundle)).rejects.toThrow(/each variant must name its own file/);
  });
});
