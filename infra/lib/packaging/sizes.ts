/**
 * Size arithmetic of the query function's deployment: what must fit in Lambda's 250 MB (unzipped code
 * and layers together).
 */

/** Lambda's limit on the unzipped function code and all its layers, in bytes (250 MB). */
export const LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024;

/** Shape of a BERT encoder, as in a bundle's `model.json`. */
export interface BertShape {
  readonly vocabSize: number;
  readonly dims: number;
  readonly layers: number;
  /** Hidden size of the feed-forward block. Default 4 × dims. */
  readonly intermediate?: number;
  /** Position embeddings. Default 512. */
  readonly maxPositions?: number;
}

/** ClinicalBERT (BERT-base cased). */
export const CLINICAL_BERT: BertShape = { vocabSize: 28996, dims: 768, layers: 12 };

/**
 * Bytes of a BERT graph whose dense (MatMul) weights are int8 and everything else fp32, as the encoder
 * layer's int8 variant is quantized: the embedding tables stay fp32 (they are gathered, not multiplied), so
 * they are half the file. Biases and layer norms are counted; graph structure is not (under 1%).
 */
export function int8ModelBytes(shape: BertShape): number {
  const h = shape.dims;
  const ff = shape.intermediate ?? 4 * h;
  const embeddings = (shape.vocabSize + (shape.maxPositions ?? 512) + 2) * h * 4 + 2 * h * 4;
  const perLayerInt8 = 4 * h * h + 2 * h * ff;
  const perLayerFp32 = (4 * h + ff + h) * 4 + 2 * 2 * h * 4;
  // The pooler is a dense layer too.
  const pooler = h * h + h * 4;
  return embeddings + shape.layers * (perLayerInt8 + perLayerFp32) + pooler;
}
