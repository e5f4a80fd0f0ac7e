import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededUniform } from '../../../../layers/encoder/src/fixture.ts';
import {
  buildSegment,
  buildSegments,
  type ChunkMeta,
  exactSearch,
  InvalidVectorError,
  type OpenSegment,
  openSegment,
  type SegmentDescriptor,
} from '../../../../layers/index/src/segment/index.ts';

const rng = seededUniform;

/** n unit vectors around `clusters` random centres (synthetic; real ClinicalBERT vectors are not available). */
function clustered(n: number, dims: number, clusters: number, seed: number, spread = 0.35): Float32Array {
  const r = rng(seed);
  const normal = (): number => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const centres = Array.from({ length: clusters }, () => Float32Array.from({ length: dims }, normal));
  const out = new Float32Array(n * dims);
  for (let i = 0; i < n; i++) {
    const c = centres[Math.floor(r() * clusters)]!;
    let sum = 0;
    for (let d = 0; d < dims; d++) {
      const x = c[d]! / Math.sqrt(dims) + (spread * normal()) / Math.sqrt(dims);
      out[i * dims + d] = x;
      sum += x * x;
    }
    const norm = Math.sqrt(sum);
    for (let d = 0; d < dims; d++) out[i * dims + d] = out[i * dims + d]! / norm;
  }
  return out;
}

