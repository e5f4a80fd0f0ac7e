import { rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { seededUniform } from '@cohort/encoder';
import {
  buildSegment,
  buildSegments,
  type ChunkMeta,
  exactSearch,
  type OpenSegment,
  openSegment,
  SEGMENT_DEFAULTS,
  SEGMENT_FILES,
  type SegmentHit,
} from '@cohort/index';
import { printTable, quantile, round } from './stats.ts';

const WORK = fileURLToPath(new URL('../.work/index/', import.meta.url));
const DIMS = 768;
const CLUSTERS = 200;
/** Per-dimension noise: its norm (≈ 0.03 × √768 ≈ 0.83) is comparable to the centre's, so clusters overlap. */
const NOISE = 0.03;
const QUERIES = 200;
const K = 10;
const PASSES = 3;
const WORKERS = 2;
const EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256];
const FINGERPRINT = 'bench-synthetic';

const uniform = seededUniform;

/** Seeded standard normal (Box–Muller). */
function gaussian(seed: number): () => number {
  const u = uniform(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const v = spare;
      spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(1 - u()));
    const a = 2 * Math.PI * u();
    spare = r * Math.sin(a);
    return r * Math.cos(a);
  };
}

function normalizeRow(data: Float32Array, o: number): void {
  let s = 0;
  for (let d = 0; d < DIMS; d++) s += data[o + d]! * data[o + d]!;
  const inv = 1 / Math.sqrt(s);
  for (let d = 0; d < DIMS; d++) data[o + d]! *= inv;
}

/** n unit vectors: a random one of 200 unit cluster centres plus Gaussian noise, normalized. */
function clustered(n: number, centres: Float32Array, seed: number): Float32Array {
  const g = gaussian(seed);
  const pick = uniform(seed ^ 0x9e3779b9);
  const data = new Float32Array(n * DIMS);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(pick() * CLUSTERS) * DIMS;
    const o = i * DIMS;
    for (let d = 0; d < DIMS; d++) data[o + d] = centres[c + d]! + NOISE * g();
    normalizeRow(data, o);
  }
  return data;
}

function chunksFor(n: number, from = 0): ChunkMeta[] {
  return Array.from({ length: n }, (_, i) => ({
    noteId: `note-${from + i}`,
    patientId: `patient-${(from + i) % 5000}`,
    section: 'hospital_course',
    start: 0,
    end: 512,
    tokens: 128,
    assertions: [],
    flags: [],
  }));
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of Object.values(SEGMENT_FILES)) total += (await stat(join(dir, f))).size;
  return total;
}

/** Queries per second of `pass` (all held-out queries, one after the other): the median of 3 passes. */
function timedPasses(pass: () => void): number {
  const ms: number[] = [];
  for (let r = 0; r < PASSES; r++) {
    const t0 = performance.now();
    pass();
    ms.push(performance.now() - t0);
  }
  return QUERIES / (quantile(ms, 0.5) / 1000);
}

/** The usearch module, when a build of it loads on this Node; undefined otherwise. */
type USearch = typeof import('usearch');
function loadUsearch(): USearch | undefined {
  try {
    return createRequire(import.meta.url)('usearch') as USearch;
  } catch {
    return undefined;
  }
}

/**
 * Index benchmark on synthetic clustered 768-d unit vectors (real ClinicalBERT vectors are not
 * available here): recall@10 against brute force, single-thread QPS at the ef reaching recall 0.95
 * and 0.99, the parallel build (`buildSegments`, 2 workers) against the plain single-threaded build
 * (`buildSegment`) on the same subset, load throughput of `openSegment` (hash checks included),
 * bytes per vector, and `usearch` as a peer when it runs on this Node.
 */
