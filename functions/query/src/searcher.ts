/**
 * Chunk search behind one interface, so the cohort logic does not care where the segments live:
 * in this process ({@link LocalSearcher}, an `IndexReader`), or spread over shards that each hold a
 * share of the segments ({@link ShardedSearcher}, merged here). A shard is a Lambda function in
 * AWS and a worker thread locally; both speak {@link ShardSearchRequest} / {@link ShardSearchResponse}.
 */
import {
  type ChunkMeta,
  type IndexHit,
  type IndexReader,
  type IndexStats,
  type Manifest,
  ManifestStore,
  type ObjectStore,
  type SearchFilter,
} from '@cohort/index';
import { ShardError } from './errors.ts';

/** One hit, as plain data (it crosses thread and function boundaries). */
export interface ChunkHit {
  readonly segmentId: string;
  readonly chunkIndex: number;
  /** Cosine similarity, higher is closer. */
  readonly score: number;
  readonly chunk: ChunkMeta;
}

/** Options of {@link ChunkSearcher.search}. */
export interface ChunkSearchOptions {
  /** Hits wanted (the best k). */
  readonly k: number;
  readonly filter?: SearchFilter;
  /**
   * Exhaustive mode: return EVERY live, matching chunk scoring at least this, by exact search over
   * the stored vectors (k is then only the first batch size). Default: top k by HNSW.
   */
  readonly minScore?: number;
  /** HNSW candidate list size. Default max(k, 100). */
  readonly ef?: number;
}

/** What a search found. */
export interface ChunkSearchResult {
  /** Best first; ties by segment id then chunk index. */
  readonly hits: ChunkHit[];
  /** Manifest version searched (the lowest over shards, when they differ). */
  readonly manifestVersion: number;
  /** Live chunks searched over. */
  readonly chunks: number;
}

/** What {@link ChunkSearcher.status} reports. */
export interface SearcherStatus {
  readonly manifestVersion: number;
  readonly segments: number;
  readonly chunks: number;
  readonly modelFingerprint: string | null;
  readonly dims: number | null;
  /** Shards behind this searcher; 0 for one in-process index. */
  readonly shards: number;
}

/** Searches chunks of the index. */
export interface ChunkSearcher {
  search(vector: Float32Array, options: ChunkSearchOptions): Promise<ChunkSearchResult>;
  /** Picks up a newer manifest; returns whether the version changed. */
  refresh(): Promise<boolean>;
  status(): Promise<SearcherStatus>;
  close(): Promise<void>;
}

const byScore = (a: ChunkHit, b: ChunkHit): number =>
  b.score - a.score ||
  (a.segmentId < b.segmentId ? -1 : a.segmentId > b.segmentId ? 1 : 0) ||
  a.chunkIndex - b.chunkIndex;

const plain = (h: IndexHit): ChunkHit => ({
  segmentId: h.segmentId,
  chunkIndex: h.chunkIndex,
  score: h.score,
  chunk: h.chunk,
});

/** Searches the segments of one {@link IndexReader} in this process. */
export class LocalSearcher implements ChunkSearcher {
  private readonly manifests: ManifestStore | undefined;
  /** The reader's stats for the manifest it had loaded when they were counted. */
  private counted: { readonly manifest: Manifest | undefined; readonly stats: IndexStats } | undefined;

  /**
   * @param reader an open reader; {@link close} does not close it (readers hold no handles)
   * @param store the reader's store: when given, a manifest check is one listing, and the newest
   *   manifest is read only when its version differs from the loaded one
   */
  constructor(
    readonly reader: IndexReader,
    store?: ObjectStore,
  ) {
    this.manifests = store ? new ManifestStore(store) : undefined;
  }

  /**
   * The reader's stats, counted once per loaded manifest: `IndexReader.stats` walks every chunk
   * (about 6 ms at 100,000 chunks), and they change only when a refresh loads another manifest.
   */
  private stats(): IndexStats {
    const manifest = this.reader.manifest;
    if (this.counted === undefined || this.counted.manifest !== manifest) {
      this.counted = { manifest, stats: this.reader.stats() };
    }
    return this.counted.stats;
  }

  async search(vector: Float32Array, options: ChunkSearchOptions): Promise<ChunkSearchResult> {
    const stats = this.stats();
    const base = { manifestVersion: stats.manifestVersion, chunks: stats.chunks };
    if (stats.chunks === 0) return { ...base, hits: [] };
    const filter = options.filter ? { filter: options.filter } : {};
    if (options.minScore === undefined) {
      const hits = await this.reader.search(vector, {
        k: options.k,
        ...filter,
        ...(options.ef === undefined ? {} : { ef: options.ef }),
      });
      return { ...base, hits: hits.map(plain) };
    }
    // Exhaustive: exact search, growing k geometrically until the worst hit falls below the
    // threshold or every chunk was returned; the total cost stays within about 4/3 of one full scan.
    const minScore = options.minScore;
    let k = Math.min(Math.max(options.k, 1000), stats.chunks);
    for (;;) {
      const hits = await this.reader.search(vector, { k, exact: true, ...filter });
      const last = hits.at(-1);
      if (hits.length < k || last === undefined || last.score < minScore || k >= stats.chunks) {
        return { ...base, hits: hits.filter((h) => h.score >= minScore).map(plain) };
      }
      k = Math.min(k * 4, stats.chunks);
    }
  }

  async refresh(): Promise<boolean> {
    if (this.manifests) {
      const newest = (await this.manifests.versions()).at(-1) ?? 0;
      if (newest === (this.reader.manifest?.version ?? 0)) return false;
    }
    return this.reader.refresh();
  }

