/**
 * Opening a segment: every file is checked (size, sha256, the graph header against `segment.json`)
 * BEFORE `graph.hnsw` reaches hnswlib, which stores no checksum and can crash the process on a
 * truncated or corrupt file. Then the graph is loaded and searched.
 */
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import hnswlib from 'hnswlib-node';
import { IntegrityError } from '../errors.ts';
import { segmentId } from './build.ts';
import { SegmentIntegrityError } from './errors.ts';
import { GRAPH_HEADER_BYTES, parseGraphHeader } from './graph.ts';
import { sha256 } from './hash.ts';
import { hashFile, readFileHashed } from './hash-pool.ts';
import { ChunkTable } from './meta.ts';
import {
  type ChunkMeta,
  type ExpectedSegment,
  SEGMENT_DEFAULTS,
  SEGMENT_FILES,
  SEGMENT_FORMAT,
  type SegmentDescriptor,
  type SegmentHit,
  type SegmentSearchOptions,
} from './types.ts';
import { decodeVectors, dot, exactSearch, prepareQuery } from './vectors.ts';

const { HierarchicalNSW } = hnswlib;
type Graph = InstanceType<typeof HierarchicalNSW>;

const DATA_FILES = [SEGMENT_FILES.graph, SEGMENT_FILES.vectors, SEGMENT_FILES.chunks] as const;
const HEX64 = /^[0-9a-f]{64}$/;

function isCount(v: unknown, min = 0): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min;
}

/** Parses and checks the shape of `segment.json`; throws naming `segment.json` on any defect. */
function parseDescriptor(text: string, fail: (file: string, why: string) => never): SegmentDescriptor {
  let d: Record<string, unknown>;
  try {
    d = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    return fail(SEGMENT_FILES.descriptor, `not valid JSON (${(err as Error).message})`);
  }
  const file = SEGMENT_FILES.descriptor;
  if (typeof d !== 'object' || d === null) fail(file, 'not a JSON object');
  if (d.format !== SEGMENT_FORMAT)
    fail(file, `format ${JSON.stringify(d.format)}, expected ${SEGMENT_FORMAT}`);
  if (typeof d.id !== 'string' || !HEX64.test(d.id)) fail(file, 'missing or malformed id');
  if (typeof d.modelFingerprint !== 'string' || !d.modelFingerprint) fail(file, 'missing modelFingerprint');
  if (d.metric !== 'ip') fail(file, `metric ${JSON.stringify(d.metric)}, this reader supports 'ip'`);
  for (const [k, min] of [
    ['dims', 1],
    ['M', 2],
    ['efConstruction', 1],
    ['seed', 0],
    ['count', 1],
    ['normalized', 0],
  ] as const) {
    if (!isCount(d[k], min)) fail(file, `${k} is ${JSON.stringify(d[k])}, expected an integer ≥ ${min}`);
  }
  const files = d.files as Record<string, { bytes?: unknown; sha256?: unknown }> | undefined;
  if (typeof files !== 'object' || files === null) fail(file, 'missing files');
  for (const name of DATA_FILES) {
    const f = files![name];
    if (!f || !isCount(f.bytes) || typeof f.sha256 !== 'string' || !HEX64.test(f.sha256)) {
      fail(file, `missing or malformed entry for ${name}`);
    }
  }
  return d as unknown as SegmentDescriptor;
}

/** A segment opened from a local directory, checked and ready to search. */
export class OpenSegment {
  private constructor(
    /** The segment's `segment.json`. */
    readonly descriptor: SegmentDescriptor,
    /** The directory it was opened from. */
    readonly dir: string,
    /** The chunk metadata table (columns for fast filters). */
    readonly chunks: ChunkTable,
    private readonly vectors: Float32Array,
    private readonly graph: Graph,
  ) {}

  /** @internal used by {@link openSegment} */
  static create(d: SegmentDescriptor, dir: string, chunks: ChunkTable, vectors: Float32Array, graph: Graph) {
    return new OpenSegment(d, dir, chunks, vectors, graph);
  }

  /** Number of chunks (and vectors). */
  get count(): number {
    return this.descriptor.count;
  }

  get dims(): number {
    return this.descriptor.dims;
  }

  /** The metadata of chunk `i`. */
  chunk(i: number): ChunkMeta {
    return this.chunks.get(i);
  }

