/**
 * Query embedding: the model loaded once per process (one session, or a pool of worker sessions).
 * Queries that arrive while the model is busy are embedded together in the next forward pass
 * (micro-batching): one int8 GEMM over 16 short queries costs about 30% less per query than 16
 * separate ones (measured on 2 cores), which is what keeps p99 low under concurrent load. The
 * model may run on worker threads (`WorkerEncoder`): onnxruntime-node's `run` holds the thread
 * that calls it, so on the main thread every forward pass would stop the server from reading
 * requests and searching meanwhile. A pool may mix widths: a lone query goes to the session with
 * the most threads, batches under load to narrower ones side by side, never more threads at once
 * than the cores. A small LRU keeps recent query vectors, so the pages of one exhaustive search
 * embed once.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { EncoderWorkerError, isFixtureModel, type TokenIdEncoder } from '@cohort/encoder';

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
  /**
   * Most queries in one batch. Default 8: on 2 cores a one-thread session embeds a query in 15.5 ms
   * alone, 12.4 in batches of 2 or 4, 11.5 in batches of 8 and 12.2 in batches of 16, so larger
   * batches save nothing, while every query in a batch waits for the whole batch: under 20 clients
   * batches of up to 15 formed, and their queries were the slowest answers (p99 300 against 255 ms
   * with 8; see functions/query/README.md, Speed and memory). The int8 model quantizes a batch with
   * one activation scale, so a query's vector varies slightly with the queries batched with it
   * (measured on the BERT-base-sized bench model: 1 − cosine ≤ 8e-5); 1 embeds every query alone,
   * so that the same query always gives the same vector, at about 40% more model time per query
   * under load.
   */
  readonly maxBatch?: number;
  /** Query vectors remembered (by sha256 of the text). Default 256; 0 turns the cache off. */
  readonly cacheSize?: number;
  /** Queries an idle encoder waits for while another is busy (see `dispatch`). Default 8. */
  readonly minBatch?: number;
  /** Longest an idle encoder holds queries back while another is busy, in ms. Default 30. */
  readonly maxWaitMs?: number;
  /**
   * CPU threads the encoders may run on at once (each counts its `threads`, default 1): an encoder
   * starts a batch only when it fits beside those running (or nothing runs). Default: the available
   * cores. Two sessions that each spin on every core slow each other down: on 2 cores, two 2-thread
   * workers at once gave 56 searches/s against 82/s for one.
   */
  readonly threadBudget?: number;
  /**
   * Largest batch that the widest idle encoder takes when nothing runs. Default 2. A lone query is
   * fastest on every core (on 2 cores: 11 ms against 17 ms on one thread), but a batch gets more
   * embedded per core-second from one-thread sessions side by side (see `functions/query/README.md`).
   */
  readonly wideBatch?: number;
}

interface Waiting {
  readonly text: string;
  /** `performance.now()` when it was queued. */
  readonly since: number;
  readonly key: string;
  resolve(v: { vector: Float32Array; truncated: boolean }): void;
  reject(e: unknown): void;
}

/**
 * A {@link QueryEmbedder} over one or more encoders of the same bundle (an `Encoder`, or
 * `WorkerEncoder`s), with micro-batching and an LRU of vectors. Each encoder runs one batch at a
 * time, and encoders run side by side only while their threads fit in `threadBudget`; idle
 * encoders share the queries waiting (up to `maxBatch` each), so batches grow with load.
 */
export class BatchingEmbedder implements QueryEmbedder {
  private readonly queue: Waiting[] = [];
  private readonly idle: TokenIdEncoder[];
  private readonly cache = new Map<string, { vector: Float32Array; truncated: boolean }>();
  private readonly maxBatch: number;
  private readonly cacheSize: number;
  private readonly minBatch: number;
  private readonly maxWaitMs: number;
  private readonly threadBudget: number;
  private readonly wideBatch: number;
  /** CPU threads of the batches running now. */
  private busyThreads = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly encoderList: TokenIdEncoder[];
  private firstBatchDone: () => void = () => {};
  /** Resolves once the first batch has run (embedded or failed). */
  readonly firstBatch: Promise<void>;

  constructor(encoders: TokenIdEncoder | readonly TokenIdEncoder[], options: BatchingEmbedderOptions = {}) {
    this.encoderList = Array.isArray(encoders) ? [...encoders] : [encoders as TokenIdEncoder];
    if (this.encoderList.length === 0) throw new RangeError('BatchingEmbedder needs at least one encoder');
    this.idle = [...this.encoderList];
    this.firstBatch = new Promise((resolve) => {
      this.firstBatchDone = resolve;
    });
    this.maxBatch = options.maxBatch ?? 8;
    this.cacheSize = options.cacheSize ?? 256;
    this.minBatch = Math.min(options.minBatch ?? 8, this.maxBatch);
    this.maxWaitMs = options.maxWaitMs ?? 30;
    this.threadBudget = options.threadBudget ?? availableParallelism();
    this.wideBatch = options.wideBatch ?? 2;
  }

  /** The encoders of the pool, in the order they joined (among equals, batches go to the first idle one). */
  get encoders(): readonly TokenIdEncoder[] {
    return this.encoderList;
  }

