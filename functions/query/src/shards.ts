/**
 * Shards: an index too large for one function's memory is split by segment over N shards. Shard i
 * of N holds the segments whose id (a sha256, so uniformly spread) falls in bucket i, and opens an
 * ordinary `IndexReader` over a view of the store whose manifests list only those segments
 * ({@link ShardStore}); tombstones apply as usual. The caller merges (see `ShardedSearcher`).
 *
 * Transports: {@link WorkerShardClient} runs a shard in a worker thread of this process (local
 * mode, tests, benchmarks); {@link LambdaShardClient} invokes a shard function (the CDK app wires
 * one function per shard with SHARD_INDEX and SHARD_COUNT, and names them in the API's
 * SHARD_FUNCTIONS).
 */
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { InvokeCommand, type InvokeCommandOutput, type LambdaClient } from '@aws-sdk/client-lambda';
import {
  type GetOptions,
  type GetToFileOptions,
  IndexReader,
  type ListedObject,
  type ObjectInfo,
  type ObjectStore,
  openStore,
  type PutOptions,
} from '@cohort/index';
import { ShardError } from './errors.ts';
import {
  type ChunkSearcher,
  LocalSearcher,
  type ShardClient,
  ShardedSearcher,
  type ShardRequest,
  type ShardResponse,
} from './searcher.ts';

/** The shard (0 … count − 1) that holds a segment: its id's first 32 bits modulo the count. */
export function shardOf(segmentId: string, count: number): number {
  const head = Number.parseInt(segmentId.slice(0, 8), 16);
  if (!Number.isFinite(head)) throw new RangeError(`segment id ${JSON.stringify(segmentId)} is not hex`);
  return head % count;
}

const MANIFEST_KEY = /(^|\/)manifests\/\d{10}\.json$/;

/**
 * A read view of an index store for shard `shard` of `count`: manifests read through it list only
 * the segments of that shard; every other object passes through. Writes are refused (a shard
 * never commits).
 */
export class ShardStore implements ObjectStore {
  readonly location: string;
  /** The inner store's, when it has local files: the view filters manifests only, not segment files. */
  readonly pathOf?: (key: string) => string;

  constructor(
    private readonly inner: ObjectStore,
    readonly shard: number,
    readonly count: number,
  ) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`shard count must be ≥ 1, got ${count}`);
    if (!Number.isInteger(shard) || shard < 0 || shard >= count) {
      throw new RangeError(`shard index must be in [0, ${count}), got ${shard}`);
    }
    this.location = `${inner.location} (shard ${shard + 1} of ${count})`;
    const innerPath = inner.pathOf;
    if (innerPath) this.pathOf = (key) => innerPath.call(inner, key);
  }

  async get(key: string, options?: GetOptions): Promise<Uint8Array> {
    const bytes = await this.inner.get(key, options);
    if (options?.range || !MANIFEST_KEY.test(key)) return bytes;
    const manifest = JSON.parse(new TextDecoder().decode(bytes)) as { segments?: { id: string }[] };
    if (!Array.isArray(manifest.segments)) return bytes;
    manifest.segments = manifest.segments.filter((s) => shardOf(s.id, this.count) === this.shard);
    return new TextEncoder().encode(JSON.stringify(manifest));
  }

  getStream(key: string, options?: GetOptions): Promise<Readable> {
    return this.inner.getStream(key, options);
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }

  async put(_key: string, _body: Uint8Array | string, _options?: PutOptions): Promise<{ etag: string }> {
    throw new TypeError('a shard view of the index is read-only');
  }

  async putFile(_key: string, _path: string, _options?: PutOptions): Promise<{ etag: string }> {
    throw new TypeError('a shard view of the index is read-only');
  }

  getToFile(key: string, localPath: string, options?: GetToFileOptions): Promise<ObjectInfo> {
    return this.inner.getToFile(key, localPath, options);
  }

  async delete(_key: string): Promise<void> {
    throw new TypeError('a shard view of the index is read-only');
  }

  list(prefix: string): AsyncIterable<ListedObject> {
    return this.inner.list(prefix);
  }
}

/** Where a shard finds its share of the index. */
export interface ShardOptions {
  /** The whole index: a directory or `s3://bucket/prefix`. */
  readonly indexUri: string;
  /** This shard, 0-based. */
  readonly shard: number;
  /** Shards in all. */
  readonly count: number;
  /** Local segment cache (e.g. under /tmp); one per shard. */
  readonly cacheDir: string;
  /** The query model's fingerprint; an index of another model is refused. Default: not checked. */
  readonly modelFingerprint?: string;
  /** A store to use instead of opening `indexUri` (tests pass an S3 store with a custom client). */
  readonly store?: ObjectStore;
}

/** Opens the searcher of one shard: a reader over its {@link ShardStore} view. */
export async function openShardSearcher(options: ShardOptions): Promise<ChunkSearcher> {
  const inner = options.store ?? openStore(options.indexUri);
  const store = options.count === 1 ? inner : new ShardStore(inner, options.shard, options.count);
  const reader = await IndexReader.open(store, {
    cacheDir: options.cacheDir,
    ...(options.modelFingerprint === undefined ? {} : { modelFingerprint: options.modelFingerprint }),
  });
  return new LocalSearcher(reader, store);
}

