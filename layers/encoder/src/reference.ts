import type { Pooling } from './onnx/bert.ts';
import type { BertWeights, LayerNormWeights, Linear } from './weights.ts';

// An independent BERT forward pass in float64 with plain loops, following the definition in the
// BERT paper and Hugging Face's BertModel: absolute position embeddings, token type 0, LayerNorm
// with the config's epsilon, exact erf GELU, additive attention mask. It shares no code with the
// ONNX graph builder, so that agreement between the two is evidence that both are right. It is
// slow on purpose (clarity over speed) and meant for tests and small fixtures.

/** Output of {@link referenceForward} for one sequence. */
export interface ReferenceOutput {
  /** Final hidden states, [sequence][hidden]. */
  readonly hiddenStates: Float64Array[];
  /** Pooled (mean over mask, or [CLS]) and L2-normalized embedding. */
  readonly embedding: Float64Array;
}

/**
 * Runs BERT on one sequence of token ids.
 * @param mask attention mask (1 = attend, 0 = padding); default all ones
 * @param pooling default `mean`
 */
export function referenceForward(
  weights: BertWeights,
  ids: readonly number[],
  mask: readonly number[] = ids.map(() => 1),
  pooling: Pooling = 'mean',
): ReferenceOutput {
  const c = weights.config;
  const hidden = c.hidden_size;
  const heads = c.num_attention_heads;
  const headSize = hidden / heads;
  const eps = c.layer_norm_eps;
  const n = ids.length;

  let x: Float64Array[] = ids.map((id, pos) => {
    const v = new Float64Array(hidden);
    for (let h = 0; h < hidden; h++) {
      v[h] =
        weights.wordEmbeddings[id * hidden + h]! +
        weights.positionEmbeddings[pos * hidden + h]! +
        weights.tokenTypeEmbeddings[h]!;
    }
    return layerNorm(v, weights.embeddingLayerNorm, eps);
  });

  for (const layer of weights.layers) {
    const q = x.map((v) => dense(v, layer.query));
    const k = x.map((v) => dense(v, layer.key));
    const val = x.map((v) => dense(v, layer.value));
    const context = x.map(() => new Float64Array(hidden));
    for (let hd = 0; hd < heads; hd++) {
      const off = hd * headSize;
      for (let i = 0; i < n; i++) {
        const scores = new Float64Array(n);
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let d = 0; d < headSize; d++) s += q[i]![off + d]! * k[j]![off + d]!;
          s = s / Math.sqrt(headSize) + (mask[j] ? 0 : -10000);
          scores[j] = s;
          max = Math.max(max, s);
        }
        let total = 0;
        for (let j = 0; j < n; j++) total += scores[j] = Math.exp(scores[j]! - max);
        for (let j = 0; j < n; j++) {
          const p = scores[j]! / total;
          for (let d = 0; d < headSize; d++) context[i]![off + d]! += p * val[j]![off + d]!;
        }
      }
    }
    const h1 = x.map((v, i) =>
      layerNorm(add(dense(context[i]!, layer.attentionOutput), v), layer.attentionLayerNorm, eps),
    );
    x = h1.map((v) =>
      layerNorm(
        add(dense(dense(v, layer.intermediate).map(gelu), layer.output), v),
        layer.outputLayerNorm,
        eps,
      ),
    );
  }

  let pooled = new Float64Array(hidden);
  if (pooling === 'cls') {
    pooled = Float64Array.from(x[0]!);
  } else {
    let count = 0;
    for (let i = 0; i < n; i++) {
      if (!mask[i]) continue;
      count++;
      for (let h = 0; h < hidden; h++) pooled[h]! += x[i]![h]!;
    }
    for (let h = 0; h < hidden; h++) pooled[h] = pooled[h]! / Math.max(count, 1e-9);
  }
  let norm = 0;
  for (const v of pooled) norm += v * v;
  norm = Math.max(Math.sqrt(norm), 1e-12);
  return { hiddenStates: x, embedding: pooled.map((v) => v / norm) };
}

function dense(v: Float64Array, lin: Linear): Float64Array {
  const out = new Float64Array(lin.outFeatures);
  for (let o = 0; o < lin.outFeatures; o++) {
    let s = lin.bias[o]!;
    const row = o * lin.inFeatures;
    for (let i = 0; i < lin.inFeatures; i++) s += lin.weight[row + i]! * v[i]!;
    out[o] = s;
  }
  return out;
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  return a.map((v, i) => v + b[i]!);
}

function layerNorm(v: Float64Array, ln: LayerNormWeights, eps: number): Float64Array {
  let mean = 0;
  for (const x of v) mean += x;
  mean /= v.length;
  let variance = 0;
  for (const x of v) variance += (x - mean) ** 2;
  variance /= v.length;
  const inv = 1 / Math.sqrt(variance + eps);
  return v.map((x, i) => (x - mean) * inv * ln.gamma[i]! + ln.beta[i]!);
}

/** Exact GELU: x · Φ(x) = x/2 · (1 + erf(x/√2)). */
function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/**
 * erf to about 1e-15 relative error: Maclaurin series for |x| < 2.5, continued fraction
 * (Lentz) for the tail. JavaScript has no Math.erf.
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = ax;
    let sum = ax;
    const x2 = ax * ax;
    for (let k = 1; k < 200; k++) {
      term *= -x2 / k;
      const add = term / (2 * k + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …)))) — evaluated by modified Lentz.
  const tiny = 1e-300;
  let f = ax;
  let cc = ax;
  let d = 0;
  for (let k = 1; k < 300; k++) {
    const a = k / 2;
    d = ax + a * d;
    d = Math.abs(d) < tiny ? tiny : d;
    cc = ax + a / cc;
    cc = Math.abs(cc) < tiny ? tiny : cc;
    d = 1 / d;
    const delta = cc * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}
