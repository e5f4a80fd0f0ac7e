import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { seededUniform } from '../../../layers/encoder/src/fixture.ts';
import { IntegrityError } from '../../../layers/index/src/errors.ts';
import {
  type IndexHit,
  IndexReader,
  ModelMismatchError,
  type SearchFilter,
} from '../../../layers/index/src/reader.ts';
import { SegmentIntegrityError } from '../../../layers/index/src/segment/errors.ts';
import type { OpenSegment } from '../../../layers/index/src/segment/load.ts';
import type { AssertionKind, ChunkAssertion, ChunkMeta } from '../../../layers/index/src/segment/types.ts';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { S3Store } from '../../../layers/index/src/store/s3.ts';
import { IndexWriter, segmentKey } from '../../../layers/index/src/writer.ts';
import { localIndex } from '../../helpers/index.ts';
import { startConditionalS3Server } from '../../helpers/s3-conditional-server.ts';

const dims = 32;
const model = 'sha256:model-a';
const clusters = 8;
const perCluster = 50;
const n = clusters * perCluster; // 400 chunks, 5 per note, 10 notes per cluster
let root: string;
let dirs = 0;

const rng = seededUniform;

function unit(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const norm = Math.sqrt(s);
  return v.map((x) => x / norm);
}

/** Clustered random unit vectors: 8 random centres, each point = centre + small noise, normalized. */
function clustered(seed: number): Float32Array[] {
  const r = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const centres = Array.from({ length: clusters }, () => unit(Float32Array.from({ length: dims }, gauss)));
  return Array.from({ length: n }, (_, i) => {
    const c = centres[Math.floor(i / perCluster)]!;
    return unit(c.map((x) => x + 0.12 * gauss()));
  });
}

/** Assertions by chunk index: whole, 30 %, 60 % (family), two disjoint 30 % scopes, none. */
function assertionsOf(i: number, start: number): ChunkAssertion[] {
  const at = (kind: AssertionKind, from: number, to: number) => ({
    kind,
    start: start + from,
    end: start + to,
  });
  switch (i % 5) {
    case 0:
      return [at('negated', 0, 100)];
    case 1:
      return [at('negated', 0, 30)];
    case 2:
      return [at('family', 20, 80)];
    case 3:
      return [at('negated', 0, 30), at('negated', 60, 90), at('historical', 10, 20)];
    default:
      return [];
  }
}

const sections = ['hpi', 'hospital_course', 'medications'];

function chunksOf(prefix = ''): ChunkMeta[] {
  return Array.from({ length: n }, (_, i) => {
    const note = Math.floor(i / 5);
    const start = (i % 5) * 100;
    return {
      noteId: `${prefix}n${note}`,
      patientId: `p${note % 4}`,
      section: sections[i % 3]!,
      start,
      end: start + 100,
      tokens: 40,
      assertions: assertionsOf(i, start),
      flags: [],
      noteType: note % 2 === 0 ? 'radiology' : 'discharge',
      noteDate: `2020-01-${String(1 + (note % 28)).padStart(2, '0')}${note % 3 === 0 ? 'T12:00:00Z' : ''}`,
    };
  });
}

const vectors = () => clustered(42);

async function fresh() {
  const cacheDir = join(root, `cache-${dirs}`);
  const { dir, store, writer } = localIndex(root, `store-${dirs++}`, {
    dims,
    modelFingerprint: model,
    M: 16,
    efConstruction: 100,
  });
  const first = await writer.addSegment({ vectors: vectors(), chunks: chunksOf() }, { changeId: 'job-1' });
  const reader = await IndexReader.open(store, { cacheDir, modelFingerprint: model });
  return { dir, cacheDir, store, writer, reader, segmentId: first.descriptor!.id };
}

const key = (h: IndexHit) => `${h.chunk.noteId}@${h.chunk.start}`;