/** The worker's entry, beside this file (`.ts` from sources, `.js` once bundled). */
function workerUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./shard-worker.${ext}`, import.meta.url);
}

/** The URL of tsx's register API, resolved from this package (so it works from any working directory). */
function tsxApi(): string {
  // require.resolve picks the CommonJS build; the ES module build sits beside it.
  return pathToFileURL(
    createRequire(import.meta.url)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href;
}

/** What the parent tells a shard worker at start. */
export interface ShardWorkerData {
  readonly indexUri: string;
  readonly shard: number;
  readonly count: number;
  readonly cacheDir: string;
  readonly modelFingerprint?: string;
  /** Options of `openStore` for an `s3://` index (endpoint, credentials, forcePathStyle). */
  readonly s3?: Record<string, unknown>;
}

/**
 * A shard in a worker thread of this process. Requests are numbered; the worker answers each with
 * its number. A worker that dies fails its pending requests and every later one.
 */
export class WorkerShardClient implements ShardClient {
  readonly name: string;
  private readonly worker: Worker;
  private next = 0;
  private readonly pending = new Map<
    number,
    { resolve: (r: ShardResponse) => void; reject: (e: Error) => void }
  >();
  private dead: Error | undefined;
  private readonly ready: Promise<void>;

  constructor(data: ShardWorkerData) {
    this.name = `worker-${data.shard}`;
    const url = workerUrl();
    // From TypeScript sources (CLI, tests) the worker first registers the tsx loader, then loads
    // its entry; a bundled build loads the .js entry directly.
    this.worker = url.pathname.endsWith('.ts')
      ? new Worker(
          `import(${JSON.stringify(tsxApi())}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`,
          { eval: true, workerData: data },
        )
      : new Worker(url, { workerData: data });
    let started: () => void = () => {};
    let failed: (e: Error) => void = () => {};
    this.ready = new Promise<void>((resolve, reject) => {
      started = resolve;
      failed = reject;
    });
    this.ready.catch(() => {});
    this.worker.on(
      'message',
      (m: { id?: number; response?: ShardResponse; ready?: boolean; error?: string }) => {
        if (m.ready) return started();
        if (m.error !== undefined && m.id === undefined) return failed(new ShardError(this.name, m.error));
        const p = m.id === undefined ? undefined : this.pending.get(m.id);
        if (!p || m.response === undefined) return;
        this.pending.delete(m.id!);
        p.resolve(m.response);
      },
    );
    const die = (error: Error) => {
      this.dead ??= new ShardError(this.name, 'the shard worker stopped', { cause: error });
      failed(this.dead);
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`exit code ${code}`)));
  }

  /** Resolves once the shard opened its segments; rejects with why it could not. */
  whenReady(): Promise<void> {
    return this.ready;
  }

  async call(request: ShardRequest): Promise<ShardResponse> {
    await this.ready;
    if (this.dead) throw this.dead;
    const id = this.next++;
    return new Promise<ShardResponse>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, request });
    });
  }

  async close(): Promise<void> {
    this.dead ??= new ShardError(this.name, 'closed');
    await this.worker.terminate();
  }
}

/** Options of {@link startLocalShards}. */
export interface LocalShardsOptions {
  readonly indexUri: string;
  /** Worker threads, each holding a share of the segments. */
  readonly count: number;
  /** Parent of the shards' caches (`<cacheRoot>/shard-<i>`). */
  readonly cacheRoot: string;
  readonly modelFingerprint?: string;
  /** Options of `openStore` for an `s3://` index (plain data: it is copied into each worker). */
  readonly s3?: Record<string, unknown>;
}

/** Starts `count` worker shards and returns a searcher that fans out over them once all opened. */
export async function startLocalShards(options: LocalShardsOptions): Promise<ShardedSearcher> {
  const clients = Array.from(
    { length: options.count },
    (_, shard) =>
      new WorkerShardClient({
        indexUri: options.indexUri,
        shard,
        count: options.count,
        cacheDir: `${options.cacheRoot}/shard-${shard}`,
        ...(options.modelFingerprint === undefined ? {} : { modelFingerprint: options.modelFingerprint }),
        ...(options.s3 ? { s3: options.s3 } : {}),
      }),
  );
  try {
    await Promise.all(clients.map((c) => c.whenReady()));
  } catch (error) {
    await Promise.all(clients.map((c) => c.close()));
    throw error;
  }
  return new ShardedSearcher(clients);
}

/** A shard deployed as a Lambda function (see `handlers/shard.ts`), invoked synchronously. */
export class LambdaShardClient implements ShardClient {
  /**
   * @param lambda an SDK client (the API function's role must allow lambda:InvokeFunction on it)
   * @param name the function name or ARN
   */
  constructor(
    private readonly lambda: LambdaClient,
    readonly name: string,
  ) {}

  async call(request: ShardRequest): Promise<ShardResponse> {
    let out: InvokeCommandOutput;
    try {
      out = await this.lambda.send(
        new InvokeCommand({
          FunctionName: this.name,
          Payload: new TextEncoder().encode(JSON.stringify(request)),
        }),
      );
    } catch (cause) {
      throw new ShardError(this.name, 'invocation failed', { cause });
    }
    if (out.FunctionError) throw new ShardError(this.name, `function error (${out.FunctionError})`);
    try {
      return JSON.parse(new TextDecoder().decode(out.Payload)) as ShardResponse;
    } catch (cause) {
      throw new ShardError(this.name, 'answered something that is not JSON', { cause });
    }
  }

  async close(): Promise<void> {}
}
