/**
 * Query embedding: one model per process, loaded once. Queries that arrive while the model is busy
 * are embedded together in the next forward pass (micro-batching): one int8 GEMM over 20 short
 * queries costs far less than 20 separate ones, which is what keeps p99 low under concurrent load.
 * A small LRU keeps recent query vectors, so the pages of one exhaustive search embed once.
 */
import { createHash } from 'node:crypto';
import { type Encoder, isFixtureModel } from '@cohort/encoder';

/** Turns query text into a unit vector with the index's model. */
export interface QueryEmbedder {
  /** The model's fingerprint (must equal the index's). */
  readonly fingerprint: string;
  readonly dims: number;
  /** True for the tiny random fixture model (meaningless rankings); health reports it. Default false. */
  readonly fixture?: boolean;
  /** Embeds one query; text past the model's maximum length is cut (`truncated` says so). */
  embed(text: string): Promise<{ vector: Float32Array; truncated: boolean }>;
  close(): Promise<void>;
}

/** Options of {@link BatchingEmbedder}. */
export interface BatchingEmbedderOptions {
  /** Most queries in one forward pass. Default 32. */
  readonly maxBatch?: number;
  /** Query vectors remembered (by sha256 of the text). Default 256; 0 turns the cache off. */
  readonly cacheSize?: number;
}

interface Waiting {
  readonly text: string;
  readonly key: string;
  resolve(v: { vector: Float32Array; truncated: boolean }): void;
  reject(e: unknown): void;
}

/** A {@link QueryEmbedder} over an `Encoder`, with micro-batching and an LRU of vectors. */
export class BatchingEmbedder implements QueryEmbedder {
  private readonly queue: Waiting[] = [];
  private running = false;
  private readonly cache = new Map<string, { vector: Float32Array; truncated: boolean }>();
  private readonly maxBatch: number;
  private readonly cacheSize: number;

  constructor(
    readonly encoder: Encoder,
    options: BatchingEmbedderOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 32;
    this.cacheSize = options.cacheSize ?? 256;
  }

  get fingerprint(): string {
    return this.encoder.info.fingerprint;
  }

  get dims(): number {
    return this.encoder.info.dims;
  }

  get fixture(): boolean {
    return isFixtureModel(this.encoder.info);
  }

  embed(text: string): Promise<{ vector: Float32Array; truncated: boolean }> {
    const key = createHash('sha256').update(text).digest('base64');
    const hit = this.cache.get(key);
    if (hit) {
      // Refresh its place in the LRU order.
      this.cache.delete(key);
      this.cache.set(key, hit);
      return Promise.resolve(hit);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ text, key, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        try {
          const result = await this.encoder.embed(
            batch.map((w) => w.text),
            { onOverflow: 'truncate' },
          );
          const truncated = new Set(result.truncated);
          batch.forEach((w, i) => {
            const value = { vector: result.embeddings[i]!, truncated: truncated.has(i) };
            this.remember(w.key, value);
            w.resolve(value);
          });
        } catch (error) {
          for (const w of batch) w.reject(error);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private remember(key: string, value: { vector: Float32Array; truncated: boolean }): void {
    if (this.cacheSize <= 0) return;
    this.cache.set(key, value);
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
  }

  close(): Promise<void> {
    return this.encoder.close();
  }
}
