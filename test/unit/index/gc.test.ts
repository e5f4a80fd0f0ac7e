import { mkdir, mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededUniform } from '../../../layers/encoder/src/fixture.ts';
import { compact } from '../../../layers/index/src/compaction.ts';
import { collectGarbage, GC_DEFAULTS, parseDuration } from '../../../layers/index/src/gc.ts';
import { ManifestStore } from '../../../layers/index/src/manifest.ts';
import { IndexReader } from '../../../layers/index/src/reader.ts';
import { buildSegment } from '../../../layers/index/src/segment/build.ts';
import { openSegment } from '../../../layers/index/src/segment/load.ts';
import { SEGMENT_FILES } from '../../../layers/index/src/segment/types.ts';
import { S3Store } from '../../../layers/index/src/store/s3.ts';
import type { ObjectStore } from '../../../layers/index/src/store/types.ts';
import { NoteTextStore, noteTextPrefix } from '../../../layers/index/src/texts.ts';
import { verify } from '../../../layers/index/src/verify.ts';
import { IndexWriter, segmentKey } from '../../../layers/index/src/writer.ts';
import { localIndex, twoChunkNotes } from '../../helpers/index.ts';
import { startConditionalS3Server } from '../../helpers/s3-conditional-server.ts';

const dims = 16;
const model = 'sha256:model-gc';
const HOUR = 3_600_000;
let root: string;
let dirs = 0;

/** n chunks of notes `<prefix>0..`, 2 chunks a note. */
function input(n: number, seed: number, prefix: string) {
  return twoChunkNotes(n, dims, seed, prefix, { length: 10, tokens: 8 });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function keys(store: ObjectStore, prefix: string): Promise<string[]> {
  return (await collect(store.list(prefix))).map((o) => o.key);
}

function query(seed: number): Float32Array {
  const r = seededUniform(seed);
  return Float32Array.from({ length: dims }, () => r() * 2 - 1);
}

/** A local index of two segments (notes a0..a3, b0..b3), committed as versions 1 and 2. */
async function fresh() {
  const n = dirs++;
  const index = localIndex(root, `store-${n}`, { dims, modelFingerprint: model });
  const cacheDir = join(root, `cache-${n}`);
  await mkdir(index.workDir, { recursive: true });
  await mkdir(cacheDir, { recursive: true });
  await index.writer.addSegment(input(8, 1, 'a'), { changeId: 'job-a' });
  await index.writer.addSegment(input(8, 2, 'b'), { changeId: 'job-b' });
  return { ...index, cacheDir, manifests: new ManifestStore(index.store) };
}

/** Sets the mtime of every file under `dir` (recursively) to `at`, as if written then. */
async function age(dir: string, at: Date): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) await utimes(join(entry.parentPath, entry.name), at, at);
  }
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'index-gc-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('parseDuration', () => {
  it('reads a number with a unit, and 0 alone', () => {
    expect(['1h', '30m', '90s', '500ms', '2d', '0', '1.5h'].map(parseDuration)).toEqual([
      HOUR,
      1_800_000,
      90_000,
      500,
      172_800_000,
      0,
      5_400_000,
    ]);
  });

  it('refuses a bare number other than 0, a negative number and an unknown unit', () => {
    for (const bad of ['60', '-1h', '1w', 'h', '']) expect(() => parseDuration(bad)).toThrow(RangeError);
  });
});