  async status(): Promise<SearcherStatus> {
    const s = this.stats();
    return {
      manifestVersion: s.manifestVersion,
      segments: s.segments,
      chunks: s.chunks,
      modelFingerprint: s.model.fingerprint,
      dims: this.reader.manifest?.dims ?? null,
      shards: 0,
    };
  }

  async close(): Promise<void> {}
}

/** The request a shard answers. Plain JSON (a Lambda payload), vectors as number arrays. */
export type ShardRequest =
  | {
      readonly action: 'search';
      readonly vector: readonly number[];
      readonly k: number;
      readonly filter?: SearchFilter;
      readonly minScore?: number;
      readonly ef?: number;
    }
  | { readonly action: 'status' }
  | { readonly action: 'refresh' };

/** A shard's answer to a search. */
export interface ShardSearchResponse extends ChunkSearchResult {
  readonly action: 'search';
}

/** A shard's answer to a status or refresh request. */
export interface ShardStatusResponse extends SearcherStatus {
  readonly action: 'status' | 'refresh';
  /** For refresh: whether the manifest version changed. */
  readonly changed?: boolean;
}

/** A shard's answer when it failed; the message holds no note or query text. */
export interface ShardErrorResponse {
  readonly action: 'error';
  readonly code: string;
  readonly message: string;
}

/** Any answer of a shard. */
export type ShardResponse = ShardSearchResponse | ShardStatusResponse | ShardErrorResponse;

/** A transport to one shard: a Lambda invocation in AWS, a worker thread locally. */
export interface ShardClient {
  /** For messages: a function name or `worker-2`. */
  readonly name: string;
  call(request: ShardRequest): Promise<ShardResponse>;
  close(): Promise<void>;
}

/**
 * Answers {@link ShardRequest}s with a searcher: the body of a shard, shared by the Lambda shard
 * handler and the local worker.
 */
export async function answerShardRequest(
  searcher: ChunkSearcher,
  request: ShardRequest,
): Promise<ShardResponse> {
  switch (request.action) {
    case 'search': {
      const result = await searcher.search(Float32Array.from(request.vector), {
        k: request.k,
        ...(request.filter ? { filter: request.filter } : {}),
        ...(request.minScore === undefined ? {} : { minScore: request.minScore }),
        ...(request.ef === undefined ? {} : { ef: request.ef }),
      });
      return { action: 'search', ...result };
    }
    case 'status':
      return { action: 'status', ...(await searcher.status()) };
    case 'refresh': {
      const changed = await searcher.refresh();
      return { action: 'refresh', changed, ...(await searcher.status()) };
    }
    default:
      return { action: 'error', code: 'bad_request', message: 'unknown shard action' };
  }
}

type ByAction = {
  search: ShardSearchResponse;
  status: ShardStatusResponse;
  refresh: ShardStatusResponse;
};

function expect<A extends keyof ByAction>(
  client: ShardClient,
  response: ShardResponse,
  action: A,
): ByAction[A] {
  if (response?.action === 'error') throw new ShardError(client.name, response.message);
  if (response?.action !== action) throw new ShardError(client.name, 'answered an unexpected message');
  return response as ByAction[A];
}

/**
 * Fans a search out over shards and merges their hits: each shard returns its own best k (or, in
 * exhaustive mode, every chunk above the threshold), so the merged best k are exact over the union.
 * Any shard failing fails the search (a partial cohort would be silently wrong).
 */
export class ShardedSearcher implements ChunkSearcher {
  /** @param clients one per shard; closed by {@link close} */
  constructor(readonly clients: readonly ShardClient[]) {
    if (clients.length === 0) throw new RangeError('a sharded searcher needs at least one shard');
  }

  async search(vector: Float32Array, options: ChunkSearchOptions): Promise<ChunkSearchResult> {
    const request: ShardRequest = {
      action: 'search',
      vector: Array.from(vector),
      k: options.k,
      ...(options.filter ? { filter: options.filter } : {}),
      ...(options.minScore === undefined ? {} : { minScore: options.minScore }),
      ...(options.ef === undefined ? {} : { ef: options.ef }),
    };
    const answers = await Promise.all(
      this.clients.map(async (c) => expect(c, await c.call(request), 'search')),
    );
    const hits = answers.flatMap((a) => a.hits).sort(byScore);
    return {
      hits: options.minScore === undefined ? hits.slice(0, options.k) : hits,
      manifestVersion: Math.min(...answers.map((a) => a.manifestVersion)),
      chunks: answers.reduce((sum, a) => sum + a.chunks, 0),
    };
  }

  async refresh(): Promise<boolean> {
    const answers = await Promise.all(
      this.clients.map(async (c) => expect(c, await c.call({ action: 'refresh' }), 'refresh')),
    );
    return answers.some((a) => a.changed === true);
  }

  async status(): Promise<SearcherStatus> {
    const answers = await Promise.all(
      this.clients.map(async (c) => expect(c, await c.call({ action: 'status' }), 'status')),
    );
    return {
      manifestVersion: Math.min(...answers.map((a) => a.manifestVersion)),
      segments: answers.reduce((sum, a) => sum + a.segments, 0),
      chunks: answers.reduce((sum, a) => sum + a.chunks, 0),
      modelFingerprint: answers.find((a) => a.modelFingerprint !== null)?.modelFingerprint ?? null,
      dims: answers.find((a) => a.dims !== null)?.dims ?? null,
      shards: this.clients.length,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
