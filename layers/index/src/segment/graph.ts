/**
 * The HNSW graph file (`graph.hnsw`), built with hnswlib-node.
 *
 * Space `ip`: segment vectors are L2-normalized, so the inner product is the cosine similarity, and
 * `ip` (distance = 1 − dot) skips the per-insert and per-query normalization that hnswlib-node's
 * `cosine` space would redo on vectors that are already unit length. Score = 1 − distance.
 *
 * hnswlib-node's `addPoint` is single-threaded and blocks the event loop; {@link buildGraphInWorker}
 * runs the same build on a worker thread so several graphs can be built at once.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import hnswlib from 'hnswlib-node';

const { HierarchicalNSW } = hnswlib;

/** Build parameters of one graph. */
export interface GraphParams {
  readonly dims: number;
  readonly M: number;
  readonly efConstruction: number;
  readonly seed: number;
}

/** Builds the graph of `count` unit vectors (labels = row indices) on this thread and writes it to `path`. */
export async function buildGraph(
  data: Float32Array,
  count: number,
  params: GraphParams,
  path: string,
): Promise<void> {
  const { dims } = params;
  const index = new HierarchicalNSW('ip', dims);
  index.initIndex(count, params.M, params.efConstruction, params.seed);
  const row: number[] = new Array(dims);
  for (let i = 0; i < count; i++) {
    const o = i * dims;
    for (let d = 0; d < dims; d++) row[d] = data[o + d]!;
    index.addPoint(row, i);
  }
  await index.writeIndex(path);
}

// The worker is plain CommonJS evaluated from a string, so it runs the same whether this layer is
// loaded from TypeScript source (tsx, vitest) or from compiled JavaScript; it needs only the addon.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { HierarchicalNSW } = require(workerData.addon);
(async () => {
  const { data, count, dims, M, efConstruction, seed, path } = workerData;
  const index = new HierarchicalNSW('ip', dims);
  index.initIndex(count, M, efConstruction, seed);
  const row = new Array(dims);
  for (let i = 0; i < count; i++) {
    const o = i * dims;
    for (let d = 0; d < dims; d++) row[d] = data[o + d];
    index.addPoint(row, i);
  }
  await index.writeIndex(path);
  parentPort.postMessage('done');
})().catch((err) => { throw err; });
`;

let addonPath: string | undefined;

/**
 * Builds the graph on a new worker thread. `data` is copied into the worker (its buffer is not
 * transferred) unless it is backed by a SharedArrayBuffer, as `buildSegments` prepares it.
 */
export function buildGraphInWorker(
  data: Float32Array,
  count: number,
  params: GraphParams,
  path: string,
): Promise<void> {
  addonPath ??= createRequire(import.meta.url).resolve('hnswlib-node');
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { addon: addonPath, data, count, ...params, path },
    });
    let done = false;
    worker.once('message', () => {
      done = true;
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (done) resolve();
      else reject(new Error(`segment graph worker exited with code ${code} before finishing ${path}`));
    });
  });
}

/** The header fields of an hnswlib graph file that a loader can check against `segment.json`. */
export interface GraphHeader {
  readonly maxElements: number;
  readonly count: number;
  /** Bytes of one vector in the level-0 block: dims × 4 for float32 spaces. */
  readonly dataBytes: number;
  readonly sizeDataPerElement: number;
  readonly M: number;
  readonly efConstruction: number;
}

/** Bytes of the fixed header that hnswlib's `saveIndex` writes (size_t fields are 8 bytes on 64-bit hosts). */
export const GRAPH_HEADER_BYTES = 96;

/**
 * Parses the fixed header of an hnswlib `HierarchicalNSW` file: offsetLevel0, maxElements,
 * curElementCount, sizeDataPerElement, labelOffset, offsetData (u64 each), maxLevel (i32),
 * enterpoint (u32), maxM, maxM0, M (u64), mult (f64), efConstruction (u64); then the level-0 block
 * (count × sizeDataPerElement bytes) and each element's upper-level links.
 */
export function parseGraphHeader(header: Uint8Array): GraphHeader {
  const v = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const u64 = (o: number): number => Number(v.getBigUint64(o, true));
  const labelOffset = u64(32);
  const offsetData = u64(40);
  return {
    maxElements: u64(8),
    count: u64(16),
    sizeDataPerElement: u64(24),
    dataBytes: labelOffset - offsetData,
    M: u64(72),
    efConstruction: u64(88),
  };
}
