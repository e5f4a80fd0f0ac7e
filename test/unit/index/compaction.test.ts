import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededUniform } from '../../../layers/encoder/src/fixture.ts';
import { compact, planCompaction, tierOf } from '../../../layers/index/src/compaction.ts';
import { type ManifestSegment, ManifestStore } from '../../../layers/index/src/manifest.ts';
import { IndexReader } from '../../../layers/index/src/reader.ts';
import type { ObjectStore } from '../../../layers/index/src/store/types.ts';
import { verify } from '../../../layers/index/src/verify.ts';
import { localIndex, twoChunkNotes } from '../../helpers/index.ts';

const dims = 16;
const model = 'sha256:model-c';
let root: string;
let dirs = 0;

/** n chunks of notes `<prefix>0..`, 2 chunks a note, random vectors. */
function input(n: number, seed: number, prefix: string) {
  return twoChunkNotes(n, dims, seed, prefix, { length: 100, tokens: 30 });
}

/** An index of four segments of 10 chunks (notes a0..a4, b0..b4, c0..c4, d0..d4). */
async function fresh(wrap?: (s: ObjectStore) => ObjectStore) {
  const n = dirs++;
  const { store: base, workDir, writer } = localIndex(root, `store-${n}`, { dims, modelFingerprint: model });
  const store = wrap ? wrap(base) : base;
  const cacheDir = join(root, `cache-${n}`);
  await mkdir(workDir, { recursive: true });
  await mkdir(cacheDir, { recursive: true });
  for (const [s, prefix] of ['a', 'b', 'c', 'd'].entries()) {
    await writer.addSegment(input(10, s + 1, prefix), { changeId: `job-${prefix}` });
  }
  return { store, base, writer, workDir, cacheDir, manifests: new ManifestStore(base) };
}

function queries(count: number): Float32Array[] {
  const r = seededUniform(99);
  return Array.from({ length: count }, () => Float32Array.from({ length: dims }, () => r() * 2 - 1));
}

async function hits(store: ObjectStore, cacheDir: string) {
  const reader = await IndexReader.open(store, { cacheDir: join(cacheDir, 'reader') });
  const out: string[][] = [];
  for (const q of queries(5)) {
    const found = await reader.search(q, { k: 8, exact: true });
    out.push(found.map((h) => `${h.chunk.noteId}@${h.chunk.start}:${h.score.toFixed(5)}`));
  }
  return { out, reader };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'index-compaction-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('planCompaction', () => {
  const seg = (id: string, count: number, live = count, addedIn = 1) => ({
    entry: { id, count, sha256: 'x', addedIn } satisfies ManifestSegment,
    live,
  });

  it('puts segments into tiers by log_tierFactor of their live chunks', () => {
    expect([1, 3, 4, 15, 16, 63, 64].map((n) => tierOf(n, 4))).toEqual([0, 0, 1, 1, 2, 2, 3]);
  });

  it('merges a tier once it holds minSegments, within maxSegmentChunks', () => {
    const small = ['a', 'b', 'c'].map((id) => seg(id, 10));
    expect(planCompaction(small)).toEqual([]);
    expect(planCompaction([...small, seg('d', 12), seg('big', 1000)])).toEqual([['a', 'b', 'c', 'd']]);
    expect(planCompaction([...small, seg('d', 12)], { maxSegmentChunks: 30 })).toEqual([]);
    expect(planCompaction([...small, seg('d', 12)], { minSegments: 3, maxSegmentChunks: 30 })).toEqual([
      ['a', 'b', 'c'],
    ]);
  });

  it('merges a segment with ≥ 20% dead chunks with its tier, even alone', () => {
    expect(planCompaction([seg('a', 40, 30)])).toEqual([['a']]);
    expect(planCompaction([seg('a', 40, 33)])).toEqual([]);
    expect(planCompaction([seg('a', 40, 30), seg('b', 20)])).toEqual([['a', 'b']]);
  });
});

