import { beforeAll, describe, expect, it } from 'vitest';
import { BERT_BASE_CASED_VOCAB } from '../../../../layers/encoder/src/fixture.ts';
import { buildBertOnnx, type GraphKind } from '../../../../layers/encoder/src/onnx/bert.ts';
import { onnx } from '../../../../layers/encoder/src/onnx/proto.ts';
import { referenceForward } from '../../../../layers/encoder/src/reference.ts';
import { BertTokenizer } from '../../../../layers/encoder/src/tokenizer.ts';
import type { BertWeights } from '../../../../layers/encoder/src/weights.ts';
import { CLINICAL_SENTENCES, cosine, runModel, tinyWeights } from '../../../helpers/encoder.ts';

let weights: BertWeights;
let sequences: number[][];

beforeAll(async () => {
  weights = tinyWeights();
  const tokenizer = await BertTokenizer.fromVocab(BERT_BASE_CASED_VOCAB);
  sequences = (await tokenizer.encodeBatch(CLINICAL_SENTENCES)).map((t) => t.ids);
});

function opTypes(model: Uint8Array): Set<string> {
  return new Set(
    onnx.ModelProto.decode(model).graph!.node!.map((n) => `${n.domain || 'ai.onnx'}:${n.opType}`),
  );
}

describe('buildBertOnnx', () => {
  it('matches the float64 reference forward pass within 1e-4 on hidden states (fused fp32)', async () => {
    const model = buildBertOnnx(weights, { kind: 'fused' });
    const out = await runModel(model, sequences);
    const hidden = weights.config.hidden_size;
    let maxDiff = 0;
    sequences.forEach((seq, r) => {
      const ref = referenceForward(weights, seq);
      for (let t = 0; t < seq.length; t++) {
        for (let h = 0; h < hidden; h++) {
          const onnxValue = out.hidden[(r * out.width + t) * hidden + h]!;
          maxDiff = Math.max(maxDiff, Math.abs(onnxValue - ref.hiddenStates[t]![h]!));
        }
      }
      expect(
        cosine(out.embedding.subarray(r * hidden, (r + 1) * hidden), ref.embedding),
      ).toBeGreaterThanOrEqual(0.99999);
    });
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
  });

  it('computes the same with SkipLayerNormalization as with Add + LayerNormalization', async () => {
    const withSkip = await runModel(buildBertOnnx(weights, { skipLayerNorm: true }), sequences);
    const without = await runModel(buildBertOnnx(weights, { skipLayerNorm: false }), sequences);
    let maxDiff = 0;
    withSkip.hidden.forEach((v, i) => {
      maxDiff = Math.max(maxDiff, Math.abs(v - without.hidden[i]!));
    });
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
  });

  const thresholds: [GraphKind, 'fp32' | 'fp16', number][] = [
    ['plain', 'fp32', 0.99999],
    ['fused', 'fp16', 0.999],
    ['int8', 'fp32', 0.99],
  ];
  for (const [kind, precision, minCosine] of thresholds) {
    it(`keeps pooled cosine ≥ ${minCosine} to the reference for the ${kind} ${precision} graph`, async () => {
      const out = await runModel(buildBertOnnx(weights, { kind, precision }), sequences);
      const hidden = weights.config.hidden_size;
      sequences.forEach((seq, r) => {
        const ref = referenceForward(weights, seq);
        expect(
          cosine(out.embedding.subarray(r * hidden, (r + 1) * hidden), ref.embedding),
        ).toBeGreaterThanOrEqual(minCosine);
      });
    });
  }

  it('matches the reference on padded rows: masked keys get no attention, masked tokens no weight in the mean', async () => {
    const model = buildBertOnnx(weights, { kind: 'fused' });
    const batch = sequences.slice(0, 4);
    const out = await runModel(model, batch);
    const hidden = weights.config.hidden_size;
    batch.forEach((seq, r) => {
      const padded = [...seq, ...new Array(out.width - seq.length).fill(0)];
      const mask = padded.map((_, t) => (t < seq.length ? 1 : 0));
      const ref = referenceForward(weights, padded, mask);
      for (let t = 0; t < seq.length; t++) {
        for (let h = 0; h < hidden; h++) {
          expect(
            Math.abs(out.hidden[(r * out.width + t) * hidden + h]! - ref.hiddenStates[t]![h]!),
          ).toBeLessThanOrEqual(1e-4);
        }
      }
      expect(
        cosine(out.embedding.subarray(r * hidden, (r + 1) * hidden), ref.embedding),
      ).toBeGreaterThanOrEqual(0.99999);
    });
    // The widest row has no padding; the others must have had some for this test to mean anything.
    expect(batch.some((s) => s.length < out.width)).toBe(true);
  });

  it('pools the [CLS] vector when asked', async () => {
    const out = await runModel(buildBertOnnx(weights, { pooling: 'cls' }), sequences.slice(0, 3));
    const hidden = weights.config.hidden_size;
    for (let r = 0; r < 3; r++) {
      const ref = referenceForward(weights, sequences[r]!, undefined, 'cls');
      expect(
        cosine(out.embedding.subarray(r * hidden, (r + 1) * hidden), ref.embedding),
      ).toBeGreaterThanOrEqual(0.99999);
    }
  });

  it('outputs unit-length embeddings that differ between inputs', async () => {
    const out = await runModel(buildBertOnnx(weights), sequences.slice(0, 2));
    const hidden = weights.config.hidden_size;
    const a = out.embedding.subarray(0, hidden);
    const b = out.embedding.subarray(hidden, 2 * hidden);
    expect(Math.hypot(...a)).toBeCloseTo(1, 5);
    expect(Math.hypot(...b)).toBeCloseTo(1, 5);
    expect(cosine(a, b)).toBeLessThan(0.999);
  });

  for (const kind of ['plain', 'fused', 'int8'] as const) {
    it(`ignores padding: a padded row embeds like the same row alone (${kind})`, async () => {
      const model = buildBertOnnx(weights, { kind });
      const short = sequences.reduce((a, b) => (a.length <= b.length ? a : b));
      const long = sequences.reduce((a, b) => (a.length >= b.length ? a : b));
      const together = await runModel(model, [long, short]);
      const alone = await runModel(model, [short]);
      const hidden = weights.config.hidden_size;
      expect(cosine(together.embedding.subarray(hidden, 2 * hidden), alone.embedding)).toBeGreaterThan(
        0.99999,
      );
    });
  }

  it('emits ONNX Runtime fused ops in the fused graph and only standard ops in the plain one', () => {
    const fused = opTypes(buildBertOnnx(weights, { kind: 'fused' }));
    for (const op of ['EmbedLayerNormalization', 'Attention', 'BiasGelu']) {
      expect(fused).toContain(`com.microsoft:${op}`);
    }
    // SkipLayerNormalization only where ONNX Runtime runs it faster: on GPUs, in the fp16 graph.
    expect(fused).not.toContain('com.microsoft:SkipLayerNormalization');
    const fp16 = opTypes(buildBertOnnx(weights, { precision: 'fp16' }));
    expect(fp16).toContain('com.microsoft:SkipLayerNormalization');
    // The GPU graph keeps to ops the WebGPU provider runs: no EmbedLayerNormalization or Attention.
    expect(fp16).toContain('com.microsoft:MultiHeadAttention');
    expect(fp16).toContain('ai.onnx:LayerNormalization');
    expect(fp16).not.toContain('com.microsoft:EmbedLayerNormalization');
    expect(fp16).not.toContain('com.microsoft:Attention');
    const int8 = opTypes(buildBertOnnx(weights, { kind: 'int8' }));
    expect(int8).toContain('com.microsoft:DynamicQuantizeMatMul');
    expect(int8).toContain('com.microsoft:MultiHeadAttention');
    expect(int8).not.toContain('ai.onnx:MatMul');
    const plain = opTypes(buildBertOnnx(weights, { kind: 'plain' }));
    expect([...plain].every((op) => op.startsWith('ai.onnx:'))).toBe(true);
  });

  it('stores int8 weights and float16 weights in their variants', () => {
    const sizes = (kind: GraphKind, precision: 'fp32' | 'fp16' = 'fp32') =>
      onnx.ModelProto.decode(buildBertOnnx(weights, { kind, precision })).graph!.initializer!.reduce(
        (acc, t) => acc.set(t.dataType!, (acc.get(t.dataType!) ?? 0) + 1),
        new Map<number, number>(),
      );
    expect(sizes('int8').get(onnx.TensorProto.DataType.INT8)).toBe(weights.config.num_hidden_layers * 4);
    // In the fp16 graph only the pooling's scalar constants stay float32 (pooling runs in float32).
    const fp16Graph = onnx.ModelProto.decode(buildBertOnnx(weights, { precision: 'fp16' })).graph!;
    const float32Tensors = fp16Graph.initializer!.filter(
      (t) => t.dataType === onnx.TensorProto.DataType.FLOAT,
    );
    expect(float32Tensors.every((t) => (t.dims ?? []).length === 0)).toBe(true);
    expect(sizes('fused', 'fp16').get(onnx.TensorProto.DataType.FLOAT16)).toBeGreaterThan(10);
  });

  it('has dynamic batch and sequence dimensions and int64 inputs', () => {
    const graph = onnx.ModelProto.decode(buildBertOnnx(weights)).graph!;
    for (const input of graph.input!) {
      expect(input.type!.tensorType!.elemType).toBe(onnx.TensorProto.DataType.INT64);
      expect(input.type!.tensorType!.shape!.dim!.map((d) => d.dimParam)).toEqual(['batch', 'sequence']);
    }
    expect(graph.output!.map((o) => o.name)).toEqual(['embedding', 'last_hidden_state']);
  });
});
