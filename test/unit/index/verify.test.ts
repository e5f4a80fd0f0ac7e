import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { verify } from '../../../layers/index/src/verify.ts';
import { segmentKey } from '../../../layers/index/src/writer.ts';
import { localIndex, syntheticSegment } from '../../helpers/index.ts';

const dims = 16;
let root: string;
let dirs = 0;

function input(n: number, seed: number) {
  return syntheticSegment(n, dims, seed, (i) => ({
    noteId: `s${seed}n${Math.floor(i / 2)}`,
    patientId: 'p0',
    section: 'hpi',
    start: 0,
    end: 10,
    tokens: 5,
    assertions: [],
    flags: [],
  }));
}

/** An index of two segments; returns their ids. */
async function fresh() {
  const n = dirs++;
  const { dir, store, writer } = localIndex(root, `store-${n}`, { dims, modelFingerprint: 'sha256:m' });
  const cacheDir = join(root, `cache-${n}`);
  await mkdir(cacheDir, { recursive: true });
  const a = await writer.addSegment(input(8, 1), { changeId: 'job-1' });
  const b = await writer.addSegment(input(8, 2), { changeId: 'job-2' });
  return { dir, store, cacheDir, writer, ids: [a.descriptor!.id, b.descriptor!.id] as const };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'index-verify-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('verify', () => {
  it('reports a sound index as ok', async () => {
    const { store, cacheDir } = await fresh();
    expect(await verify(store, { cacheDir })).toEqual({
      ok: true,
      problems: [],
      liveChunksOfDeletedNotes: 0,
      textsOfDeletedNotes: 0,
      manifestVersion: 2,
      segments: 2,
    });
  });

  it('reports an empty index as ok', async () => {
    const cacheDir = join(root, 'cache-empty');
    await mkdir(cacheDir);
    const store = new LocalDirectoryStore(join(root, 'empty'), { fsync: false });
    expect(await verify(store, { cacheDir })).toMatchObject({ ok: true, segments: 0, manifestVersion: 0 });
  });

  it('reports a corrupted file, a truncated file and a missing file without throwing', async () => {
    const { dir, store, cacheDir, ids } = await fresh();
    const [a, b] = ids;
    await writeFile(join(dir, segmentKey(a, 'vectors.f32')), Buffer.alloc(8 * dims * 4, 7));
    await truncate(join(dir, segmentKey(a, 'chunks.bin')), 10);
    await rm(join(dir, segmentKey(b, 'graph.hnsw')));
    const report = await verify(store, { cacheDir });
    expect(report.ok).toBe(false);
    expect(report.problems).toHaveLength(3);
    expect(report.problems[0]).toMatch(
      new RegExp(`segment ${a}: vectors.f32: sha256 [0-9a-f]{64}, segment.json records`),
    );
    expect(report.problems[1]).toMatch(
      new RegExp(`segment ${a}: chunks.bin: 10 bytes, segment.json records \\d+`),
    );
    expect(report.problems[2]).toBe(`segment ${b}: graph.hnsw: missing from the store`);
  });

  it('reports a segment.json other than the manifest recorded, and a missing one', async () => {
    const { dir, store, cacheDir, ids } = await fresh();
    const [a, b] = ids;
    await writeFile(join(dir, segmentKey(a, 'segment.json')), '{"format":"cohort-segment/1"}');
    await rm(join(dir, segmentKey(b, 'segment.json')));
    const report = await verify(store, { cacheDir });
    expect(report.ok).toBe(false);
    expect(report.problems.some((p) => p.startsWith(`segment ${a}: segment.json: sha256`))).toBe(true);
    expect(
      report.problems.some((p) => p.startsWith(`segment ${b}: segment.json:`) && /not found/.test(p)),
    ).toBe(true);
  });

  it('reports a corrupt manifest', async () => {
    const { dir, store, cacheDir } = await fresh();
    await writeFile(join(dir, 'manifests', '0000000002.json'), '{not json');
    const report = await verify(store, { cacheDir });
    expect(report.ok).toBe(false);
    expect(report.problems[0]).toMatch(/^manifest: .*0000000002\.json is not valid JSON/);
  });

  it('counts chunks of deleted notes still stored', async () => {
    const { store, cacheDir, writer } = await fresh();
    await writer.deleteNotes(['s1n0', 's2n3'], 'delete-1');
    const report = await verify(store, { cacheDir });
    expect(report.liveChunksOfDeletedNotes).toBe(4);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([expect.stringMatching(/^4 chunks of deleted notes .*compaction/)]);
  });
});
