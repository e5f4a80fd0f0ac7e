import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { padBatch, planBatches } from './batching.ts';
import { loadBundleTokenizer, type ModelInfo, readBundleInfo, type Variant } from './bundle.ts';
import { BundleError, SequenceTooLongError } from './errors.ts';
import { type EncoderLogger, getDefaultLogger } from './logger.ts';
import { ONNX_IO } from './onnx/bert.ts';
import { createSession, type Provider, type ResolvedProvider, type Spinning } from './session.ts';
import type { BertTokenizer, TokenizedText } from './tokenizer.ts';

/** Options of {@link Encoder.load}. */
export interface EncoderOptions {
  /**
   * Variant to run. Default `auto`: `int8` on the CPU, `fp16` on a GPU, falling back to `fp32`
   * when the bundle lacks the preferred one.
   */
  readonly variant?: Variant | 'auto';
  /** Execution provider. Default `auto` (see {@link createSession}). */
  readonly provider?: Provider;
  /** CPU threads. Default: available cores. */
  readonly threads?: number;
  /** When idle CPU threads spin (see `SessionOptions.spinning`). Default `during-runs`. */
  readonly spinning?: Spinning;
  /** Logger. Default: Powertools Logger, service `cohort-encoder`. */
  readonly logger?: EncoderLogger;
}

/** Options of {@link Encoder.embed}. */
export interface EmbedOptions {
  /**
   * What to do with an input longer than the bundle's `maxLength`: `error` (default) throws
   * {@link SequenceTooLongError}; `truncate` keeps the first `maxLength - 1` tokens and [SEP], and
   * reports the input's index in `truncated`. Never silent.
   */
  readonly onOverflow?: 'error' | 'truncate';
  /** Most tokens per batch, padding included. Default 4,096 on the CPU, 32,768 on a GPU. */
  readonly tokenBudget?: number;
  /** Most sequences per batch. Default 256. */
  readonly maxBatchSize?: number;
  /**
   * Fixed cost of one model call in token-equivalents, which the batch planner weighs against
   * padding (see {@link planBatches}). Default 8 on the CPU, 2,048 on a GPU, where each call
   * launches hundreds of kernels.
   */
  readonly batchOverheadTokens?: number;
}

/** Counts from one {@link Encoder.embed} call. */
export interface EmbedStats {
  readonly sequences: number;
  readonly batches: number;
  /** Tokens that belong to inputs. */
  readonly usefulTokens: number;
  /** Tokens computed, padding included. */
  readonly computedTokens: number;
}

/** Result of {@link Encoder.embed}: one L2-normalized vector per input, in input order. */
export interface EmbedResult {
  readonly embeddings: Float32Array[];
  /** Indices of inputs that were truncated (only with `onOverflow: 'truncate'`). */
  readonly truncated: number[];
  readonly stats: EmbedStats;
}

/** Output of {@link Encoder.forward} for one batch. */
export interface ForwardOutput {
  /** [batch][dims] pooled, normalized embeddings. */
  readonly embeddings: Float32Array[];
  /** [batch] of [sequence × dims] final hidden states (only when asked for). */
  readonly hiddenStates?: Float32Array[];
}

/**
 * A loaded model bundle: tokenizer plus one ONNX Runtime session. Load once per process and reuse;
 * `embed` may be called concurrently: ONNX Runtime sessions are safe to run from several calls at once.
 */
export class Encoder {
  private constructor(
    /** The bundle's `model.json`. */
    readonly info: ModelInfo,
    /** The tokenizer configured from the bundle. */
    readonly tokenizer: BertTokenizer,
    private readonly session: ort.InferenceSession,
    /** Provider the session runs on. */
    readonly provider: ResolvedProvider,
    /** Variant loaded. */
    readonly variant: Variant,
    /** CPU threads one forward pass runs on (the session's intra-op threads). */
    readonly threads: number,
  ) {}