let shared: Awaited<ReturnType<typeof fresh>>;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'index-reader-'));
  shared = await fresh();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('IndexReader: round trip', () => {
  it('finds each stored vector as its own top-1', async () => {
    const vs = vectors();
    for (let i = 0; i < n; i++) {
      const [top] = await shared.reader.search(vs[i]!, { k: 1 });
      expect(top?.chunkIndex).toBe(i);
      expect(top?.segmentId).toBe(shared.segmentId);
      expect(top?.score).toBeCloseTo(1, 5);
    }
    const [hit] = await shared.reader.search(vs[7]!, { k: 1 });
    expect(hit!.chunk).toEqual(chunksOf()[7]);
  });

  it('returns k hits merged best first', async () => {
    const hits = await shared.reader.search(vectors()[0]!, { k: 25 });
    expect(hits).toHaveLength(25);
    for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
  });

  it('exact search agrees with HNSW top-1 on easy data', async () => {
    const r = rng(7);
    const vs = vectors();
    for (let q = 0; q < 50; q++) {
      const base = vs[Math.floor(r() * n)]!;
      const query = unit(base.map((x) => x + 0.05 * (r() - 0.5)));
      const [approx] = await shared.reader.search(query, { k: 1 });
      const [exact] = await shared.reader.search(query, { k: 1, exact: true });
      expect(approx!.chunkIndex).toBe(exact!.chunkIndex);
      expect(approx!.score).toBeCloseTo(exact!.score, 6);
    }
  });

  it('reports stats', () => {
    const s = shared.reader.stats();
    expect(s).toMatchObject({
      manifestVersion: 1,
      segments: 1,
      chunks: n,
      notes: n / 5,
      patients: 4,
      tombstones: 0,
      model: { fingerprint: model },
    });
    expect(s.bytes).toBeGreaterThan(n * dims * 4);
  });

  it('checks the query', async () => {
    await expect(shared.reader.search(new Float32Array(dims + 1))).rejects.toThrow(RangeError);
    await expect(shared.reader.search(vectors()[0]!, { k: 0 })).rejects.toThrow(RangeError);
  });

  it('an empty index opens and returns nothing', async () => {
    const store = new LocalDirectoryStore(join(root, 'empty'));
    const reader = await IndexReader.open(store, { cacheDir: join(root, 'empty-cache') });
    expect(await reader.search(new Float32Array(dims).fill(1))).toEqual([]);
    expect(reader.stats()).toMatchObject({ manifestVersion: 0, segments: 0, chunks: 0 });
  });
});

