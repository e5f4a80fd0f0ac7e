/**
 * Opening a query service from locations: the model bundle, the index (directory or S3), the audit
 * store, and how the segments are held (in this process, local worker shards, or shard functions).
 * Used by the Lambda handler (from the environment), `cohort search` and `cohort serve`.
 */

import { availableParallelism } from 'node:os';
import { LambdaClient } from '@aws-sdk/client-lambda';
import {
  Encoder,
  type EncoderLogger,
  readBundleInfo,
  type TokenIdEncoder,
  WorkerEncoder,
} from '@cohort/encoder';
import { IndexReader, ModelMismatchError, NoteTextStore, type ObjectStore, openStore } from '@cohort/index';
import { type AuditSink, openAuditSink } from './audit.ts';
import { IndexUnavailableError } from './errors.ts';
import { BatchingEmbedder } from './query-encoder.ts';
import { type ChunkSearcher, LocalSearcher, ShardedSearcher } from './searcher.ts';
import { QueryService } from './service.ts';
import { LambdaShardClient, startLocalShards } from './shards.ts';

/** How the segments are held. */
export type ShardPlan =
  | { readonly kind: 'none' }
  | { readonly kind: 'workers'; readonly count: number }
  | { readonly kind: 'lambda'; readonly functions: readonly string[]; readonly client?: LambdaClient };

/**
 * Model workers of a local server (`cohort serve`, `cohort start`): `auto`, see
 * {@link modelWorkerThreads}.
 */
export const LOCAL_SERVER_MODEL_WORKERS = 'auto';

/**
 * The intra-op threads of each model worker of an `auto` pool on `cores` cores, in start order:
 * one worker with every core, which takes a lone query (on 2 cores: 11 ms against 17 ms on one
 * thread), then min(cores, 4) workers that share the cores for batches under load, which the
 * query embedder runs side by side within the cores (see `BatchingEmbedder`). On 2 cores under 20
 * clients, two one-thread sessions embed a query in 13–14 core-ms against 15–18 for one two-thread
 * session, whose threads wait for each other whenever the server thread takes a core (see
 * functions/query/README.md, Speed and memory). Each session holds its own copy of the model
 * (about 320 MB for int8 BERT-base): 1 + min(cores, 4) of them. One core: a single one-thread worker.
 */
export function modelWorkerThreads(cores: number): number[] {
  if (!Number.isInteger(cores) || cores < 1)
    throw new RangeError(`cores must be a positive integer, got ${cores}`);
  if (cores === 1) return [1];
  return [cores, ...shareCores(cores, Math.min(cores, 4))];
}

/**
 * Nice value of the threads of the model workers that run batches side by side (those with fewer
 * threads than the cores) under a server's own thread (Linux; see `WorkerEncoderOptions.niceness`):
 * the lowest priority there is, so that batches run on whatever CPU the server thread (parsing,
 * searching, answering, dispatching the next batch) leaves. At the same priority they shared the 2
 * cores with it, and each answer waited longer for the searches of the others. A worker with every
 * core keeps the server's priority: it runs alone, mostly a lone query, and any thread that took
 * one of its cores would hold up the whole forward pass at every operator. Medians of six
 * alternating 20-second runs of 20 clients on 2 cores: 116.4 searches/s at p99 239 ms with 19,
 * 114.9/s at 243 ms with 10, 108.1/s at 265 ms with 0 (see functions/query/README.md, Speed and
 * memory).
 */
export const MODEL_WORKER_NICENESS = 19;

/** `cores` shared among `workers` sessions as evenly as whole threads allow (at least one each). */
function shareCores(cores: number, workers: number): number[] {
  return Array.from({ length: workers }, (_, i) =>
    Math.max(1, Math.floor(cores / workers) + (i < cores % workers ? 1 : 0)),
  );
}
/** Options of {@link openQueryService}. */
export interface OpenQueryServiceOptions {
  /** Model bundle directory. */
  readonly modelDir: string;
  /** The index: a directory or `s3://bucket/prefix`. */
  readonly indexUri: string;
  /** An already open index store (tests: S3 with a custom endpoint). Default `openStore(indexUri)`. */
  readonly store?: ObjectStore;
  /** Options of `openStore` for an `s3://` index, passed to worker shards too (plain data). */
  readonly s3?: Record<string, unknown>;
  /** Audit records: a sink, or a location (`s3://…`: one object per record; a directory: a `LocalAuditLog`). */
  readonly audit: AuditSink | string;
  /** Local segment cache directory. */
  readonly cacheDir: string;
  /** Default `{ kind: 'none' }`. */
  readonly shards?: ShardPlan;
  readonly refreshIntervalMs?: number;
  readonly maxInFlight?: number;
  /**
   * ONNX Runtime intra-op threads of each model session. Default: all cores in this thread (a lone
   * query then runs on every core: on 2 cores about 11 ms against 17 ms with one thread); with a
   * number of workers, the cores shared among them (the query embedder runs workers side by side
   * only while their threads fit in the cores). Not with `auto`, which chooses per worker.
   */
  readonly threads?: number;
  /**
   * Worker threads that each run a session of the query model. 0 (default) runs it in this thread,
   * which suits a Lambda container (one request at a time); a server answering concurrent clients
   * wants workers, so that reading requests and searching go on while the model runs: `auto`
   * starts the pool of {@link modelWorkerThreads}, a number that many workers of `threads` each.
   * @throws RangeError (from {@link openQueryService}) for `auto` with `threads`
   */
  readonly modelWorkers?: number | 'auto';
  /**
   * Nice value of the threads of model workers narrower than the cores (Linux), so that this
   * thread's request handling comes first. Default {@link MODEL_WORKER_NICENESS}; 0 leaves them at
   * this thread's priority.
   */
  readonly modelWorkerNiceness?: number;
  /** Most queries embedded in one batch (see `BatchingEmbedderOptions.maxBatch`). Default 8. */
  readonly modelBatch?: number;
  /** Query vectors cached. Default 256. */
  readonly embeddingCache?: number;
  readonly logger?: EncoderLogger;
}