describe('compact', () => {
  it('merges a tier of small segments into one, keeps search results, drops deleted chunks', async () => {
    const { store, writer, workDir, cacheDir, manifests } = await fresh();
    await writer.deleteNotes(['a1', 'c3', 'd0'], 'delete-1');
    const before = await hits(store, cacheDir);
    const beforeReport = await verify(store, { cacheDir });
    expect(beforeReport.liveChunksOfDeletedNotes).toBe(6);
    expect(beforeReport.ok).toBe(false);

    const result = await compact(store, { cacheDir, workDir });
    expect(result.merges).toHaveLength(1);
    expect(result.mergedSegments).toBe(4);
    expect(result.removedChunks).toBe(6);
    expect(result.manifestVersion).toBe(6);
    const latest = (await manifests.latest())!;
    expect(latest.segments).toHaveLength(1);
    expect(latest.segments[0]).toMatchObject({ count: 34, addedIn: 4 });
    expect(latest.commits.at(-1)).toMatch(/^compact-[0-9a-f]{32}$/);

    const after = await hits(store, cacheDir);
    expect(after.out).toEqual(before.out);
    expect(after.reader.stats()).toMatchObject({ segments: 1, chunks: 34, notes: 17 });
    const merged = after.reader.segments[0]!;
    const notes = Array.from({ length: merged.count }, (_, i) => merged.chunk(i).noteId);
    expect(notes).toHaveLength(34);
    for (const gone of ['a1', 'c3', 'd0']) expect(notes).not.toContain(gone);
    const a0 = notes.indexOf('a0');
    expect(merged.chunk(a0).source).toEqual({ key: 'notes/a0.txt', sequencer: '0A' });

    const report = await verify(store, { cacheDir });
    expect(report).toMatchObject({ ok: true, problems: [], liveChunksOfDeletedNotes: 0, segments: 1 });

    // Nothing more to merge; running again commits nothing.
    const again = await compact(store, { cacheDir, workDir });
    expect(again.merges).toEqual([]);
    expect(again.manifestVersion).toBe(6);
  });

  it('does not undo a delete committed after the plan, while the merge is uploaded', async () => {
    let deleteOnce: (() => Promise<unknown>) | undefined;
    const { store, writer, workDir, cacheDir, manifests } = await fresh((base) => {
      const wrapped: ObjectStore = Object.create(base) as ObjectStore;
      wrapped.putFile = async (key, path, opts) => {
        const run = deleteOnce;
        deleteOnce = undefined;
        if (run && key.startsWith('segments/')) await run();
        return base.putFile(key, path, opts);
      };
      return wrapped;
    });
    deleteOnce = () => writer.deleteNotes(['b2', 'd4', 'a0', 'c1'], 'delete-late');
    const result = await compact(store, { cacheDir, workDir, changeId: 'compact-job' });
    expect(deleteOnce).toBeUndefined(); // the delete ran mid-compaction
    expect(result.removedChunks).toBe(0); // planned before the delete: its chunks were still live
    const latest = (await manifests.latest())!;
    expect(latest.version).toBe(6);
    expect(latest.commits).toEqual(['job-a', 'job-b', 'job-c', 'job-d', 'delete-late', 'compact-job']);
    expect(latest.segments).toEqual([expect.objectContaining({ count: 40, addedIn: 4 })]);
    const reader = await IndexReader.open(store, { cacheDir: join(cacheDir, 'reader') });
    expect(reader.stats()).toMatchObject({ chunks: 32, notes: 16 });
    for (const q of queries(5)) {
      const found = await reader.search(q, { k: 40, exact: true });
      expect(found).toHaveLength(32);
      for (const gone of ['b2', 'd4', 'a0', 'c1'])
        expect(found.map((h) => h.chunk.noteId)).not.toContain(gone);
    }
    // The chunks are hidden but still stored until the next compaction (20% dead) drops them.
    expect((await verify(store, { cacheDir })).liveChunksOfDeletedNotes).toBe(8);
    const second = await compact(store, { cacheDir, workDir });
    expect(second.removedChunks).toBe(8);
    expect(await verify(store, { cacheDir })).toMatchObject({ ok: true, liveChunksOfDeletedNotes: 0 });
  });

  it('removes a merge whose inputs are all dead without adding a segment', async () => {
    const { store, writer, workDir, cacheDir, manifests } = await fresh();
    const notes = ['a', 'b', 'c', 'd'].flatMap((p) => [0, 1, 2, 3, 4].map((i) => `${p}${i}`));
    await writer.deleteNotes(notes, 'delete-all');
    const result = await compact(store, { cacheDir, workDir });
    expect(result.merges).toEqual([
      expect.objectContaining({ removedChunks: 40, keptChunks: 0, applied: true }),
    ]);
    expect(result.merges[0]!.output).toBeUndefined();
    expect((await manifests.latest())!.segments).toEqual([]);
    expect(await verify(store, { cacheDir })).toMatchObject({ ok: true, segments: 0 });
  });
});