function chunksFor(n: number): ChunkMeta[] {
  return Array.from({ length: n }, (_, i) => ({
    noteId: `note-${Math.floor(i / 4)}`,
    patientId: `patient-${i % 17}`,
    section: i % 3 === 0 ? 'hospital_course' : 'labs',
    start: i,
    end: i + 10,
    tokens: 12,
    assertions: [],
    flags: [],
  }));
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'segment-test-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('buildSegment → openSegment', () => {
  const dims = 48;
  const n = 3000;
  const vectors = clustered(n, dims, 30, 1);
  const queries = clustered(100, dims, 30, 2);
  let descriptor: SegmentDescriptor;
  let segment: OpenSegment;

  beforeAll(async () => {
    const dir = join(root, 'main');
    descriptor = await buildSegment(
      { vectors, chunks: chunksFor(n) },
      { dir, dims, modelFingerprint: 'fp-test' },
    );
    segment = await openSegment(dir, { modelFingerprint: 'fp-test', dims, id: descriptor.id });
  });

  it('writes a descriptor with the parameters, the counts and each file checksum', () => {
    expect(descriptor).toMatchObject({
      format: 'cohort-segment/1',
      modelFingerprint: 'fp-test',
      dims,
      metric: 'ip',
      M: 16,
      efConstruction: 200,
      count: n,
      normalized: 0,
    });
    expect(descriptor.id).toMatch(/^[0-9a-f]{64}$/);
    expect(descriptor.files['vectors.f32'].bytes).toBe(n * dims * 4);
    expect(Object.keys(descriptor.files).sort()).toEqual(['chunks.bin', 'graph.hnsw', 'vectors.f32']);
    expect(segment.count).toBe(n);
    expect(segment.descriptor).toEqual(descriptor);
  });

  it('is content-addressed: the same input builds the same id', async () => {
    const again = await buildSegment(
      { vectors, chunks: chunksFor(n) },
      { dir: join(root, 'again'), dims, modelFingerprint: 'fp-test' },
    );
    expect(again.id).toBe(descriptor.id);
  });

  it('finds every vector as its own top-1 with score ≈ 1', () => {
    for (let i = 0; i < n; i += 7) {
      const [top] = segment.search(segment.vector(i), 1);
      expect(top!.chunkIndex).toBe(i);
      expect(top!.score).toBeCloseTo(1, 5);
    }
  });

  it('reaches recall@10 ≥ 0.95 against exact search', () => {
    let found = 0;
    for (let q = 0; q < 100; q++) {
      const query = queries.subarray(q * dims, (q + 1) * dims);
      const exact = new Set(segment.search(query, 10, { exact: true }).map((h) => h.chunkIndex));
      for (const h of segment.search(query, 10)) if (exact.has(h.chunkIndex)) found++;
    }
    expect(found / 1000).toBeGreaterThanOrEqual(0.95);
  });

  it('returns hits best first with cosine scores equal to the stored vectors’ inner products', () => {
    const query = queries.subarray(0, dims);
    const hits = segment.search(query, 20, { ef: 200 });
    expect(hits).toHaveLength(20);
    for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
    for (const h of hits) {
      const v = segment.vector(h.chunkIndex);
      let dot = 0;
      for (let d = 0; d < dims; d++) dot += v[d]! * query[d]!;
      expect(h.score).toBeCloseTo(dot, 6);
    }
  });

  it('scores graph hits with the graph’s own inner products on request, and scoreOf as search does', () => {
    const query = queries.subarray(0, dims);
    const exact = segment.search(query, 20, { ef: 200 });
    const graph = segment.search(query, 20, { ef: 200, graphScores: true });
    expect(graph.map((h) => h.chunkIndex).sort()).toEqual(exact.map((h) => h.chunkIndex).sort());
    for (const h of graph) {
      const e = exact.find((x) => x.chunkIndex === h.chunkIndex)!;
      // float32 sums in another order: close, not always equal.
      expect(h.score).toBeCloseTo(e.score, 5);
      expect(segment.scoreOf(query, h.chunkIndex)).toBe(e.score);
    }
    for (let i = 1; i < graph.length; i++)
      expect(graph[i - 1]!.score).toBeGreaterThanOrEqual(graph[i]!.score);
  });

  it('exact search equals a plain brute force', () => {
    const query = queries.subarray(dims, 2 * dims);
    const brute = Array.from({ length: n }, (_, i) => {
      const v = vectors.subarray(i * dims, (i + 1) * dims);
      let dot = 0;
      for (let d = 0; d < dims; d++) dot += v[d]! * query[d]!;
      return { chunkIndex: i, score: dot };
    })
      .sort((a, b) => b.score - a.score || a.chunkIndex - b.chunkIndex)
      .slice(0, 25);
    const hits = segment.search(query, 25, { exact: true });
    expect(hits.map((h) => h.chunkIndex)).toEqual(brute.map((h) => h.chunkIndex));
    for (const [i, h] of hits.entries()) expect(h.score).toBeCloseTo(brute[i]!.score, 6);
  });

  it('honours the filter on both paths and returns fewer hits when few pass', () => {
    const query = queries.subarray(2 * dims, 3 * dims);
    const patient = segment.chunks.stringId('patient-3')!;
    const col = segment.chunks.column('patientId');
    const filter = (i: number): boolean => col[i] === patient;
    const hnsw = segment.search(query, 10, { filter });
    const exact = segment.search(query, 10, { filter, exact: true });
    expect(hnsw).toHaveLength(10);
    for (const h of [...hnsw, ...exact]) expect(segment.chunk(h.chunkIndex).patientId).toBe('patient-3');
    expect(
      hnsw.filter((h) => exact.some((e) => e.chunkIndex === h.chunkIndex)).length,
    ).toBeGreaterThanOrEqual(9);
    const only = segment.search(query, 10, { filter: (i) => i === 42 || i === 7 });
    expect(only.map((h) => h.chunkIndex).sort((a, b) => a - b)).toEqual([7, 42]);
  });

  it('rethrows an exception from the filter after the native search', () => {
    expect(() =>
      segment.search(queries.subarray(0, dims), 5, {
        filter: () => {
          throw new Error('boom');
        },
      }),
    ).toThrow('boom');
  });

  it('clamps k to the count and validates the query', () => {
    expect(() => segment.search(new Float32Array(dims - 1), 1)).toThrow(/dimensions/);
    const nan = new Float32Array(dims);
    nan[3] = Number.NaN;
    expect(() => segment.search(nan, 1)).toThrow(/component 3/);
    expect(() => segment.search(new Float32Array(dims), 1)).toThrow(/zero/);
    expect(() => segment.search(queries.subarray(0, dims), 0)).toThrow(/k must/);
  });

  it('returns the chunk metadata by index', () => {
    expect(segment.chunk(9)).toEqual(chunksFor(n)[9]);
    expect(() => segment.chunk(n)).toThrow(RangeError);
  });
});