describe('IndexReader: updates and deletes', () => {
  it('shows a second segment after refresh()', async () => {
    const { writer, reader } = await fresh();
    const more = clustered(99).slice(0, 20);
    const added = await writer.addSegment(
      { vectors: more, chunks: chunksOf('x').slice(0, 20) },
      { changeId: 'job-2' },
    );
    expect((await reader.search(more[3]!, { k: 1 }))[0]!.segmentId).not.toBe(added.descriptor!.id);
    expect(await reader.refresh()).toBe(true);
    expect(await reader.refresh()).toBe(false);
    const [top] = await reader.search(more[3]!, { k: 1 });
    expect(top).toMatchObject({ segmentId: added.descriptor!.id, chunkIndex: 3 });
    expect(reader.stats()).toMatchObject({ manifestVersion: 2, segments: 2, chunks: n + 20 });
  });

  it('scores the hits merged from several segments exactly, as the exact path does', async () => {
    const { writer, reader } = await fresh();
    // The second segment repeats the first 50 vectors under other notes: equal scores in both.
    await writer.addSegment(
      { vectors: vectors().slice(0, 50), chunks: chunksOf('y').slice(0, 50) },
      { changeId: 'job-2' },
    );
    await reader.refresh();
    const query = vectors()[7]!;
    const graph = await reader.search(query, { k: 30, ef: 400 });
    const exact = await reader.search(query, { k: 30, exact: true });
    expect(new Set(graph.map((h) => h.segmentId)).size).toBe(2);
    expect(graph.map((h) => [h.segmentId, h.chunkIndex, h.score])).toEqual(
      exact.map((h) => [h.segmentId, h.chunkIndex, h.score]),
    );
  });

  it('deleteNotes removes a note from results, and k hits still come back when most neighbours are dead', async () => {
    const { writer, reader } = await fresh();
    // Cluster 0 holds notes n0..n9; delete nine of them: 45 of the query's 50 nearest are dead.
    const dead = Array.from({ length: 9 }, (_, i) => `n${i}`);
    await writer.deleteNotes(dead, 'delete-1');
    await reader.refresh();
    const query = vectors()[0]!;
    for (const exact of [false, true]) {
      const hits = await reader.search(query, { k: 10, exact });
      expect(hits).toHaveLength(10);
      expect(hits.filter((h) => dead.includes(h.chunk.noteId))).toEqual([]);
      expect(hits.slice(0, 5).map((h) => h.chunk.noteId)).toEqual(Array(5).fill('n9'));
    }
    expect(reader.stats()).toMatchObject({ chunks: n - 45, notes: n / 5 - 9, tombstones: 9 });
  });

  it('a re-ingested note returns only its new chunks', async () => {
    const { writer, reader, segmentId } = await fresh();
    const vs = vectors();
    // n20 = chunks 100..104; the new version has the same vectors, so old and new compete.
    const newVectors = vs.slice(100, 105);
    const newChunks = chunksOf()
      .slice(100, 105)
      .map((c) => ({ ...c, tokens: 41 }));
    const r = await writer.addSegment(
      { vectors: newVectors, chunks: newChunks },
      { changeId: 'reingest-n20', tombstoneNotes: ['n20'] },
    );
    await reader.refresh();
    // Cluster 2 now holds 45 old live chunks and the 5 new ones: all of them are the nearest 50.
    for (const exact of [false, true]) {
      const hits = await reader.search(vs[100]!, { k: 50, exact });
      expect(hits).toHaveLength(50);
      const n20 = hits.filter((h) => h.chunk.noteId === 'n20');
      expect(n20).toHaveLength(5);
      for (const h of n20) {
        expect(h.segmentId).toBe(r.descriptor!.id);
        expect(h.chunk.tokens).toBe(41);
      }
      expect(hits.filter((h) => h.segmentId === segmentId)).toHaveLength(45); // other notes live on
    }
    const everything = await reader.search(vs[100]!, { k: n + 5, exact: true });
    expect(everything).toHaveLength(n);
    expect(everything.filter((h) => h.chunk.noteId === 'n20' && h.segmentId === segmentId)).toEqual([]);
    expect(reader.stats()).toMatchObject({ chunks: n, notes: n / 5 });
  });
});

/** The test's own reading of the filter semantics, applied by brute force. */
function passes(c: ChunkMeta, f: SearchFilter): boolean {
  if (f.patientIds && !f.patientIds.includes(c.patientId)) return false;
  if (f.noteTypes && (c.noteType === undefined || !f.noteTypes.includes(c.noteType))) return false;
  const day = c.noteDate?.slice(0, 10);
  if (f.dateFrom && (day === undefined || day < f.dateFrom)) return false;
  if (f.dateTo && (day === undefined || day > f.dateTo)) return false;
  if (f.sectionsInclude && !f.sectionsInclude.includes(c.section)) return false;
  if (f.sectionsExclude?.includes(c.section)) return false;
  for (const kind of f.excludeAssertions ?? []) {
    const covered = new Set<number>();
    for (const a of c.assertions) {
      if (a.kind !== kind) continue;
      for (let x = Math.max(a.start, c.start); x < Math.min(a.end, c.end); x++) covered.add(x);
    }
    if (covered.size * 2 >= c.end - c.start) return false;
  }
  return true;
}

function bruteForce(query: Float32Array, f: SearchFilter, k: number): string[] {
  const vs = vectors();
  const cs = chunksOf();
  return cs
    .map((c, i) => ({ c, score: vs[i]!.reduce((s, x, d) => s + x * query[d]!, 0) }))
    .filter(({ c }) => passes(c, f))
    .sort((a, b) => b.score - a.score)
    .slice(0, k)
    .map(({ c }) => `${c.noteId}@${c.start}`);
}