/**
 * Loads the model (int8 on the CPU) and the index once; returns a ready service.
 * @throws IndexUnavailableError when the index holds another model or cannot be opened
 */
export async function openQueryService(options: OpenQueryServiceOptions): Promise<QueryService> {
  // The fingerprint comes from model.json (cheap), so the model and the segments load at once:
  // a cold start costs the longer of the two, not their sum.
  const { fingerprint } = await readBundleInfo(options.modelDir);
  const store = options.store ?? openStore(options.indexUri, options.s3 ? { s3: options.s3 } : {});
  const plan = options.shards ?? { kind: 'none' };
  const workers = options.modelWorkers ?? 0;
  if (workers === 'auto' && options.threads !== undefined) {
    throw new RangeError(
      'model threads are chosen per worker with modelWorkers auto: give a number of workers too',
    );
  }
  const cores = availableParallelism();
  // Threads of each worker in start order (none: the model runs in this thread).
  const workerThreads =
    workers === 'auto'
      ? modelWorkerThreads(cores)
      : options.threads !== undefined
        ? Array.from({ length: workers }, () => options.threads!)
        : shareCores(cores, workers);
  // The encoder's default spinning (during runs only) is what a query wants: threads spinning
  // after a run would slow the search that follows (about 2× on 2 cores), threads that never spin
  // cost a lone query about 2 ms (see functions/query/README.md, Speed and memory).
  const sessionOptions = (threads: number | undefined) => ({
    provider: 'cpu' as const,
    ...(threads === undefined ? {} : { threads }),
  });
  const workerOptions = (threads: number | undefined) => ({
    ...sessionOptions(threads),
    niceness:
      threads !== undefined && threads < cores ? (options.modelWorkerNiceness ?? MODEL_WORKER_NICENESS) : 0,
  });
  // A server with several model workers starts one before it answers and the others after its
  // first batch: starting them all at once costs about 0.8 s of cold start per extra worker on 2 cores.
  const loadModel: Promise<TokenIdEncoder> =
    workerThreads.length === 0
      ? Encoder.load(options.modelDir, {
          ...sessionOptions(options.threads),
          ...(options.logger ? { logger: options.logger } : {}),
        })
      : WorkerEncoder.start(options.modelDir, workerOptions(workerThreads[0]));
  const openIndex = (async (): Promise<ChunkSearcher> => {
    if (plan.kind === 'workers') {
      return startLocalShards({
        indexUri: options.indexUri,
        count: plan.count,
        cacheRoot: options.cacheDir,
        modelFingerprint: fingerprint,
        ...(options.s3 ? { s3: options.s3 } : {}),
      });
    }
    if (plan.kind === 'lambda') {
      const client = plan.client ?? new LambdaClient({});
      return new ShardedSearcher(plan.functions.map((f) => new LambdaShardClient(client, f)));
    }
    const reader = await IndexReader.open(store, {
      cacheDir: options.cacheDir,
      modelFingerprint: fingerprint,
    });
    return new LocalSearcher(reader, store);
  })();
  const [model, index] = await Promise.allSettled([loadModel, openIndex]);
  if (model.status === 'rejected' || index.status === 'rejected') {
    if (model.status === 'fulfilled') await model.value.close();
    if (index.status === 'fulfilled') await index.value.close();
    if (model.status === 'rejected') throw model.reason;
    const error = (index as PromiseRejectedResult).reason as Error;
    if (error instanceof ModelMismatchError) throw new IndexUnavailableError(error.message, { cause: error });
    throw new IndexUnavailableError(`the index cannot be opened: ${error.message}`, { cause: error });
  }
  const searcher = index.value;
  const embedder = new BatchingEmbedder(model.value, {
    ...(options.modelBatch === undefined ? {} : { maxBatch: options.modelBatch }),
    ...(options.embeddingCache === undefined ? {} : { cacheSize: options.embeddingCache }),
  });
  if (workerThreads.length > 1) {
    void embedder.firstBatch.then(() =>
      addWorkerEncoders(
        embedder,
        options.modelDir,
        workerThreads.slice(1).map((threads) => workerOptions(threads)),
        options.logger,
      ),
    );
  }
  const audit = typeof options.audit === 'string' ? openAuditSink(options.audit) : options.audit;
  return new QueryService({
    embedder,
    searcher,
    texts: new NoteTextStore(store),
    audit,
    ...(options.refreshIntervalMs === undefined ? {} : { refreshIntervalMs: options.refreshIntervalMs }),
    ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
    ...(options.logger ? { logger: options.logger } : {}),
  });
}

/**
 * Starts more worker encoders (one per entry of `options`) one after the other and adds each to
 * the pool. One that cannot start is logged and the pool serves with those it has (it already has one).
 */
async function addWorkerEncoders(
  embedder: BatchingEmbedder,
  modelDir: string,
  options: readonly Parameters<typeof WorkerEncoder.start>[1][],
  logger: EncoderLogger | undefined,
): Promise<void> {
  for (const workerOptions of options) {
    try {
      if (!(await embedder.add(await WorkerEncoder.start(modelDir, workerOptions)))) return;
    } catch (error) {
      logger?.warn('a model worker could not start; serving with fewer', {
        workers: embedder.encoders.length,
        error: (error as Error).name,
      });
      return;
    }
  }
}
