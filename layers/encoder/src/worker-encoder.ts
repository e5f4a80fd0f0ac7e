/**
 * The encoder on a worker thread. onnxruntime-node's `session.run` holds the thread that calls it
 * for the whole batch (measured: event-loop gaps of seconds during a BERT-base batch on the CPU),
 * so an encoder on the main thread would stop reading, parsing, uploads and commits while it runs.
 * Here the session lives on its own thread; the main thread keeps a tokenizer (for chunking and
 * token ids) and sends token ids over, or sends texts that the worker tokenizes itself (`embed`),
 * getting vectors back in a transferred buffer.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { loadBundleTokenizer, type ModelInfo, readBundleInfo, type Variant } from './bundle.ts';
import type { EmbedOptions, EncoderOptions } from './encoder.ts';
import { EncoderError } from './errors.ts';
import type { ResolvedProvider } from './session.ts';
import type { BertTokenizer, TokenizedText } from './tokenizer.ts';

/**
 * An encoder that embeds texts and token ids: the bundle's info and tokenizer, `embed` and
 * `embedIds`. Both {@link Encoder} (in this thread) and {@link WorkerEncoder} (on a worker thread)
 * are one.
 */
export interface TokenIdEncoder {
  readonly info: ModelInfo;
  readonly dims: number;
  readonly provider: ResolvedProvider;
  readonly variant: Variant;
  readonly tokenizer: BertTokenizer;
  tokenize(texts: readonly string[]): Promise<TokenizedText[]>;
  /**
   * Tokenizes and embeds texts where the session runs, as `Encoder.embed`. On a worker both steps
   * run there, so a batch makes one round trip through the caller's thread, not two: a busy caller
   * (a server searching) would otherwise hold the tokenized batch while the session sits idle.
   */
  embed(
    texts: readonly string[],
    options?: EmbedOptions,
  ): Promise<{ readonly embeddings: Float32Array[]; readonly truncated: number[] }>;
  embedIds(
    sequences: readonly number[][],
    options?: EmbedOptions,
  ): Promise<{ readonly embeddings: Float32Array[]; readonly truncated: number[] }>;
  /**
   * CPU threads one `embedIds` batch runs on, which a caller running several encoders at once
   * weighs against the cores (see the query API's `BatchingEmbedder`). Default 1.
   */
  readonly threads?: number;
  /** True once the encoder can embed no more (its worker thread exited). Default: never. */
  readonly exited?: boolean;
  close(): Promise<void>;
}

/** Options of {@link WorkerEncoder.start}: the encoder's, and how the worker's threads are scheduled. */
export interface WorkerEncoderOptions extends Omit<EncoderOptions, 'logger'> {
  /**
   * Nice value added to the worker's threads (its own and ONNX Runtime's, which inherit it; at most
   * 19 in all), on Linux only, where a nice value belongs to a thread; elsewhere it would lower the
   * whole process, so it is ignored. Default 0. A server that embeds on workers raises it, so that
   * its own thread (parsing, searching, answering) takes a core at once when it has work, instead
   * of sharing it with a batch that can wait (see the query API's `MODEL_WORKER_NICENESS`).
   * Lowering one's own priority needs no privilege; a value that cannot be set is ignored.
   */
  readonly niceness?: number;
}

/** The worker failed to start the encoder, or a request failed in it; the worker's error name is kept. */
export class EncoderWorkerError extends EncoderError {}

type Reply =
  | { type: 'ready'; provider: ResolvedProvider; variant: Variant; threads: number }
  | { type: 'failed' | 'error'; id?: number; name: string; message: string }
  | { type: 'result'; id: number; flat: Float32Array; truncated: number[] };

/** An encoder whose ONNX Runtime session runs on a worker thread; see the module comment. */
export class WorkerEncoder implements TokenIdEncoder {
  private nextId = 0;
  /** Why the worker is gone, once it exited (every later request fails with it). */
  private gone: EncoderWorkerError | undefined;
  private readonly pending = new Map<
    number,
    { resolve: (r: { embeddings: Float32Array[]; truncated: number[] }) => void; reject: (e: Error) => void }
  >();