describe('collectGarbage', () => {
  it('defaults to a one-hour grace period and keeps the three newest versions', () => {
    expect(GC_DEFAULTS).toMatchObject({ graceMs: HOUR, keepVersions: 3 });
  });

  it('keeps what an older version lists within the grace period, so its reader keeps working', async () => {
    const { store, cacheDir, workDir, manifests } = await fresh();
    const holder = await IndexReader.open(store, { cacheDir: join(cacheDir, 'holder') });
    const before = await holder.search(query(5), { k: 4 });
    await compact(store, { cacheDir, workDir, policy: { minSegments: 2 } });
    expect(await manifests.versions()).toEqual([1, 2, 3]);

    // A reader that took version 2 just before the compaction, and fetches its segments only now.
    const old = await manifests.read(2);
    const result = await collectGarbage(store, { keepVersions: 1 });
    expect(result).toMatchObject({
      newestVersion: 3,
      keptVersions: [1, 2, 3],
      deletedVersions: [],
      deletedSegments: [],
      deletedObjects: 0,
      pending: { manifests: 2, segments: 0 },
    });
    for (const s of old.segments) {
      const dir = join(cacheDir, 'late', s.id);
      for (const file of Object.values(SEGMENT_FILES))
        await store.getToFile(segmentKey(s.id, file), join(dir, file));
      expect((await openSegment(dir, { id: s.id, sha256: s.sha256 })).count).toBe(8);
    }
    expect(await holder.search(query(5), { k: 4 })).toEqual(before);
    expect(await holder.refresh()).toBe(true);
    expect((await holder.search(query(5), { k: 4 })).map((h) => h.chunk.noteId)).toEqual(
      before.map((h) => h.chunk.noteId),
    );
  });

  it('after the grace period deletes superseded manifests and unreferenced segments; the newest stays whole', async () => {
    const { store, cacheDir, workDir, manifests } = await fresh();
    const v2 = await manifests.read(2);
    const merged = await compact(store, { cacheDir, workDir, policy: { minSegments: 2 } });
    const later = new Date(Date.now() + HOUR + 60_000);

    const planned = await collectGarbage(store, { keepVersions: 1, now: later, dryRun: true });
    expect(planned).toMatchObject({
      dryRun: true,
      keptVersions: [3],
      deletedVersions: [1, 2],
      deletedSegments: v2.segments.map((s) => s.id).sort(),
      deletedObjects: 2 + 2 * 4,
    });
    expect(await manifests.versions()).toEqual([1, 2, 3]);

    const done = await collectGarbage(store, { keepVersions: 1, now: later });
    expect({ ...done, dryRun: true }).toEqual(planned);
    expect(done.deletedBytes).toBeGreaterThan(0);
    expect(done.conflicts).toEqual([]);
    expect(await manifests.versions()).toEqual([3]);
    const output = merged.merges[0]!.output!.id;
    expect(await keys(store, 'segments/')).toEqual(
      Object.values(SEGMENT_FILES)
        .map((f) => segmentKey(output, f))
        .sort(),
    );
    const reader = await IndexReader.open(store, { cacheDir: join(cacheDir, 'after') });
    expect(reader.stats()).toMatchObject({ manifestVersion: 3, segments: 1, chunks: 16 });
    expect(await reader.search(query(6), { k: 16 })).toHaveLength(16);
    expect((await verify(store, { cacheDir })).ok).toBe(true);

    // Nothing left to collect: a second run deletes nothing.
    expect(await collectGarbage(store, { keepVersions: 1, now: later })).toMatchObject({ deletedObjects: 0 });
  });

  it('measures a manifest by when it was superseded, and always keeps the keepVersions newest', async () => {
    const { dir, store, writer, manifests } = await fresh();
    await writer.deleteNotes(['a0'], 'delete-a0');
    await writer.deleteNotes(['a1'], 'delete-a1');
    // Versions 1 and 2 were written long ago; 3 (which superseded 2) a minute ago; 4 now.
    const now = Date.now();
    await age(join(dir, 'manifests'), new Date(now - 3 * HOUR));
    const at = (v: number, ms: number) =>
      utimes(join(dir, manifests.keyOf(v)), new Date(now - ms), new Date(now - ms));
    await at(3, 60_000);
    await at(4, 0);
    const result = await collectGarbage(store, { keepVersions: 1, texts: false });
    expect(result.deletedVersions).toEqual([1]);
    expect(result.keptVersions).toEqual([2, 3, 4]);
    expect(await manifests.versions()).toEqual([2, 3, 4]);

    const later = new Date(now + 2 * HOUR);
    expect((await collectGarbage(store, { keepVersions: 2, now: later, dryRun: true })).keptVersions).toEqual(
      [3, 4],
    );
    expect((await collectGarbage(store, { now: later, dryRun: true })).keptVersions).toEqual([2, 3, 4]);
  });

  it('keeps a segment uploaded but not yet committed, and deletes an abandoned upload after the grace period', async () => {
    const { store, workDir, manifests } = await fresh();
    const dir = join(workDir, 'uploaded');
    const d = await buildSegment(input(6, 9, 'u'), {
      dir,
      dims,
      modelFingerprint: model,
      M: 8,
      efConstruction: 50,
    });
    for (const file of Object.values(SEGMENT_FILES))
      await store.putFile(segmentKey(d.id, file), join(dir, file));

    const during = await collectGarbage(store, { graceMs: HOUR });
    expect(during.deletedSegments).toEqual([]);
    expect(during.pending.segments).toBe(1);
    expect(await keys(store, `segments/${d.id}/`)).toHaveLength(4);

    // Abandoned (its job died): once older than the grace period it goes, the committed ones stay.
    const later = new Date(Date.now() + HOUR + 60_000);
    const after = await collectGarbage(store, { graceMs: HOUR, now: later });
    expect(after.deletedSegments).toEqual([d.id]);
    expect(await keys(store, `segments/${d.id}/`)).toEqual([]);
    const latest = await manifests.latest();
    for (const s of latest!.segments) expect(await keys(store, `segments/${s.id}/`)).toHaveLength(4);
  });

  it('never loses a segment of a commit that runs while it collects', async () => {
    const { dir, store, cacheDir, writer, workDir } = await fresh();
    // Old garbage to collect meanwhile: an abandoned upload, and versions written hours ago.
    const abandoned = join(workDir, 'abandoned');
    const d = await buildSegment(input(6, 9, 'u'), {
      dir: abandoned,
      dims,
      modelFingerprint: model,
      M: 8,
      efConstruction: 50,
    });
    for (const file of Object.values(SEGMENT_FILES)) {
      await store.putFile(segmentKey(d.id, file), join(abandoned, file));
    }
    await age(dir, new Date(Date.now() - 3 * HOUR));
    const jobs = Array.from({ length: 6 }, (_, j) =>
      writer.addSegment(input(4, 20 + j, `c${j}-`), { changeId: `job-c${j}` }),
    );
    // GC runs over and over until every job has committed, so some run falls between a job's upload
    // and its commit (with no grace period, that run deletes the upload).
    let finished = false;
    const all = Promise.all(jobs).finally(() => {
      finished = true;
    });
    const loop = async () => {
      const out = [];
      do out.push(await collectGarbage(store, { keepVersions: 1, graceMs: 10_000 }));
      while (!finished);
      return out;
    };
    const [committed, ...loops] = await Promise.all([all, loop(), loop()]);
    const collected = loops.flat();
    expect(collected.length).toBeGreaterThan(2);
    for (const r of collected) expect(r.conflicts).toEqual([]);
    expect(collected.flatMap((r) => r.deletedSegments)).toContain(d.id);
    const reader = await IndexReader.open(store, { cacheDir: join(cacheDir, 'after') });
    expect(reader.stats()).toMatchObject({ manifestVersion: 8, segments: 8, chunks: 16 + 24 });
    for (const c of committed) expect(reader.manifest!.segments.map((s) => s.id)).toContain(c.segment!.id);
    expect((await verify(store, { cacheDir })).ok).toBe(true);
  });

  it('makes a reused stored segment young again when a writer commits it anew', async () => {
    const { dir, store, workDir } = await fresh();
    const other = new IndexWriter(store, {
      modelFingerprint: model,
      dims,
      workDir,
      M: 8,
      efConstruction: 50,
    });
    await age(join(dir, 'segments'), new Date(Date.now() - 3 * HOUR));
    const again = await other.addSegment(input(8, 1, 'a'), { changeId: 'job-a-again' });
    expect(again.applied).toBe(true);
    const stored = await stat(join(dir, segmentKey(again.descriptor!.id, SEGMENT_FILES.graph)));
    expect(Date.now() - stored.mtimeMs).toBeLessThan(HOUR);
  });

  it("deletes a deleted note's stored texts after the grace period, and keeps a re-ingested note's", async () => {
    const { store, cacheDir, workDir, writer } = await fresh();
    const texts = new NoteTextStore(store);
    for (const prefix of ['a', 'b']) {
      for (let n = 0; n < 4; n++) {
        const source = { key: `notes/${prefix}${n}.txt`, sequencer: '0A' };
        await texts.put(`${prefix}${n}`, source, `text of ${prefix}${n}`);
      }
    }
    await writer.deleteNotes(['a0', 'b1'], 'delete-1');
    // b1 comes back (re-ingested): a new segment holding it, committed with its tombstone.
    await writer.addSegment(
      { ...input(2, 7, 'x'), chunks: input(2, 7, 'b1-').chunks.map((c) => ({ ...c, noteId: 'b1' })) },
      { changeId: 'reingest-b1', tombstoneNotes: ['b1'] },
    );
    const pending = await verify(store, { cacheDir });
    expect(pending.ok).toBe(false);
    expect(pending.textsOfDeletedNotes).toBe(1);

    const within = await collectGarbage(store);
    expect(within.deletedTextNotes).toEqual([]);
    expect(await keys(store, noteTextPrefix('a0'))).toHaveLength(1);

    await compact(store, { cacheDir, workDir, policy: { minSegments: 2 } });
    const later = new Date(Date.now() + HOUR + 60_000);
    const after = await collectGarbage(store, { now: later });
    expect(after.deletedTextNotes).toEqual(['a0']);
    expect(await keys(store, noteTextPrefix('a0'))).toEqual([]);
    expect(
      await texts.get({ noteId: 'a0', source: { key: 'notes/a0.txt', sequencer: '0A' } }),
    ).toBeUndefined();
    expect(await keys(store, noteTextPrefix('b1'))).toHaveLength(1);
    expect(await keys(store, noteTextPrefix('a1'))).toHaveLength(1);
    const report = await verify(store, { cacheDir });
    expect(report).toMatchObject({ ok: true, liveChunksOfDeletedNotes: 0, textsOfDeletedNotes: 0 });
  });

  it('reads no chunk metadata once no deleted note has a stored text', async () => {
    const { store, writer } = await fresh();
    await new NoteTextStore(store).put('a3', undefined, 'text of a3');
    await writer.deleteNotes(['a3'], 'delete-a3');
    // A segment added after the delete could hold a3 again: it is read while a3 has a text.
    await writer.addSegment(input(4, 30, 'z'), { changeId: 'job-z' });
    const later = new Date(Date.now() + HOUR + 60_000);
    expect((await collectGarbage(store, { now: later })).deletedTextNotes).toEqual(['a3']);
    const noChunkReads = Object.create(store) as ObjectStore;
    noChunkReads.get = (key, options) =>
      key.endsWith(SEGMENT_FILES.chunks) ? Promise.reject(new Error(`read ${key}`)) : store.get(key, options);
    expect(await collectGarbage(noChunkReads, { now: later })).toMatchObject({ deletedObjects: 0 });
  });

  it('keeps the text of a deleted note written within the grace period', async () => {
    const { dir, store, writer } = await fresh();
    await writer.deleteNotes(['a2'], 'delete-a2');
    // The delete was committed long ago; the note's text was written a moment ago (a re-ingest
    // whose commit has not landed yet): the text stays.
    await age(join(dir, 'manifests'), new Date(Date.now() - 3 * HOUR));
    await new NoteTextStore(store).put('a2', undefined, 'late text');
    const result = await collectGarbage(store);
    expect(result.deletedTextNotes).toEqual([]);
    expect(result.pending.texts).toBe(1);
    expect(await keys(store, noteTextPrefix('a2'))).toHaveLength(1);
  });

  it('refuses a negative grace period and keepVersions below 1', async () => {
    const { store } = await fresh();
    await expect(collectGarbage(store, { graceMs: -1 })).rejects.toThrow(RangeError);
    await expect(collectGarbage(store, { keepVersions: 0 })).rejects.toThrow(RangeError);
  });

  it('collects on S3 by its LastModified times', async () => {
    const server = await startConditionalS3Server();
    try {
      const store = new S3Store({
        bucket: 'gc',
        prefix: 'index',
        endpoint: server.endpoint,
        forcePathStyle: true,
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      });
      const workDir = join(root, `s3-work-${dirs++}`);
      const writer = new IndexWriter(store, {
        modelFingerprint: model,
        dims,
        workDir,
        M: 8,
        efConstruction: 50,
      });
      const a = await writer.addSegment(input(8, 1, 'a'), { changeId: 'job-a' });
      await writer.addSegment(input(8, 2, 'b'), { changeId: 'job-b' });
      await new ManifestStore(store).commit({ id: 'drop-a', removeSegments: [a.descriptor!.id] });
      expect((await collectGarbage(store, { keepVersions: 1 })).deletedObjects).toBe(0);
      const later = new Date(Date.now() + HOUR + 60_000);
      const result = await collectGarbage(store, { keepVersions: 1, now: later });
      expect(result).toMatchObject({ deletedVersions: [1, 2], deletedSegments: [a.descriptor!.id] });
      expect(await keys(store, 'manifests/')).toEqual(['manifests/0000000003.json']);
      expect(await keys(store, `segments/${a.descriptor!.id}/`)).toEqual([]);
    } finally {
      await server.close();
    }
  });
});