  /** Loads a bundle directory. @throws BundleError, ProviderUnavailableError */
  static async load(bundleDir: string, options: EncoderOptions = {}): Promise<Encoder> {
    const logger = options.logger ?? getDefaultLogger();
    const info = await readBundleInfo(bundleDir);
    const tokenizer = await loadBundleTokenizer(bundleDir, info);
    const asked = options.variant ?? 'auto';
    if (asked !== 'auto' && !info.variants[asked]) {
      throw new BundleError(
        `${bundleDir} has no ${asked} variant (it has ${Object.keys(info.variants).join(', ')}); re-import with --variants ${asked}`,
      );
    }
    const available = Object.keys(info.variants) as Variant[];
    if (available.length === 0) throw new BundleError(`${bundleDir}: model.json lists no variants`);
    // With `auto`, the provider decides the variant: int8 on the CPU, fp16 on a GPU, else fp32.
    let variant: Variant = asked === 'auto' ? available[0]! : asked;
    const { session, provider, threads } = await createSession(
      (candidate) => {
        if (asked === 'auto') {
          const preferred: Variant[] =
            candidate === 'cpu' ? ['int8', 'fp32', 'fp16'] : ['fp16', 'fp32', 'int8'];
          variant = preferred.find((v) => info.variants[v]) ?? variant;
        }
        return join(bundleDir, info.variants[variant]!.file);
      },
      { ...options, logger },
    );
    logger.info('encoder loaded', { fingerprint: info.fingerprint, variant, provider });
    return new Encoder(info, tokenizer, session, provider, variant, threads);
  }

  /** Embedding dimensions. */
  get dims(): number {
    return this.info.dims;
  }

  /** Tokenizes texts with the bundle's settings, without truncation. */
  tokenize(texts: readonly string[]): Promise<TokenizedText[]> {
    return this.tokenizer.encodeBatch(texts);
  }

  /** Tokenizes and embeds texts, batching by token budget. */
  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<EmbedResult> {
    const tokenized = await this.tokenize(texts);
    return this.embedIds(
      tokenized.map((t) => t.ids),
      options,
    );
  }

  /** Embeds already tokenized sequences (each with [CLS] … [SEP]), batching by token budget. */
  async embedIds(sequences: readonly number[][], options: EmbedOptions = {}): Promise<EmbedResult> {
    const maxLength = this.info.maxLength;
    const truncated: number[] = [];
    const ids = sequences.map((seq, i) => {
      if (seq.length <= maxLength) return seq;
      if ((options.onOverflow ?? 'error') === 'error')
        throw new SequenceTooLongError(i, seq.length, maxLength);
      truncated.push(i);
      return [...seq.slice(0, maxLength - 1), seq[seq.length - 1]!];
    });
    const tokenBudget = options.tokenBudget ?? (this.provider === 'cpu' ? 4096 : 32768);
    const batches = planBatches(
      ids.map((s) => s.length),
      {
        tokenBudget,
        maxBatchSize: options.maxBatchSize ?? 256,
        batchOverheadTokens: options.batchOverheadTokens ?? (this.provider === 'cpu' ? 8 : 2048),
      },
    );
    const embeddings: Float32Array[] = new Array(ids.length);
    let usefulTokens = 0;
    let computedTokens = 0;
    for (const batch of batches) {
      const out = await this.forward(batch.indices.map((i) => ids[i]!));
      batch.indices.forEach((i, k) => {
        embeddings[i] = out.embeddings[k]!;
        usefulTokens += ids[i]!.length;
      });
      computedTokens += batch.indices.length * batch.paddedLength;
    }
    return {
      embeddings,
      truncated,
      stats: { sequences: ids.length, batches: batches.length, usefulTokens, computedTokens },
    };
  }

  /**
   * Runs one batch as given: pads to the longest sequence with [PAD] and mask 0.
   * @param hiddenStates also return the final hidden states (for tests and analysis). Default false.
   */
  async forward(batch: readonly (readonly number[])[], hiddenStates = false): Promise<ForwardOutput> {
    const { inputIds, attentionMask, rows, width } = padBatch(batch, this.tokenizer.padId);
    const feeds = {
      [ONNX_IO.inputIds]: new ort.Tensor('int64', inputIds, [rows, width]),
      [ONNX_IO.attentionMask]: new ort.Tensor('int64', attentionMask, [rows, width]),
    };
    const fetches = hiddenStates ? [ONNX_IO.embedding, ONNX_IO.lastHiddenState] : [ONNX_IO.embedding];
    const result = await this.session.run(feeds, fetches);
    const dims = this.info.dims;
    const flat = result[ONNX_IO.embedding]!.data as Float32Array;
    const embeddings = Array.from({ length: rows }, (_, r) => flat.slice(r * dims, (r + 1) * dims));
    if (!hiddenStates) return { embeddings };
    const hidden = result[ONNX_IO.lastHiddenState]!.data as Float32Array;
    return {
      embeddings,
      hiddenStates: Array.from({ length: rows }, (_, r) =>
        hidden.slice(r * width * dims, (r + 1) * width * dims),
      ),
    };
  }

  /** Releases the native session. */
  async close(): Promise<void> {
    await this.session.release();
  }
}
