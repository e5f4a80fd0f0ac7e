import { describe, expect, it } from 'vitest';
import { padBatch, paddingEfficiency, planBatches } from '../../../layers/encoder/src/batching.ts';

describe('planBatches', () => {
  const lengths = [12, 128, 7, 40, 41, 9, 100, 15, 15, 3];

  it('places every sequence in exactly one batch', () => {
    const batches = planBatches(lengths, { tokenBudget: 256 });
    expect(batches.flatMap((b) => b.indices).sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
  });

  it('keeps each batch within the token budget, padding included', () => {
    for (const b of planBatches(lengths, { tokenBudget: 256 })) {
      expect(b.paddedLength).toBe(Math.max(...b.indices.map((i) => lengths[i]!)));
      expect(b.indices.length * b.paddedLength).toBeLessThanOrEqual(256);
    }
  });

  it('gives a sequence longer than the budget a batch of its own', () => {
    const batches = planBatches([300, 5, 5], { tokenBudget: 100 });
    expect(batches[0]).toEqual({ indices: [0], paddedLength: 300 });
  });

  it('respects the batch size limit', () => {
    const sizes = planBatches(lengths, { tokenBudget: 1e9, maxBatchSize: 3, batchOverheadTokens: 1e6 }).map(
      (b) => b.indices.length,
    );
    expect(sizes.every((s) => s <= 3)).toBe(true);
    expect(sizes).toHaveLength(4);
  });

  it('trades padding against the cost of a batch', () => {
    const cheap = planBatches(lengths, { tokenBudget: 256, batchOverheadTokens: 0 });
    const dear = planBatches(lengths, { tokenBudget: 256, batchOverheadTokens: 1000 });
    expect(paddingEfficiency(lengths, cheap)).toBe(1);
    expect(dear.length).toBeLessThan(cheap.length);
    // With a dear batch, as few batches as the budget allows (3: 128+100 fill one, at most six fit 41
    // wide), and among those the cut with least padding: [128, 100], [41, 40], [15 … 3].
    expect(dear.map((b) => b.indices.length)).toEqual([2, 2, 6]);
  });

  it('pads far less than padding everything to the longest', () => {
    const many = Array.from({ length: 500 }, (_, i) => 5 + ((i * 37) % 120));
    const efficiency = paddingEfficiency(many, planBatches(many, { tokenBudget: 4096 }));
    const naive = many.reduce((a, b) => a + b, 0) / (many.length * 128);
    expect(efficiency).toBeGreaterThan(0.95);
    expect(naive).toBeLessThan(0.6);
  });
});

describe('padBatch', () => {
  it('right-pads with the pad id and masks the padding', () => {
    const { inputIds, attentionMask, rows, width } = padBatch(
      [
        [101, 5, 102],
        [101, 102],
      ],
      0,
    );
    expect([rows, width]).toEqual([2, 3]);
    expect(Array.from(inputIds, Number)).toEqual([101, 5, 102, 101, 102, 0]);
    expect(Array.from(attentionMask, Number)).toEqual([1, 1, 1, 1, 1, 0]);
  });
});