describe('buildSegment validation', () => {
  const dims = 8;
  const good = (): Float32Array[] =>
    Array.from({ length: 4 }, (_, i) => Float32Array.from({ length: dims }, (_, d) => (d === i ? 1 : 0)));
  const build = (vectors: Float32Array | Float32Array[], n = 4) =>
    buildSegment(
      { vectors, chunks: chunksFor(n) },
      { dir: join(root, 'invalid'), dims, modelFingerprint: 'fp' },
    );

  it('names the chunk of a NaN, an infinite, a zero or a wrong-length vector', async () => {
    const cases: [number, (v: Float32Array[]) => void, RegExp][] = [
      [2, (v) => (v[2]![5] = Number.NaN), /chunk 2.*component 5 is NaN/],
      [1, (v) => (v[1]![0] = Number.POSITIVE_INFINITY), /chunk 1.*Infinity/],
      [3, (v) => v[3]!.fill(0), /chunk 3.*norm 0/],
      [2, (v) => (v[2] = new Float32Array(dims + 1)), /chunk 2.*9 dimensions, expected 8/],
    ];
    for (const [index, spoil, message] of cases) {
      const v = good();
      spoil(v);
      const err = await build(v).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidVectorError);
      expect((err as InvalidVectorError).index).toBe(index);
      expect((err as Error).message).toMatch(message);
    }
    const flat = new Float32Array(4 * dims);
    flat[dims * 3 + 1] = Number.NaN;
    flat.fill(0.5, 0, dims * 3);
    await expect(build(flat)).rejects.toThrow(/chunk 3/);
    await expect(build(new Float32Array(4 * dims - 1))).rejects.toThrow(/holds 31 floats/);
  });

  it('normalizes vectors that are not unit length and counts them', async () => {
    const v = good();
    v[0]!.fill(2);
    const d = await build(v);
    expect(d.normalized).toBe(1);
    const seg = await openSegment(join(root, 'invalid'));
    let sum = 0;
    for (const x of seg.vector(0)) sum += x * x;
    expect(sum).toBeCloseTo(1, 6);
    expect(
      seg.search(
        Float32Array.from({ length: dims }, () => 3),
        1,
      )[0],
    ).toMatchObject({ chunkIndex: 0 });
  });
});

describe('768-d segment', () => {
  it('builds, opens and searches ClinicalBERT-sized vectors', async () => {
    const dims = 768;
    const n = 300;
    const vectors = clustered(n, dims, 10, 5);
    const dir = join(root, 'd768');
    await buildSegment(
      { vectors, chunks: chunksFor(n) },
      { dir, dims, modelFingerprint: 'fp', M: 12, efConstruction: 100 },
    );
    const seg = await openSegment(dir, { dims: 768 });
    for (const i of [0, 123, 299]) expect(seg.search(seg.vector(i), 1)[0]!.chunkIndex).toBe(i);
    const q = vectors.subarray(5 * dims, 6 * dims);
    expect(seg.search(q, 5, { exact: true })).toEqual(exactSearch(vectors, dims, q, 5));
  });
});

describe('buildSegments', () => {
  it('splits the input into segments built on worker threads, in input order', async () => {
    const dims = 32;
    const n = 2500;
    const vectors = clustered(n, dims, 20, 9);
    const chunks = chunksFor(n);
    const dir = join(root, 'parallel');
    const descriptors = await buildSegments(
      { vectors, chunks },
      { dir, dims, modelFingerprint: 'fp', workers: 2, segmentSize: 1000 },
    );
    expect(descriptors.map((d) => d.count)).toEqual([1000, 1000, 500]);
    for (const [p, d] of descriptors.entries()) {
      const seg = await openSegment(join(dir, String(p)), { id: d.id });
      for (let i = 0; i < d.count; i += 50) {
        expect(seg.search(seg.vector(i), 1)[0]!.chunkIndex).toBe(i);
        expect(seg.chunk(i)).toEqual(chunks[p * 1000 + i]);
      }
    }
  });

  it('names the global chunk index of a bad vector before any worker starts', async () => {
    const dims = 8;
    const vectors = clustered(30, dims, 2, 3);
    vectors[25 * dims] = Number.NaN;
    await expect(
      buildSegments(
        { vectors, chunks: chunksFor(30) },
        { dir: join(root, 'bad'), dims, modelFingerprint: 'fp', segmentSize: 10 },
      ),
    ).rejects.toThrow(/chunk 25/);
  });
});