export async function runIndexBench(): Promise<void> {
  const log = (m: string) => process.stderr.write(`[bench index] ${m}\n`);
  const n = Number(process.env['BENCH_INDEX_N'] ?? 100_000);
  // 20,000: large enough that a worker's start and the file writes are a small part of the build.
  const subset = Math.min(n, Number(process.env['BENCH_INDEX_PLAIN_N'] ?? 20_000));
  await rm(WORK, { recursive: true, force: true });
  // Other work on the machine skews every figure here: the run reports the load it shared the cores with.
  const loadBefore = loadavg()[0]!;

  log(`generating ${n} + ${QUERIES} synthetic clustered ${DIMS}-d vectors (${CLUSTERS} centres)`);
  const g = gaussian(7);
  const centres = new Float32Array(CLUSTERS * DIMS);
  for (let i = 0; i < centres.length; i++) centres[i] = g();
  for (let c = 0; c < CLUSTERS; c++) normalizeRow(centres, c * DIMS);
  const data = clustered(n, centres, 11);
  const queries = clustered(QUERIES, centres, 13);
  const chunks = chunksFor(n);
  const query = (q: number) => queries.subarray(q * DIMS, (q + 1) * DIMS);

  log(`build: plain single-threaded buildSegment vs buildSegments (${WORKERS} workers) on ${subset} vectors`);
  const subData = data.subarray(0, subset * DIMS);
  const subChunks = chunks.slice(0, subset);
  let t0 = performance.now();
  await buildSegment(
    { vectors: subData, chunks: subChunks },
    { dir: join(WORK, 'plain'), dims: DIMS, modelFingerprint: FINGERPRINT },
  );
  const plainVps = subset / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  await buildSegments(
    { vectors: subData, chunks: subChunks },
    { dir: join(WORK, 'parallel-subset'), dims: DIMS, modelFingerprint: FINGERPRINT, workers: WORKERS },
  );
  const parallelSubsetVps = subset / ((performance.now() - t0) / 1000);
  await rm(join(WORK, 'plain'), { recursive: true, force: true });
  await rm(join(WORK, 'parallel-subset'), { recursive: true, force: true });

  log(`build: buildSegments (${WORKERS} workers) on all ${n} vectors`);
  t0 = performance.now();
  const descriptors = await buildSegments(
    { vectors: data, chunks },
    { dir: join(WORK, 'full'), dims: DIMS, modelFingerprint: FINGERPRINT, workers: WORKERS },
  );
  const buildVps = n / ((performance.now() - t0) / 1000);
  const dirs = descriptors.map((_, i) => join(WORK, 'full', String(i)));
  let segmentBytes = 0;
  for (const dir of dirs) segmentBytes += await dirBytes(dir);

  // All segments at once, as IndexReader opens them: the sha256 checks run on the hashing workers.
  log(
    'load: openSegment of every segment at once (sizes, sha256 of every file, graph header, then hnswlib) × 3',
  );
  const loadMs: number[] = [];
  let segments: OpenSegment[] = [];
  for (let r = 0; r < 3; r++) {
    segments = [];
    t0 = performance.now();
    segments = await Promise.all(dirs.map((dir, i) => openSegment(dir, { id: descriptors[i]!.id })));
    loadMs.push(performance.now() - t0);
  }
  const loadGbPerS = segmentBytes / 1e9 / (quantile(loadMs, 0.5) / 1000);

  log(`ground truth: brute force top-${K} of ${QUERIES} held-out queries`);
  const truth = Array.from(
    { length: QUERIES },
    (_, q) => new Set(exactSearch(data, DIMS, query(q), K).map((h) => h.chunkIndex)),
  );
  // Segment i holds rows [offsets[i], offsets[i] + count).
  const offsets = descriptors.map((_, i) => descriptors.slice(0, i).reduce((s, d) => s + d.count, 0));
  const searchAll = (q: Float32Array, ef: number): number[] => {
    const hits: (SegmentHit & { row: number })[] = [];
    for (let s = 0; s < segments.length; s++) {
      for (const h of segments[s]!.search(q, K, { ef })) hits.push({ ...h, row: offsets[s]! + h.chunkIndex });
    }
    return hits
      .sort((a, b) => b.score - a.score || a.row - b.row)
      .slice(0, K)
      .map((h) => h.row);
  };
  const recallOf = (q: number, rows: readonly number[]) =>
    rows.reduce((s, r) => s + (truth[q]!.has(r) ? 1 : 0), 0) / K;

  log(`search: ef scan ${EFS.join(', ')} (and the default ${SEGMENT_DEFAULTS.ef}), sequential on one thread`);
  const scan: { ef: number; recall: number; qps: number }[] = [];
  for (const ef of [...EFS, SEGMENT_DEFAULTS.ef].sort((a, b) => a - b)) {
    for (let q = 0; q < 20; q++) searchAll(query(q), ef); // warm-up
    let results: number[][] = [];
    const qps = timedPasses(() => {
      results = [];
      for (let q = 0; q < QUERIES; q++) results.push(searchAll(query(q), ef));
    });
    const recall = results.reduce((s, rows, q) => s + recallOf(q, rows), 0) / QUERIES;
    scan.push({ ef, recall, qps });
  }
  const at = (target: number) => scan.find((s) => s.recall >= target);
  const at095 = at(0.95);
  const at099 = at(0.99);
  const atDefault = scan.find((s) => s.ef === SEGMENT_DEFAULTS.ef)!;

  // Peer: usearch, one index over all n vectors (M=16, efConstruction=200, inner product).
  const usearch = loadUsearch();
  let peer: { scan: { ef: number; recall: number; qps: number }[]; buildVps: number } | undefined;
  if (usearch) {
    log(`peer: usearch on all ${n} vectors (${WORKERS} threads to build, 1 to search)`);
    const config = {
      dimensions: DIMS,
      metric: usearch.MetricKind.IP,
      quantization: usearch.ScalarKind.F32,
      connectivity: SEGMENT_DEFAULTS.M,
      expansion_add: SEGMENT_DEFAULTS.efConstruction,
      multi: false,
    };
    const built = new usearch.Index({ ...config, expansion_search: 64 });
    const keys = new BigUint64Array(n);
    for (let i = 0; i < n; i++) keys[i] = BigInt(i);
    t0 = performance.now();
    built.add(keys, data, WORKERS);
    const peerBuildVps = n / ((performance.now() - t0) / 1000);
    const path = join(WORK, 'usearch.index');
    built.save(path);
    const peerScan: { ef: number; recall: number; qps: number }[] = [];
    for (const ef of EFS) {
      const index = new usearch.Index({ ...config, expansion_search: ef });
      index.view(path);
      const search = (q: number) => Array.from(index.search(query(q), K, 1).keys, Number);
      for (let q = 0; q < 20; q++) search(q);
      let results: number[][] = [];
      const qps = timedPasses(() => {
        results = [];
        for (let q = 0; q < QUERIES; q++) results.push(search(q));
      });
      const recall = results.reduce((s, rows, q) => s + recallOf(q, rows), 0) / QUERIES;
      peerScan.push({ ef, recall, qps });
    }
    peer = { scan: peerScan, buildVps: peerBuildVps };
  }
  const peerAt095 = peer?.scan.find((s) => s.recall >= 0.95);

  const loadAfter = loadavg()[0]!;
  process.stdout.write(
    `index benchmark: ${n} synthetic clustered ${DIMS}-d unit vectors (${CLUSTERS} Gaussian centres on the unit sphere, ` +
      `noise σ=${NOISE}/dim, normalized); real ClinicalBERT vectors are not available here.\n` +
      `cohort: ${descriptors.length} segments from buildSegments (${WORKERS} workers, M=${SEGMENT_DEFAULTS.M}, ` +
      `efConstruction=${SEGMENT_DEFAULTS.efConstruction}), searched one after the other and merged; ` +
      `${QUERIES} held-out queries, recall@${K} against brute force.\n` +
      `${availableParallelism()} cores; 1-minute load average ${round(loadBefore, 2)} at the start, ` +
      `${round(loadAfter, 2)} at the end (above 0 means other work shared the cores).\n\n`,
  );
  const peerRow = (ef: number) => peer?.scan.find((s) => s.ef === ef);
  printTable(
    ['ef', `cohort recall@${K}`, 'cohort QPS (1 thread)', `usearch recall@${K}`, 'usearch QPS (1 thread)'],
    scan.map((s) => [
      s.ef,
      round(s.recall, 3),
      Math.round(s.qps),
      peerRow(s.ef) ? round(peerRow(s.ef)!.recall, 3) : '-',
      peerRow(s.ef) ? Math.round(peerRow(s.ef)!.qps) : '-',
    ]),
  );
  process.stdout.write('\n');
  const describeAt = (s: typeof at095) =>
    s ? `${Math.round(s.qps)} QPS at ef=${s.ef} (recall ${round(s.recall, 3)})` : 'not reached';
  printTable(
    ['measure', 'value'],
    [
      [`recall@${K} at the default ef=${SEGMENT_DEFAULTS.ef}`, round(atDefault.recall, 3)],
      ['QPS at recall ≥ 0.95', describeAt(at095)],
      ['QPS at recall ≥ 0.99', describeAt(at099)],
      [`build: buildSegments, ${WORKERS} workers, all ${n} vectors`, `${Math.round(buildVps)} vectors/s`],
      [
        `build on the same ${subset}-vector subset: buildSegments (${WORKERS} workers) vs plain buildSegment (main thread)`,
        `${Math.round(parallelSubsetVps)} vs ${Math.round(plainVps)} vectors/s = ${round(parallelSubsetVps / plainVps)}×`,
      ],
      [
        `load: openSegment of ${descriptors.length} segments at once (${round(segmentBytes / 1e6, 1)} MB, sha256 checked), median of 3`,
        `${round(quantile(loadMs, 0.5))} ms = ${round(loadGbPerS, 3)} GB/s`,
      ],
      ['bytes per vector (graph + vectors + chunks + segment.json)', round(segmentBytes / n, 1)],
      [
        'usearch (npm) peer',
        peer
          ? `${describeAt(peerAt095)} at 0.95; build ${Math.round(peer.buildVps)} vectors/s (${WORKERS} threads, one index)`
          : `usearch: not available (its native addon did not load on Node ${process.versions.node}; npm install -w bench usearch@2.25.3 and build it)`,
      ],
    ],
  );
  process.stdout.write(
    `${JSON.stringify({
      bench: 'index',
      recall_at_10: round(atDefault.recall, 4),
      qps_at_095: at095 ? Math.round(at095.qps) : null,
      qps_at_099: at099 ? Math.round(at099.qps) : null,
      build_vps: Math.round(buildVps),
      build_vs_plain: round(parallelSubsetVps / plainVps, 3),
      load_gb_per_s: round(loadGbPerS, 3),
      bytes_per_vector: round(segmentBytes / n, 1),
      usearch_qps_at_095: peerAt095 ? Math.round(peerAt095.qps) : null,
      n,
      distribution: 'synthetic clustered',
      load_average: round(Math.max(loadBefore, loadAfter), 2),
    })}\n`,
  );
}
