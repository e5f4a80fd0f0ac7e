import { floatToHalf } from '../tensor.ts';
import type { BertWeights, LayerNormWeights, Linear } from '../weights.ts';
import { bytesOf, GraphBuilder, type ValueSpec } from './graph.ts';
import { DataType } from './proto.ts';

/** How token vectors become one embedding: mean over the attention mask, or the [CLS] vector. */
export type Pooling = 'mean' | 'cls';

/**
 * Which graph to emit.
 * - `plain`: standard ONNX ops only, as a plain PyTorch export gives (the benchmark's baseline);
 * - `fused`: ONNX Runtime's com.microsoft fused ops (EmbedLayerNormalization, Attention, BiasGelu,
 *   and SkipLayerNormalization in the fp16 graph), float32 or float16;
 * - `int8`: fused, with every dense layer's weights quantized to int8 per output channel and run by
 *   DynamicQuantizeMatMul (activations quantized on the fly); attention by MultiHeadAttention.
 */
export type GraphKind = 'plain' | 'fused' | 'int8';

/** Options of {@link buildBertOnnx}. */
export interface BuildBertOnnxOptions {
  /** Graph to emit. Default `fused`. */
  readonly kind?: GraphKind;
  /** Compute precision of the fused graph: `fp32` or `fp16` (GPU). Default `fp32`; `int8` and `plain` use fp32. */
  readonly precision?: 'fp32' | 'fp16';
  /** Pooling. Default `mean`. */
  readonly pooling?: Pooling;
  /**
   * Emit SkipLayerNormalization for residual + LayerNorm. Default: only in the fp16 (GPU) graph.
   * ONNX Runtime 1.30's CPU kernel for it was measured 2–6× slower than Add + LayerNormalization
   * (about 50 ms against 20 ms per 8 × 128-token batch of BERT-base, 2 threads), so the CPU graphs
   * use the standard ops, which its CPU kernels run well.
   */
  readonly skipLayerNorm?: boolean;
  /** Key/value pairs stored in the model's metadata (e.g. the fingerprint). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** Graph input and output names, fixed: other components depend on them. */
export const ONNX_IO = {
  inputIds: 'input_ids',
  attentionMask: 'attention_mask',
  embedding: 'embedding',
  lastHiddenState: 'last_hidden_state',
} as const;

// BERT adds -10000 to masked attention logits (the original TF code and ONNX Runtime's default
// mask_filter_value); exp(-10000) underflows to exactly zero in float32 and float16 alike.
const MASK_FILTER_VALUE = -10000;

/**
 * Compiles BERT weights into an ONNX model with inputs `input_ids` and `attention_mask` (int64,
 * [batch, sequence], both dynamic) and outputs `embedding` (float32 [batch, hidden], pooled and
 * L2-normalized) and `last_hidden_state` (float32 [batch, sequence, hidden]).
 * Token type ids are always 0, as for single-segment inputs; the type-0 embedding is folded into
 * the position embeddings, which is exact (embeddings are summed).
 */
export function buildBertOnnx(weights: BertWeights, options: BuildBertOnnxOptions = {}): Uint8Array {
  const kind = options.kind ?? 'fused';
  const fp16 = kind === 'fused' && options.precision === 'fp16';
  const pooling = options.pooling ?? 'mean';
  const useSkipLayerNorm = options.skipLayerNorm ?? fp16;
  const c = weights.config;
  const hidden = c.hidden_size;
  const heads = c.num_attention_heads;
  const eps = c.layer_norm_eps;
  const g = new GraphBuilder();

  const f32: FloatInitializer = (name, dims, data) => g.float32(name, dims, data);
  const float: FloatInitializer = (name, dims, data) =>
    fp16 ? g.initializer(name, DataType.FLOAT16, dims, toHalfBytes(data)) : f32(name, dims, data);
  const transposed = (name: string, lin: Linear): string =>
    float(name, [lin.inFeatures, lin.outFeatures], transpose(lin.weight, lin.outFeatures, lin.inFeatures));

  const positionPlusType = new Float32Array(weights.positionEmbeddings);
  for (let p = 0; p < c.max_position_embeddings; p++) {
    for (let h = 0; h < hidden; h++) positionPlusType[p * hidden + h]! += weights.tokenTypeEmbeddings[h]!;
  }

  let x: string;
  let additiveMask = '';
  let maskInt32 = '';
  let attentionBias = '';
  // Embeddings from standard ops: Gather, Add, LayerNormalization.
  const standardEmbeddings = (init: FloatInitializer): string => {
    const word = init('word_embeddings', [c.vocab_size, hidden], weights.wordEmbeddings);
    const pos = init('position_embeddings', [c.max_position_embeddings, hidden], positionPlusType);
    const shape = g.op('Shape', [ONNX_IO.inputIds]);
    const seqLen = g.op('Gather', [shape, g.int64('one_index', [], [1])], { axis: { i: 0 } });
    const positions = g.op('Range', [g.int64('zero', [], [0]), seqLen, g.int64('one', [], [1])]);
    const summed = g.op('Add', [g.op('Gather', [word, ONNX_IO.inputIds]), g.op('Gather', [pos, positions])]);
    return layerNorm(g, summed, weights.embeddingLayerNorm, 'embeddings', eps, init);
  };
  if (kind === 'plain') {
    x = standardEmbeddings(f32);
    // (1 - mask) * -10000, shaped [batch, 1, 1, sequence] to broadcast over heads and queries.
    const maskFloat = g.op('Cast', [ONNX_IO.attentionMask], { to: { i: DataType.FLOAT } });
    const inverted = g.op('Sub', [g.float32('one_f', [], Float32Array.of(1)), maskFloat]);
    const scaled = g.op('Mul', [inverted, g.float32('mask_filter', [], Float32Array.of(MASK_FILTER_VALUE))]);
    additiveMask = g.op('Unsqueeze', [scaled, g.int64('mask_axes', [2], [1, 2])]);
  } else if (fp16) {
    // The GPU graph keeps to ops that both GPU providers run: ONNX Runtime 1.30's WebGPU provider has
    // no EmbedLayerNormalization or Attention kernel, and placing them on the CPU cost 94% of a
    // BERT-base batch on an H200 (the ops themselves plus copies between host and device).
    // WebGPU's MultiHeadAttention has no key_padding_mask either: the mask goes in as an additive
    // attention bias, (1 - mask) * -10000 shaped [batch, 1, sequence, sequence] (the op broadcasts
    // only its first two dimensions), computed once and shared by every layer.
    const maskHalf = g.op('Cast', [ONNX_IO.attentionMask], { to: { i: DataType.FLOAT16 } });
    const inverted = g.op('Sub', [float('one_h', [], Float32Array.of(1)), maskHalf]);
    const scaled = g.op('Mul', [inverted, float('mask_filter', [], Float32Array.of(MASK_FILTER_VALUE))]);
    const rowBias = g.op('Unsqueeze', [scaled, g.int64('mask_axes', [2], [1, 2])]);
    const idsShape = g.op('Shape', [ONNX_IO.inputIds]);
    const batchDim = g.op('Gather', [idsShape, g.int64('batch_index', [1], [0])], { axis: { i: 0 } });
    const seqDim = g.op('Gather', [idsShape, g.int64('seq_index', [1], [1])], { axis: { i: 0 } });
    const biasShape = g.op('Concat', [batchDim, g.int64('one_dim', [1], [1]), seqDim, seqDim], {
      axis: { i: 0 },
    });
    attentionBias = g.op('Expand', [rowBias, biasShape]);
    x = standardEmbeddings(float);
  } else {
    maskInt32 = g.op('Cast', [ONNX_IO.attentionMask], { to: { i: DataType.INT32 } });
    const ids32 = g.op('Cast', [ONNX_IO.inputIds], { to: { i: DataType.INT32 } });
    const [embedded] = g.node(
      'EmbedLayerNormalization',
      [
        ids32,
        '',
        float('word_embeddings', [c.vocab_size, hidden], weights.wordEmbeddings),
        float('position_embeddings', [c.max_position_embeddings, hidden], positionPlusType),
        '',
        float('embeddings_ln_gamma', [hidden], weights.embeddingLayerNorm.gamma),
        float('embeddings_ln_beta', [hidden], weights.embeddingLayerNorm.beta),
        maskInt32,
      ],
      { epsilon: { f: eps } },
      // The second output (mask_index, the per-row token count) is required by the op's schema; the
      // attention nodes take the raw 2-D mask instead, which also covers non-contiguous masks.
      2,
      'com.microsoft',
    );
    x = embedded!;
  }

  weights.layers.forEach((layer, l) => {
    const p = `layer${l}_`;
    if (kind === 'plain') {
      x = plainLayer(g, x, layer, p, heads, hidden, additiveMask, eps);
      return;
    }
    let attention: string;
    let dense: (input: string, lin: Linear, name: string, withBias: boolean) => string;
    if (kind === 'int8') {
      dense = (input, lin, name, withBias) => quantizedMatMul(g, input, lin, name, withBias);
      const qkv = quantizedMatMul(g, x, concatLinear([layer.query, layer.key, layer.value]), `${p}qkv`, true);
      const [q, k, v] = g.node(
        'Split',
        [qkv, g.int64(`${p}qkv_split`, [3], [hidden, hidden, hidden])],
        { axis: { i: 2 } },
        3,
      );
      attention = g.node(
        'MultiHeadAttention',
        [q!, k!, v!, '', maskInt32],
        mhaAttributes(heads),
        1,
        'com.microsoft',
      )[0]!;
    } else {
      dense = (input, lin, name, withBias) => {
        const mm = g.op('MatMul', [input, transposed(`${name}_weight`, lin)]);
        return withBias ? g.op('Add', [mm, float(`${name}_bias`, [lin.outFeatures], lin.bias)]) : mm;
      };
      const qkv = concatLinear([layer.query, layer.key, layer.value]);
      if (fp16) {
        // MultiHeadAttention over a split QKV projection (see the embeddings above for why not Attention).
        const [q, k, v] = g.node(
          'Split',
          [dense(x, qkv, `${p}qkv`, true), g.int64(`${p}qkv_split`, [3], [hidden, hidden, hidden])],
          { axis: { i: 2 } },
          3,
        );
        attention = g.node(
          'MultiHeadAttention',
          [q!, k!, v!, '', '', attentionBias],
          { num_heads: { i: heads } },
          1,
          'com.microsoft',
        )[0]!;
      } else {
        attention = g.msOp(
          'Attention',
          [
            x,
            transposed(`${p}qkv_weight`, qkv),
            float(`${p}qkv_bias`, [qkv.outFeatures], qkv.bias),
            maskInt32,
          ],
          mhaAttributes(heads),
        );
      }
    }
    // dense → + bias → + residual → LayerNorm, as one SkipLayerNormalization or as standard ops.
    const residualNorm = (
      input: string,
      lin: Linear,
      skip: string,
      ln: LayerNormWeights,
      name: string,
    ): string => {
      if (useSkipLayerNorm) {
        return skipLayerNorm(g, dense(input, lin, name, false), skip, ln, lin.bias, `${name}_ln`, eps, float);
      }
      return layerNorm(g, g.op('Add', [dense(input, lin, name, true), skip]), ln, name, eps, float);
    };
    const h1 = residualNorm(
      attention,
      layer.attentionOutput,
      x,
      layer.attentionLayerNorm,
      `${p}attention_output`,
    );
    const intermediate = dense(h1, layer.intermediate, `${p}intermediate`, false);
    const activated = g.msOp('BiasGelu', [
      intermediate,
      float(`${p}intermediate_bias`, [c.intermediate_size], layer.intermediate.bias),
    ]);
    x = residualNorm(activated, layer.output, h1, layer.outputLayerNorm, `${p}output`);
  });

  const hiddenFloat = fp16 ? g.op('Cast', [x], { to: { i: DataType.FLOAT } }) : x;
  g.node('Identity', [hiddenFloat], {}, [ONNX_IO.lastHiddenState]);
  let pooled: string;
  if (pooling === 'cls') {
    pooled = g.op('Gather', [hiddenFloat, g.int64('cls_index', [], [0])], { axis: { i: 1 } });
  } else {
    const maskFloat = g.op('Cast', [ONNX_IO.attentionMask], { to: { i: DataType.FLOAT } });
    const mask3 = g.op('Unsqueeze', [maskFloat, g.int64('pool_unsqueeze', [1], [2])]);
    const axis1 = g.int64('pool_axis', [1], [1]);
    const summed = g.op('ReduceSum', [g.op('Mul', [hiddenFloat, mask3]), axis1], { keepdims: { i: 0 } });
    const count = g.op('ReduceSum', [maskFloat, axis1], { keepdims: { i: 1 } });
    const safeCount = g.op('Max', [count, g.float32('min_count', [], Float32Array.of(1e-9))]);
    pooled = g.op('Div', [summed, safeCount]);
  }
  const norm = g.op('Sqrt', [
    g.op('ReduceSumSquare', [pooled], { axes: { ints: [-1] }, keepdims: { i: 1 } }),
  ]);
  const safeNorm = g.op('Max', [norm, g.float32('min_norm', [], Float32Array.of(1e-12))]);
  g.node('Div', [pooled, safeNorm], {}, [ONNX_IO.embedding]);

  const inputs: ValueSpec[] = [
    { name: ONNX_IO.inputIds, type: DataType.INT64, dims: ['batch', 'sequence'] },
    { name: ONNX_IO.attentionMask, type: DataType.INT64, dims: ['batch', 'sequence'] },
  ];
  const outputs: ValueSpec[] = [
    { name: ONNX_IO.embedding, type: DataType.FLOAT, dims: ['batch', hidden] },
    { name: ONNX_IO.lastHiddenState, type: DataType.FLOAT, dims: ['batch', 'sequence', hidden] },
  ];
  return g.toModelBytes({ graphName: `bert_${kind}`, inputs, outputs, metadata: options.metadata });
}

function mhaAttributes(heads: number) {
  return { num_heads: { i: heads }, mask_filter_value: { f: MASK_FILTER_VALUE } };
}

function skipLayerNorm(
  g: GraphBuilder,
  input: string,
  skip: string,
  ln: LayerNormWeights,
  bias: Float32Array,
  name: string,
  eps: number,
  float: FloatInitializer,
): string {
  const n = ln.gamma.length;
  return g.msOp(
    'SkipLayerNormalization',
    [
      input,
      skip,
      float(`${name}_gamma`, [n], ln.gamma),
      float(`${name}_beta`, [n], ln.beta),
      float(`${name}_bias`, [n], bias),
    ],
    { epsilon: { f: eps } },
  );
}

/** Creates a float initializer in the graph's precision. */
type FloatInitializer = (name: string, dims: readonly number[], data: Float32Array) => string;

/** LayerNormalization (opset 17) over the last axis. */
function layerNorm(
  g: GraphBuilder,
  input: string,
  ln: LayerNormWeights,
  name: string,
  eps: number,
  float: FloatInitializer,
): string {
  const n = ln.gamma.length;
  return g.op(
    'LayerNormalization',
    [input, float(`${name}_ln_gamma`, [n], ln.gamma), float(`${name}_ln_beta`, [n], ln.beta)],
    {
      axis: { i: -1 },
      epsilon: { f: eps },
    },
  );
}

/** One encoder layer in standard ops, the way torch.onnx.export writes BertLayer. */
function plainLayer(
  g: GraphBuilder,
  x: string,
  layer: BertWeights['layers'][number],
  p: string,
  heads: number,
  hidden: number,
  additiveMask: string,
  eps: number,
): string {
  const headSize = hidden / heads;
  const linear = (input: string, lin: Linear, name: string): string =>
    g.op('Add', [
      g.op('MatMul', [
        input,
        g.float32(
          `${name}_weight`,
          [lin.inFeatures, lin.outFeatures],
          transpose(lin.weight, lin.outFeatures, lin.inFeatures),
        ),
      ]),
      g.float32(`${name}_bias`, [lin.outFeatures], lin.bias),
    ]);
  const splitShape = g.int64(`${p}split_heads`, [4], [0, 0, heads, headSize]);
  const heads4 = (v: string, perm: number[]): string =>
    g.op('Transpose', [g.op('Reshape', [v, splitShape])], { perm: { ints: perm } });
  const q = heads4(linear(x, layer.query, `${p}query`), [0, 2, 1, 3]);
  const k = heads4(linear(x, layer.key, `${p}key`), [0, 2, 3, 1]);
  const v = heads4(linear(x, layer.value, `${p}value`), [0, 2, 1, 3]);
  const scores = g.op('Div', [
    g.op('MatMul', [q, k]),
    g.float32(`${p}scale`, [], Float32Array.of(Math.sqrt(headSize))),
  ]);
  const probs = g.op('Softmax', [g.op('Add', [scores, additiveMask])], { axis: { i: -1 } });
  const context = g.op('Reshape', [
    g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: { ints: [0, 2, 1, 3] } }),
    g.int64(`${p}merge_heads`, [3], [0, 0, hidden]),
  ]);
  const f32: FloatInitializer = (name, dims, data) => g.float32(name, dims, data);
  const residualNorm = (input: string, residual: string, ln: LayerNormWeights, name: string): string =>
    layerNorm(g, g.op('Add', [input, residual]), ln, name, eps, f32);
  const h1 = residualNorm(
    linear(context, layer.attentionOutput, `${p}attention_output`),
    x,
    layer.attentionLayerNorm,
    `${p}attention`,
  );
  const inter = linear(h1, layer.intermediate, `${p}intermediate`);
  // Exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))).
  const erf = g.op('Erf', [g.op('Div', [inter, g.float32(`${p}sqrt2`, [], Float32Array.of(Math.SQRT2))])]);
  const gelu = g.op('Mul', [
    g.op('Mul', [inter, g.op('Add', [erf, g.float32(`${p}gelu_one`, [], Float32Array.of(1))])]),
    g.float32(`${p}gelu_half`, [], Float32Array.of(0.5)),
  ]);
  return residualNorm(linear(gelu, layer.output, `${p}output`), h1, layer.outputLayerNorm, `${p}output`);
}