  /**
   * Adds an encoder of the same bundle to the pool (a server starts its later model workers after
   * its first batch, so that they do not slow its cold start). After {@link close}, closes it
   * instead and returns false.
   * @throws RangeError when its model fingerprint differs from the pool's
   */
  async add(encoder: TokenIdEncoder): Promise<boolean> {
    if (encoder.info.fingerprint !== this.fingerprint) {
      await encoder.close();
      throw new RangeError(`encoder model ${encoder.info.fingerprint} differs from ${this.fingerprint}`);
    }
    if (this.closed) {
      await encoder.close();
      return false;
    }
    this.encoderList.push(encoder);
    this.idle.push(encoder);
    this.dispatch();
    return true;
  }

  get fingerprint(): string {
    return this.encoders[0]!.info.fingerprint;
  }

  get dims(): number {
    return this.encoders[0]!.info.dims;
  }

  get fixture(): boolean {
    return isFixtureModel(this.encoders[0]!.info);
  }

  embed(text: string): Promise<{ vector: Float32Array; truncated: boolean }> {
    if (this.closed) return Promise.reject(new EncoderWorkerError('the query model is closed'));
    const key = createHash('sha256').update(text).digest('base64');
    const hit = this.cache.get(key);
    if (hit) {
      // Refresh its place in the LRU order.
      this.cache.delete(key);
      this.cache.set(key, hit);
      return Promise.resolve(hit);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ text, key, since: performance.now(), resolve, reject });
      this.dispatch();
    });
  }

  /**
   * Hands the waiting queries to idle encoders, one batch each, while their threads fit in the
   * thread budget. When nothing runs the queries go at once (a lone query is never held back): a
   * few to the widest idle encoder, more to the narrowest, shared among the idle encoders that
   * fit together. While a batch runs (load), an idle encoder waits until `minBatch` queries are
   * waiting or the oldest has waited `maxWaitMs`: taking queries one by one as they arrive would
   * run batches of one, the costliest per query.
   */
  private dispatch(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed || this.encoderList.length === 0) {
      // Nothing will embed these any more: fail them rather than leave them waiting forever.
      const error = new EncoderWorkerError(
        this.closed ? 'the query model is closed' : 'every model worker has exited',
      );
      for (const w of this.queue.splice(0)) w.reject(error);
      return;
    }
    // Queries split among encoders that start together: how many are still to start, and each one's share.
    let toStart = 0;
    let share = 0;
    while (this.queue.length > 0) {
      const fitting = this.idle
        .filter((e) => this.busyThreads === 0 || this.busyThreads + threadsOf(e) <= this.threadBudget)
        .sort((a, b) => threadsOf(a) - threadsOf(b));
      if (fitting.length === 0) return; // the end of a running batch dispatches again
      let encoder = fitting[0]!;
      if (toStart === 0) {
        const running = this.busyThreads > 0;
        const waited = performance.now() - this.queue[0]!.since;
        if (running && this.queue.length < this.minBatch && waited < this.maxWaitMs) {
          this.timer = setTimeout(() => this.dispatch(), this.maxWaitMs - waited);
          return;
        }
        const wide = !running && this.queue.length <= this.wideBatch;
        // The widest, first in the pool's order among equals.
        if (wide) encoder = fitting.find((e) => threadsOf(e) === threadsOf(fitting[fitting.length - 1]!))!;
        toStart = wide ? 1 : this.startableTogether(fitting);
        share = Math.min(this.maxBatch, Math.ceil(this.queue.length / toStart));
      }
      toStart--;
      this.idle.splice(this.idle.indexOf(encoder), 1);
      const batch = this.queue.splice(0, share);
      this.busyThreads += threadsOf(encoder);
      void this.run(encoder, batch).finally(() => {
        this.busyThreads -= threadsOf(encoder);
        this.firstBatchDone();
        if (encoder.exited) {
          // A worker that died takes no more batches; the others carry on.
          this.encoderList.splice(this.encoderList.indexOf(encoder), 1);
        } else {
          // Keep the pool's order, so that queries keep going to the same encoders (warm caches).
          this.idle.push(encoder);
          this.idle.sort((a, b) => this.encoders.indexOf(a) - this.encoders.indexOf(b));
        }
        this.dispatch();
      });
    }
  }

  /** How many of `candidates` (narrowest first) can start a batch together now, within the budget. */
  private startableTogether(candidates: readonly TokenIdEncoder[]): number {
    let threads = this.busyThreads;
    let count = 0;
    for (const e of candidates) {
      if (count > 0 && threads + threadsOf(e) > this.threadBudget) break;
      threads += threadsOf(e);
      count++;
    }
    return count;
  }

  private async run(encoder: TokenIdEncoder, batch: Waiting[]): Promise<void> {
    try {
      const result = await encoder.embed(
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
      // A worker that died before or while running the batch leaves it to the others.
      if (encoder.exited) this.queue.unshift(...batch);
      else for (const w of batch) w.reject(error);
    }
  }

  private remember(key: string, value: { vector: Float32Array; truncated: boolean }): void {
    if (this.cacheSize <= 0) return;
    this.cache.set(key, value);
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
  }

  /** Fails the queries still waiting, then closes every encoder (batches running finish or fail). */
  async close(): Promise<void> {
    this.closed = true;
    this.dispatch();
    await Promise.all(this.encoders.map((e) => e.close()));
  }
}

/** CPU threads of an encoder's batch (1 when it does not say, or says something that is no count). */
function threadsOf(encoder: TokenIdEncoder): number {
  const threads = encoder.threads;
  return threads !== undefined && Number.isInteger(threads) && threads >= 1 ? threads : 1;
}