describe('IndexReader: filters', () => {
  const cases: [string, SearchFilter][] = [
    ['patient', { patientIds: ['p1'] }],
    ['two patients', { patientIds: ['p0', 'p3'] }],
    ['note type', { noteTypes: ['discharge'] }],
    ['date from', { dateFrom: '2020-01-20' }],
    ['date to (inclusive of times that day)', { dateTo: '2020-01-04' }],
    ['date range', { dateFrom: '2020-01-05', dateTo: '2020-01-09' }],
    ['sections include', { sectionsInclude: ['medications'] }],
    ['sections exclude', { sectionsExclude: ['hpi', 'hospital_course'] }],
    ['negated assertions', { excludeAssertions: ['negated'] }],
    ['family and historical assertions', { excludeAssertions: ['family', 'historical'] }],
    ['combined', { patientIds: ['p2'], noteTypes: ['radiology'], sectionsExclude: ['hpi'] }],
  ];
  const queries = [0, 60, 333].map((i) => vectors()[i]!);

  it.each(cases)('%s', async (_name, filter) => {
    for (const query of queries) {
      const expected = bruteForce(query, filter, 10);
      expect(expected.length).toBe(10);
      const exact = await shared.reader.search(query, { k: 10, filter, exact: true });
      expect(exact.map(key)).toEqual(expected);
      const approx = await shared.reader.search(query, { k: 10, filter, ef: 200 });
      expect(approx).toHaveLength(10);
      for (const h of approx) expect(passes(h.chunk, filter)).toBe(true);
      expect(approx.map(key)).toEqual(expected);
    }
  });

  it('the assertion rule: whole and ≥ 50 % (overlaps merged) excluded, 30 % kept', async () => {
    const hits = await shared.reader.search(vectors()[0]!, {
      k: n,
      exact: true,
      filter: { excludeAssertions: ['negated'] },
    });
    const kinds = new Set(hits.map((h) => h.chunkIndex % 5));
    expect([...kinds].sort()).toEqual([1, 2, 4]);
    expect(hits).toHaveLength((n / 5) * 3);
  });

  it('gives the graph no filter callback when the assertion filter excludes no chunk of the segment', async () => {
    // The fixture has negated chunks but no hypothetical ones.
    const loaded = (shared.reader as unknown as { loaded: Map<string, { segment: OpenSegment }> }).loaded;
    const spies = [...loaded.values()].map((l) => vi.spyOn(l.segment, 'search'));
    try {
      const query = vectors()[0]!;
      const plain = await shared.reader.search(query, { k: 10 });
      const none = await shared.reader.search(query, {
        k: 10,
        filter: { excludeAssertions: ['hypothetical'] },
      });
      expect(none).toEqual(plain);
      const some = await shared.reader.search(query, {
        k: 10,
        filter: { excludeAssertions: ['hypothetical', 'negated'] },
      });
      expect(some.map(key)).toEqual(bruteForce(query, { excludeAssertions: ['negated'] }, 10));
      // Per segment: no callback without a filter, none for the hypothetical filter, one for negated.
      for (const spy of spies) {
        expect(spy.mock.calls.map(([, , options]) => typeof options?.filter)).toEqual([
          'undefined',
          'undefined',
          'function',
        ]);
      }
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it('a filter nothing matches returns nothing', async () => {
    expect(await shared.reader.search(vectors()[0]!, { filter: { patientIds: ['nobody'] } })).toEqual([]);
    expect(await shared.reader.search(vectors()[0]!, { filter: { dateFrom: '2030-01-01' } })).toEqual([]);
  });
});

describe('IndexReader: model and integrity', () => {
  it('refuses a query model with another fingerprint', async () => {
    const err = await IndexReader.open(shared.store, {
      cacheDir: join(root, 'other-cache'),
      modelFingerprint: 'sha256:model-b',
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelMismatchError);
    expect((err as Error).message).toContain('sha256:model-b');
    await expect(
      shared.reader.search(vectors()[0]!, { modelFingerprint: 'sha256:model-b' }),
    ).rejects.toBeInstanceOf(ModelMismatchError);
  });

  it("opens a directory store's segments where they are, refusing a corrupt one by name", async () => {
    const { dir, store, cacheDir, segmentId } = await fresh();
    // Nothing was copied into the cache: the store's own files were checked and loaded.
    expect(await readdir(cacheDir).catch(() => [])).toEqual([]);
    const path = join(dir, segmentKey(segmentId, 'graph.hnsw'));
    const bytes = await readFile(path);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(path, bytes);
    const err = await IndexReader.open(store, { cacheDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SegmentIntegrityError);
    expect((err as SegmentIntegrityError).segment).toBe(segmentId);
    expect((err as Error).message).toContain('graph.hnsw');
  });

  it('refuses a stored segment.json that differs from the manifest entry', async () => {
    const { dir, store, segmentId } = await fresh();
    const path = join(dir, segmentKey(segmentId, 'segment.json'));
    await writeFile(path, `${(await readFile(path, 'utf8')).trimEnd()} \n`);
    const err = await IndexReader.open(store, { cacheDir: join(root, `cold-${dirs++}`) }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SegmentIntegrityError);
    expect((err as Error).message).toContain(segmentId);
    expect((err as Error).message).toContain('segment.json');
  });
});

describe('IndexReader and IndexWriter over an S3-protocol store', () => {
  let server: Awaited<ReturnType<typeof startConditionalS3Server>>;
  let buckets = 0;
  beforeAll(async () => {
    server = await startConditionalS3Server();
  });
  afterAll(() => server.close());

  const s3Store = () =>
    new S3Store({
      bucket: `index-${buckets++}`,
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      baseDelayMs: 1,
    });

  /** An S3 index of 100 chunks, opened once (filling the cache). */
  async function freshS3() {
    const store = s3Store();
    const workDir = join(root, `s3-work-${dirs++}`);
    await mkdir(workDir, { recursive: true });
    const writer = new IndexWriter(store, { modelFingerprint: model, dims, workDir, efConstruction: 100 });
    const vs = vectors().slice(0, 100);
    const input = { vectors: vs, chunks: chunksOf().slice(0, 100) };
    const added = await writer.addSegment(input, { changeId: 'job-1' });
    const cacheDir = join(root, `s3-cache-${dirs++}`);
    const reader = await IndexReader.open(store, { cacheDir, modelFingerprint: model });
    return { store, writer, reader, vs, input, cacheDir, segmentId: added.descriptor!.id };
  }

  it('round-trips, reuses a stored segment, and deletes', async () => {
    const { store, writer, vs, input, segmentId } = await freshS3();
    const b = await writer.addSegment(input, { changeId: 'job-2' }); // same content: files already there
    expect(b.descriptor!.id).toBe(segmentId);
    await writer.deleteNotes(['n3'], 'delete-1');
    const reader = await IndexReader.open(store, {
      cacheDir: join(root, `s3-cache-${dirs++}`),
      modelFingerprint: model,
    });
    for (const i of [0, 42, 99]) expect((await reader.search(vs[i]!, { k: 1 }))[0]!.chunkIndex).toBe(i);
    const hits = await reader.search(vs[15]!, { k: 10 });
    expect(hits).toHaveLength(10);
    expect(hits.some((h) => h.chunk.noteId === 'n3')).toBe(false);
    expect(reader.stats()).toMatchObject({ manifestVersion: 3, segments: 1, chunks: 95, tombstones: 1 });
  });

  it('re-downloads a damaged cached copy', async () => {
    const { store, cacheDir, segmentId, vs } = await freshS3();
    const cached = join(cacheDir, segmentId, 'vectors.f32');
    const bytes = await readFile(cached);
    bytes[10] = bytes[10]! ^ 0xff;
    await writeFile(cached, bytes);
    const reader = await IndexReader.open(store, { cacheDir });
    expect((await reader.search(vs[5]!, { k: 1 }))[0]!.chunkIndex).toBe(5);
    expect((await readFile(cached))[10]).toBe(bytes[10]! ^ 0xff);
  });

  it('refuses a segment whose cached and stored copies are both corrupt, naming the segment', async () => {
    const { store, cacheDir, segmentId } = await freshS3();
    const cached = join(cacheDir, segmentId, 'graph.hnsw');
    const bytes = await readFile(cached);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(cached, bytes);
    await store.put(segmentKey(segmentId, 'graph.hnsw'), bytes);
    const err = await IndexReader.open(store, { cacheDir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err).toBeInstanceOf(SegmentIntegrityError);
    expect((err as SegmentIntegrityError).segment).toBe(segmentId);
    expect((err as Error).message).toContain(segmentId);
    expect((err as Error).message).toContain('graph.hnsw');
    // No bad copy is left in the cache.
    expect(await readdir(cacheDir)).toEqual([]);
  });
});