/**
 * int8 per-output-channel symmetric quantization of a dense layer, run by DynamicQuantizeMatMul:
 * activations are quantized to uint8 per call, weights are int8 with one scale per output column.
 * Per-channel scales keep the error of columns with small weights small (cosine ≥ 0.99 end to end).
 */
function quantizedMatMul(
  g: GraphBuilder,
  input: string,
  lin: Linear,
  name: string,
  withBias: boolean,
): string {
  const { quantized, scales } = quantizePerColumn(lin);
  const weight = g.initializer(
    `${name}_weight_int8`,
    DataType.INT8,
    [lin.inFeatures, lin.outFeatures],
    bytesOf(quantized),
  );
  const scale = g.float32(`${name}_weight_scale`, [lin.outFeatures], scales);
  const inputs = [input, weight, scale, ''];
  if (withBias) inputs.push(g.float32(`${name}_bias`, [lin.outFeatures], lin.bias));
  return g.msOp('DynamicQuantizeMatMul', inputs);
}

/**
 * Quantizes a Hugging Face [out, in] weight into an int8 [in, out] matrix with one scale per output
 * column: q = round(w / s), s = max|w| / 127.
 */
export function quantizePerColumn(lin: Linear): { quantized: Int8Array; scales: Float32Array } {
  const { inFeatures: k, outFeatures: n, weight } = lin;
  const scales = new Float32Array(n);
  const quantized = new Int8Array(k * n);
  for (let o = 0; o < n; o++) {
    let max = 0;
    for (let i = 0; i < k; i++) max = Math.max(max, Math.abs(weight[o * k + i]!));
    const s = max > 0 ? max / 127 : 1;
    scales[o] = s;
    for (let i = 0; i < k; i++)
      quantized[i * n + o] = Math.max(-127, Math.min(127, Math.round(weight[o * k + i]! / s)));
  }
  return { quantized, scales };
}

/** Concatenates dense layers over their outputs (Q, K and V into one [3H, H] layer). */
function concatLinear(parts: readonly Linear[]): Linear {
  const inFeatures = parts[0]!.inFeatures;
  const outFeatures = parts.reduce((n, p) => n + p.outFeatures, 0);
  const weight = new Float32Array(outFeatures * inFeatures);
  const bias = new Float32Array(outFeatures);
  let row = 0;
  for (const p of parts) {
    weight.set(p.weight, row * inFeatures);
    bias.set(p.bias, row);
    row += p.outFeatures;
  }
  return { weight, bias, inFeatures, outFeatures };
}

/** Transposes a row-major [rows, cols] matrix. */
function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let col = 0; col < cols; col++) t[col * rows + r] = m[r * cols + col]!;
  return t;
}

function toHalfBytes(data: Float32Array): Uint8Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = floatToHalf(data[i]!);
  return bytesOf(out);
}