  private constructor(
    private readonly worker: Worker,
    /** The bundle's `model.json`. */
    readonly info: ModelInfo,
    /** The bundle's tokenizer, on this thread. */
    readonly tokenizer: BertTokenizer,
    /** Provider the worker's session runs on. */
    readonly provider: ResolvedProvider,
    /** Variant the worker loaded. */
    readonly variant: Variant,
    /** CPU threads one batch runs on in the worker (its session's intra-op threads). */
    readonly threads: number,
  ) {
    worker.on('message', (reply: Reply) => {
      if (reply.type === 'ready' || reply.type === 'failed' || reply.id === undefined) return;
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (!waiter) return;
      if (reply.type === 'result') {
        const dims = this.info.dims;
        const count = reply.flat.length / dims;
        waiter.resolve({
          embeddings: Array.from({ length: count }, (_, i) => reply.flat.subarray(i * dims, (i + 1) * dims)),
          truncated: reply.truncated,
        });
      } else {
        waiter.reject(new EncoderWorkerError(`${reply.name}: ${reply.message}`));
      }
    });
    worker.on('error', (error) => this.failAll(error));
    worker.on('exit', (code) => {
      this.gone = new EncoderWorkerError(`encoder worker exited with code ${code}`);
      this.failAll(this.gone);
    });
  }

  /**
   * Loads a bundle on a new worker thread (and its tokenizer and info on this one).
   * @throws EncoderWorkerError naming the encoder's error (e.g. ProviderUnavailableError) when it cannot start
   */
  static async start(bundleDir: string, options: WorkerEncoderOptions = {}): Promise<WorkerEncoder> {
    const { niceness = 0, ...encoderOptions } = options;
    if (!Number.isInteger(niceness) || niceness < 0 || niceness > 19)
      throw new RangeError(`niceness must be an integer from 0 to 19, got ${niceness}`);
    const info = await readBundleInfo(bundleDir);
    const tokenizer = await loadBundleTokenizer(bundleDir, info);
    const require = createRequire(import.meta.url);
    const worker = new Worker(new URL('./worker-encoder.mjs', import.meta.url), {
      workerData: {
        // The ESM entry of tsx's API (its `import` export): `require.resolve` would give the CommonJS one.
        tsxApi: pathToFileURL(join(dirname(require.resolve('tsx/package.json')), 'dist/esm/api/index.mjs'))
          .href,
        encoderModule: new URL('./index.ts', import.meta.url).href,
        bundleDir,
        options: encoderOptions,
        // Only where a nice value belongs to one thread (see WorkerEncoderOptions.niceness).
        niceness: process.platform === 'linux' ? niceness : 0,
      },
    });
    const ready = await new Promise<Reply>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    if (ready.type !== 'ready') {
      await worker.terminate();
      const message =
        ready.type === 'failed' || ready.type === 'error' ? `${ready.name}: ${ready.message}` : 'no reply';
      throw new EncoderWorkerError(`the encoder could not start: ${message}`);
    }
    return new WorkerEncoder(worker, info, tokenizer, ready.provider, ready.variant, ready.threads);
  }

  /** Embedding dimensions. */
  get dims(): number {
    return this.info.dims;
  }

  /** Tokenizes texts with the bundle's settings, without truncation (on this thread). */
  tokenize(texts: readonly string[]): Promise<TokenizedText[]> {
    return this.tokenizer.encodeBatch(texts);
  }

  /** Whether the worker thread has exited (closed or crashed): every request then fails. */
  get exited(): boolean {
    return this.gone !== undefined;
  }

  /**
   * Tokenizes and embeds texts on the worker; as `Encoder.embed`.
   * @throws EncoderWorkerError when the worker has exited or the request failed in it
   */
  embed(
    texts: readonly string[],
    options: EmbedOptions = {},
  ): Promise<{ embeddings: Float32Array[]; truncated: number[] }> {
    return this.request({ type: 'embed', texts, options });
  }

  /**
   * Embeds token ids on the worker; as `Encoder.embedIds`.
   * @throws EncoderWorkerError when the worker has exited or the request failed in it
   */
  embedIds(
    sequences: readonly number[][],
    options: EmbedOptions = {},
  ): Promise<{ embeddings: Float32Array[]; truncated: number[] }> {
    return this.request({ type: 'embed', ids: sequences, options });
  }

  /** Sends an embed request (texts or token ids) and waits for its reply. */
  private request(
    message: { type: 'embed'; options: EmbedOptions } & (
      | { texts: readonly string[] }
      | { ids: readonly number[][] }
    ),
  ): Promise<{ embeddings: Float32Array[]; truncated: number[] }> {
    if (this.gone) return Promise.reject(this.gone);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    });
  }

  /** Releases the session and ends the worker (again: nothing). */
  async close(): Promise<void> {
    if (this.gone) return;
    const exited = new Promise((resolve) => this.worker.once('exit', resolve));
    this.worker.postMessage({ type: 'close' });
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    await this.worker.terminate();
  }

  private failAll(error: Error): void {
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }
}
