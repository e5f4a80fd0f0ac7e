import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommitConflictError, IntegrityError } from '../../../layers/index/src/errors.ts';
import { ManifestStore } from '../../../layers/index/src/manifest.ts';
import { sha256 } from '../../../layers/index/src/segment/hash.ts';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { IndexWriter, segmentKey } from '../../../layers/index/src/writer.ts';
import { localIndex, syntheticSegment } from '../../helpers/index.ts';

const dims = 32;
const model = 'sha256:model-a';
let root: string;
let dirs = 0;

function input(n: number, seed: number, notePrefix = 'n') {
  return syntheticSegment(n, dims, seed, (i) => ({
    noteId: `${notePrefix}${Math.floor(i / 4)}`,
    patientId: `p${i % 3}`,
    section: 'hpi',
    start: (i % 4) * 100,
    end: (i % 4) * 100 + 100,
    tokens: 30,
    assertions: [],
    flags: [],
  }));
}

async function fresh() {
  const {
    dir,
    workDir: work,
    store,
    writer,
  } = localIndex(root, `store-${dirs++}`, { dims, modelFingerprint: model });
  await mkdir(work, { recursive: true });
  return { dir, work, store, writer, manifests: new ManifestStore(store) };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'index-writer-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('IndexWriter.addSegment', () => {
  it('uploads the segment files under segments/<id>/ and commits them with model and dims', async () => {
    const { dir, work, writer, manifests } = await fresh();
    const result = await writer.addSegment(input(40, 1), { changeId: 'job-1' });
    expect(result.applied).toBe(true);
    const id = result.descriptor!.id;
    expect(result.segment).toEqual({ id, count: 40, sha256: expect.any(String), addedIn: 1 });
    const files = (await readdir(join(dir, 'segments', id))).sort();
    expect(files).toEqual(['chunks.bin', 'graph.hnsw', 'segment.json', 'vectors.f32']);
    const descriptor = await readFile(join(dir, segmentKey(id, 'segment.json')));
    expect(sha256(descriptor)).toBe(result.segment!.sha256);
    const latest = await manifests.latest();
    expect(latest).toMatchObject({ version: 1, modelFingerprint: model, dims, commits: ['job-1'] });
    expect(latest!.segments).toEqual([result.segment]);
    expect(await readdir(work)).toEqual([]); // the local build is cleaned up
  });

  it('is idempotent by change id: a retried job builds and writes nothing', async () => {
    const { writer, manifests } = await fresh();
    await writer.addSegment(input(20, 2), { changeId: 'job-1' });
    const again = await writer.addSegment(input(20, 3), { changeId: 'job-1' });
    expect(again.applied).toBe(false);
    expect(again.descriptor).toBeUndefined();
    expect(await manifests.versions()).toEqual([1]);
  });

  it('reuses an identical segment already stored (content-addressed) and lists it once', async () => {
    const { writer, manifests } = await fresh();
    const a = await writer.addSegment(input(20, 4), { changeId: 'job-a' });
    const b = await writer.addSegment(input(20, 4), { changeId: 'job-b' });
    expect(b.descriptor!.id).toBe(a.descriptor!.id);
    const latest = await manifests.latest();
    expect(latest!.version).toBe(2);
    expect(latest!.segments.map((s) => s.id)).toEqual([a.descriptor!.id]);
  });

  it('refuses a stored segment file with the same key but other bytes', async () => {
    const { dir, writer } = await fresh();
    const a = await writer.addSegment(input(20, 5), { changeId: 'job-a' });
    await writeFile(join(dir, segmentKey(a.descriptor!.id, 'vectors.f32')), 'garbage');
    const err = await writer.addSegment(input(20, 5), { changeId: 'job-b' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect((err as Error).message).toContain(a.descriptor!.id);
    expect((err as Error).message).toContain('vectors.f32');
  });

  it('commits the tombstones of re-ingested notes at the version that adds the segment', async () => {
    const { writer } = await fresh();
    await writer.addSegment(input(8, 6), { changeId: 'job-1' });
    const r = await writer.addSegment(input(4, 7), { changeId: 'job-2', tombstoneNotes: ['n0', 'n0'] });
    expect(r.manifest.tombstones).toEqual([{ noteId: 'n0', version: 2 }]);
    expect(r.segment!.addedIn).toBe(2);
  });

  it('refuses vectors of another model than the index holds', async () => {
    const { store, writer } = await fresh();
    await writer.addSegment(input(8, 8), { changeId: 'job-1' });
    const other = new IndexWriter(store, { modelFingerprint: 'sha256:model-b', dims });
    await expect(other.addSegment(input(8, 9), { changeId: 'job-2' })).rejects.toBeInstanceOf(
      CommitConflictError,
    );
  });

  it('validates its options', () => {
    const store = new LocalDirectoryStore(join(root, 'unused'));
    expect(() => new IndexWriter(store, { modelFingerprint: '', dims })).toThrow(RangeError);
    expect(() => new IndexWriter(store, { modelFingerprint: model, dims: 0 })).toThrow(RangeError);
  });
});

describe('IndexWriter.deleteNotes', () => {
  it('commits tombstones only, idempotently', async () => {
    const { writer, manifests } = await fresh();
    await writer.addSegment(input(8, 10), { changeId: 'job-1' });
    const r = await writer.deleteNotes(['n1', 'n0', 'n1'], 'delete-1');
    expect(r.applied).toBe(true);
    expect(r.manifest.segments).toHaveLength(1);
    expect(r.manifest.tombstones).toEqual([
      { noteId: 'n1', version: 2 },
      { noteId: 'n0', version: 2 },
    ]);
    expect((await writer.deleteNotes(['n1'], 'delete-1')).applied).toBe(false);
    expect(await manifests.versions()).toEqual([1, 2]);
  });
});