  /** The stored unit vector of chunk `i` (a view into the segment's memory: do not modify). */
  vector(i: number): Float32Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) {
      throw new RangeError(`chunk index ${i} out of range [0, ${this.count})`);
    }
    return this.vectors.subarray(i * this.dims, (i + 1) * this.dims);
  }

  /**
   * The k chunks nearest to `query` by cosine similarity, best first (fewer when fewer chunks pass
   * the filter). The query is validated (dims, finite, non-zero) and normalized if needed. The HNSW
   * path applies the filter inside hnswlib's search (filter callback); scores are recomputed exactly
   * from the stored vectors, so both paths score a chunk identically. `exact: true` is brute force.
   */
  search(query: Float32Array, k: number, options: SegmentSearchOptions = {}): SegmentHit[] {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a positive integer, got ${k}`);
    const q = prepareQuery(query, this.dims);
    const kk = Math.min(k, this.count);
    const { filter } = options;
    if (options.exact) return exactSearch(this.vectors, this.dims, q, kk, filter);
    const ef = options.ef ?? Math.max(kk, SEGMENT_DEFAULTS.ef);
    if (!Number.isInteger(ef) || ef < 1) throw new RangeError(`ef must be a positive integer, got ${ef}`);
    this.graph.setEf(Math.max(ef, kk));
    let thrown: { error: unknown } | undefined;
    // An exception must not unwind through the native search: record it and rethrow afterwards.
    const guarded = filter
      ? (label: number): boolean => {
          if (thrown) return false;
          try {
            return filter(label) === true;
          } catch (error) {
            thrown = { error };
            return false;
          }
        }
      : undefined;
    const point = Array.from(q);
    const result = guarded ? this.graph.searchKnn(point, kk, guarded) : this.graph.searchKnn(point, kk);
    if (thrown) throw thrown.error;
    // The 'ip' space's distance is 1 − inner product.
    const hits = options.graphScores
      ? result.neighbors.map((chunkIndex, i) => ({ chunkIndex, score: 1 - result.distances[i]! }))
      : result.neighbors.map((chunkIndex) => ({ chunkIndex, score: this.scoreOf(q, chunkIndex) }));
    return hits.sort((a, b) => b.score - a.score || a.chunkIndex - b.chunkIndex);
  }

  /**
   * A chunk's score for a unit-length query (as `prepareQuery` returns it), computed from the stored
   * vector exactly as {@link search} scores its hits on both paths.
   */
  scoreOf(query: Float32Array, chunkIndex: number): number {
    return dot(this.vectors, chunkIndex * this.dims, query, this.dims);
  }
}

/**
 * Opens the segment in `dir`. Reads `segment.json`, checks its shape, its content address, what the
 * caller expects (id, model fingerprint, dims, sha256 of `segment.json`), then each file's size and
 * sha256 and the graph file's header; only then hands `graph.hnsw` to hnswlib. Any failure is a
 * {@link SegmentIntegrityError} naming the segment and the file.
 */
export async function openSegment(dir: string, expected: ExpectedSegment = {}): Promise<OpenSegment> {
  let name = expected.id ?? dir;
  const fail = (file: string, why: string, cause?: unknown): never => {
    throw new SegmentIntegrityError(name, file, why, cause === undefined ? undefined : { cause });
  };
  const read = async (file: string): Promise<Buffer> => {
    try {
      return await readFile(join(dir, file));
    } catch (err) {
      return fail(file, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable', err);
    }
  };

  const descriptorBytes = await read(SEGMENT_FILES.descriptor);
  if (expected.sha256 !== undefined && sha256(descriptorBytes) !== expected.sha256) {
    fail(SEGMENT_FILES.descriptor, `sha256 ${sha256(descriptorBytes)}, expected ${expected.sha256}`);
  }
  const d = parseDescriptor(descriptorBytes.toString('utf8'), fail);
  name = d.id;
  const { id: _id, ...body } = d;
  if (segmentId(body) !== d.id) fail(SEGMENT_FILES.descriptor, 'content does not match its id (altered?)');
  if (expected.id !== undefined && d.id !== expected.id) {
    fail(SEGMENT_FILES.descriptor, `id ${d.id}, expected ${expected.id}`);
  }
  if (expected.modelFingerprint !== undefined && d.modelFingerprint !== expected.modelFingerprint) {
    fail(
      SEGMENT_FILES.descriptor,
      `built with model ${d.modelFingerprint}, expected ${expected.modelFingerprint}: re-embed or use the matching model`,
    );
  }
  if (expected.dims !== undefined && d.dims !== expected.dims) {
    fail(SEGMENT_FILES.descriptor, `dims ${d.dims}, expected ${expected.dims}`);
  }

  // Sizes first (cheap), then checksums.
  for (const file of DATA_FILES) {
    let size: number;
    try {
      size = (await stat(join(dir, file))).size;
    } catch (err) {
      return fail(file, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable', err);
    }
    if (size !== d.files[file].bytes)
      fail(file, `${size} bytes, expected ${d.files[file].bytes} (truncated?)`);
  }
  const checkHash = (file: (typeof DATA_FILES)[number], actual: string): void => {
    if (actual !== d.files[file].sha256) fail(file, `sha256 ${actual}, expected ${d.files[file].sha256}`);
  };
  const unreadable = (file: string) => (err: unknown) =>
    fail(file, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable', err);
  // Hash the graph and read-and-hash the vectors at once on the hashing workers (hash-pool.ts); the
  // small chunk table is read and hashed here meanwhile. hnswlib gets the graph only once its own
  // checks have passed, and loads it (on libuv's pool) while the vectors are still being hashed.
  const graphPath = join(dir, SEGMENT_FILES.graph);
  const vectorsJob = readFileHashed(join(dir, SEGMENT_FILES.vectors), d.files[SEGMENT_FILES.vectors].bytes);
  const graphJob = hashFile(graphPath);
  // Each job is awaited below; until then a failure must not count as unhandled.
  vectorsJob.catch(() => {});
  graphJob.catch(() => {});
  const chunkBytes = await read(SEGMENT_FILES.chunks);
  checkHash(SEGMENT_FILES.chunks, sha256(chunkBytes));
  const graphHash = await graphJob.catch(unreadable(SEGMENT_FILES.graph));
  if (graphHash.bytes !== d.files[SEGMENT_FILES.graph].bytes) fail(SEGMENT_FILES.graph, 'changed while read');
  checkHash(SEGMENT_FILES.graph, graphHash.sha256);

  // The checksum proves these are the bytes that were written; the header check proves they were
  // written for this descriptor (hnswlib stores no dims: the per-element data size stands for it).
  const header = Buffer.alloc(GRAPH_HEADER_BYTES);
  const fh = await open(graphPath, 'r');
  try {
    await fh.read(header, 0, GRAPH_HEADER_BYTES, 0);
  } finally {
    await fh.close();
  }
  if (graphHash.bytes < GRAPH_HEADER_BYTES) fail(SEGMENT_FILES.graph, 'shorter than its header');
  const h = parseGraphHeader(header);
  if (h.count !== d.count || h.maxElements < d.count)
    fail(SEGMENT_FILES.graph, `holds ${h.count} elements, expected ${d.count}`);
  if (h.dataBytes !== d.dims * 4)
    fail(SEGMENT_FILES.graph, `stores ${h.dataBytes / 4} dims, expected ${d.dims}`);
  if (h.M !== d.M || h.efConstruction !== d.efConstruction)
    fail(SEGMENT_FILES.graph, 'M or efConstruction differ');
  if (GRAPH_HEADER_BYTES + h.count * h.sizeDataPerElement + 4 * h.count > graphHash.bytes) {
    fail(SEGMENT_FILES.graph, 'shorter than its element count needs');
  }

  const graph = new HierarchicalNSW('ip', d.dims);
  const graphLoad = graph.readIndex(graphPath).then(
    () => undefined,
    (err: unknown) => ({ err }),
  );
  // Whatever fails from here on, hnswlib's read is awaited before returning: never leave it running.
  let vectorBytes: Uint8Array;
  try {
    const vectorsHash = await vectorsJob.catch(unreadable(SEGMENT_FILES.vectors));
    if (vectorsHash.bytes !== d.files[SEGMENT_FILES.vectors].bytes)
      fail(SEGMENT_FILES.vectors, 'changed while read');
    checkHash(SEGMENT_FILES.vectors, vectorsHash.sha256);
    vectorBytes = vectorsHash.data;
  } catch (err) {
    await graphLoad;
    throw err;
  }
  const loaded = await graphLoad;
  if (loaded) fail(SEGMENT_FILES.graph, 'hnswlib could not read it', loaded.err);

  let chunks: ChunkTable;
  let vectors: Float32Array;
  try {
    chunks = ChunkTable.decode(chunkBytes, SEGMENT_FILES.chunks);
    vectors = decodeVectors(vectorBytes, d.count, d.dims, SEGMENT_FILES.vectors);
  } catch (err) {
    if (err instanceof IntegrityError) {
      const [file = '', ...why] = err.message.split(': ');
      return fail(file, why.join(': '), err);
    }
    throw err;
  }
  if (chunks.count !== d.count)
    fail(SEGMENT_FILES.chunks, `holds ${chunks.count} chunks, expected ${d.count}`);

  if (graph.getCurrentCount() !== d.count) fail(SEGMENT_FILES.graph, 'element count differs after load');
  return OpenSegment.create(d, dir, chunks, vectors, graph);
}
