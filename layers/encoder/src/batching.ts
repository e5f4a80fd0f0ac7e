/** Options of {@link planBatches}. */
export interface BatchPlanOptions {
  /** Most tokens one batch may compute, padding included (batch size × longest sequence). */
  readonly tokenBudget: number;
  /** Most sequences in one batch. Default unlimited. */
  readonly maxBatchSize?: number;
}

/** A batch: indices into the caller's sequences, and the padded length they share. */
export interface PlannedBatch {
  readonly indices: number[];
  readonly paddedLength: number;
}

/**
 * Groups sequences into batches by token budget: sorted by length (longest first), each batch is
 * padded only to its own longest sequence, and holds as many sequences as fit the budget. Sorting
 * makes neighbours similar in length, so little compute goes to padding. A sequence longer than
 * the budget gets a batch of its own.
 */
export function planBatches(lengths: readonly number[], options: BatchPlanOptions): PlannedBatch[] {
  const maxBatch = options.maxBatchSize ?? Number.POSITIVE_INFINITY;
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const batches: PlannedBatch[] = [];
  let current: number[] = [];
  let padded = 0;
  for (const i of order) {
    const len = lengths[i]!;
    if (current.length > 0 && ((current.length + 1) * padded > options.tokenBudget || current.length >= maxBatch)) {
      batches.push({ indices: current, paddedLength: padded });
      current = [];
    }
    if (current.length === 0) padded = len;
    current.push(i);
  }
  if (current.length > 0) batches.push({ indices: current, paddedLength: padded });
  return batches;
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
