/** Options of {@link planBatches}. */
export interface BatchPlanOptions {
  /** Most tokens one batch may compute, padding included (batch size × longest sequence). */
  readonly tokenBudget: number;
  /** Most sequences in one batch. Default unlimited. */
  readonly maxBatchSize?: number;
  /**
   * Fixed cost of running one batch, in token-equivalents: what a model call costs beyond its
   * tokens (kernel launches, session overhead). Default 8, a CPU figure; on a GPU it is in the
   * thousands. Larger values favour fewer, fuller batches over less padding.
   */
  readonly batchOverheadTokens?: number;
}

/** A batch: indices into the caller's sequences, and the padded length they share. */
export interface PlannedBatch {
  readonly indices: number[];
  readonly paddedLength: number;
}

/**
 * Groups sequences into batches by token budget, padding each batch only to its own longest
 * sequence. Sequences are sorted by length (longest first) and the sorted list is cut into
 * contiguous batches at the points that minimise computed tokens (padding included) plus a fixed
 * cost per batch, found by dynamic programming over the cut points; every batch keeps within the
 * budget and the size limit. A sequence longer than the budget gets a batch of its own.
 */
export function planBatches(lengths: readonly number[], options: BatchPlanOptions): PlannedBatch[] {
  const maxBatch = Math.max(1, options.maxBatchSize ?? Number.POSITIVE_INFINITY);
  const overhead = options.batchOverheadTokens ?? 8;
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const sorted = order.map((i) => lengths[i]!);
  const n = sorted.length;
  // cost[j]: least cost of batching the first j sorted sequences; cut[j]: where its last batch starts.
  const cost = new Float64Array(n + 1).fill(Number.POSITIVE_INFINITY);
  const cut = new Int32Array(n + 1);
  cost[0] = 0;
  for (let i = 0; i < n; i++) {
    const width = sorted[i]!;
    const base = cost[i]! + overhead;
    for (let j = i + 1; j <= n && j - i <= maxBatch; j++) {
      if (j - i > 1 && (j - i) * width > options.tokenBudget) break;
      const c = base + (j - i) * width;
      if (c < cost[j]!) {
        cost[j] = c;
        cut[j] = i;
      }
    }
  }
  const batches: PlannedBatch[] = [];
  for (let j = n; j > 0; j = cut[j]!) {
    const i = cut[j]!;
    batches.push({ indices: order.slice(i, j), paddedLength: sorted[i]! });
  }
  return batches.reverse();
}

/** Useful tokens over computed tokens (1 = no padding) for a batch plan. */
export function paddingEfficiency(lengths: readonly number[], batches: readonly PlannedBatch[]): number {
  let useful = 0;
  let computed = 0;
  for (const b of batches) {
    computed += b.indices.length * b.paddedLength;
    for (const i of b.indices) useful += lengths[i]!;
  }
  return computed === 0 ? 1 : useful / computed;
}

/** A batch of sequences right-padded to a common width, as the model's int64 inputs. */
export interface PaddedBatch {
  readonly inputIds: BigInt64Array;
  readonly attentionMask: BigInt64Array;
  readonly rows: number;
  readonly width: number;
}

/**
 * Right-pads sequences to the longest one with `padId` and mask 0.
 * @param padId id of [PAD]. Default 0 (BERT vocabularies).
 */
export function padBatch(batch: readonly (readonly number[])[], padId = 0): PaddedBatch {
  const rows = batch.length;
  const width = Math.max(...batch.map((s) => s.length));
  const inputIds = new BigInt64Array(rows * width).fill(BigInt(padId));
  const attentionMask = new BigInt64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    const seq = batch[r]!;
    for (let t = 0; t < seq.length; t++) {
      inputIds[r * width + t] = BigInt(seq[t]!);
      attentionMask[r * width + t] = 1n;
    }
  }
  return { inputIds, attentionMask, rows, width };
}
