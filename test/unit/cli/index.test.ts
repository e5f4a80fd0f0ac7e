import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { segmentKey } from '../../../layers/index/src/index.ts';
import type { ChunkMeta } from '../../../layers/index/src/segment/types.ts';
import { jsonLines, runCohort } from '../../helpers/cli.ts';
import { tempDir } from '../../helpers/encoder.ts';
import { localIndex } from '../../helpers/index.ts';

const dims = 16;
const indexOptions = { dims, modelFingerprint: 'sha256:test-model' };
let root: string;
let cleanup: () => Promise<void>;
let data: string;

/** 12 notes of 2 chunks each, patients p0..p2 (4 notes each), deterministic vectors. */
function segmentInput() {
  const n = 24;
  const vectors = new Float32Array(n * dims).map(
    (_, i) => Math.sin(i * 12.9898) * 0.5 + (i % dims === 0 ? 1 : 0),
  );
  const chunks: ChunkMeta[] = Array.from({ length: n }, (_, i) => ({
    noteId: `n${Math.floor(i / 2)}`,
    patientId: `p${Math.floor(i / 2) % 3}`,
    section: 'history_of_present_illness',
    start: (i % 2) * 50,
    end: (i % 2) * 50 + 50,
    tokens: 20,
    assertions: [],
    flags: [],
  }));
  return { vectors, chunks };
}

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir());
  const index = localIndex(root, 'index', { ...indexOptions, fsync: true });
  data = index.dir;
  const writer = index.writer;
  await writer.addSegment(segmentInput(), { changeId: 'job-1' });
});
afterAll(() => cleanup());

const env = () => ({ COHORT_CACHE_DIR: join(root, 'cache') });

describe('cohort index', () => {
  it('prints stats as one JSON line', async () => {
    const out = await runCohort(['index', 'stats', '--data', data, '--json'], env());
    expect(out.code, out.stderr).toBe(0);
    expect(jsonLines(out.stdout)[0]).toMatchObject({
      manifestVersion: 1,
      segments: 1,
      chunks: 24,
      notes: 12,
      patients: 3,
      tombstones: 0,
      model: { fingerprint: 'sha256:test-model' },
    });
  });

  it("deletes a patient's notes by tombstones, once, and the stats show them gone", async () => {
    const first = await runCohort(['index', 'delete', '--data', data, '--patient', 'p1'], env());
    expect(first.code, first.stderr).toBe(0);
    expect(jsonLines(first.stdout)[0]).toEqual({ deletedNotes: 4, manifestVersion: 2, applied: true });
    const again = await runCohort(['index', 'delete', '--data', data, '--patient', 'p1'], env());
    expect(jsonLines(again.stdout)[0]).toEqual({ deletedNotes: 4, manifestVersion: 2, applied: false });
    const note = await runCohort(['index', 'delete', '--data', data, '--note', 'n0'], env());
    expect(jsonLines(note.stdout)[0]).toMatchObject({ deletedNotes: 1, manifestVersion: 3 });
    const stats = await runCohort(['index', 'stats', '--data', data, '--json'], env());
    expect(jsonLines(stats.stdout)[0]).toMatchObject({
      manifestVersion: 3,
      chunks: 14,
      notes: 7,
      patients: 2,
      tombstones: 5,
    });
  });

  it('asks for ids when none are given', async () => {
    const out = await runCohort(['index', 'delete', '--data', data], env());
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/name --note or --patient/);
  });
});

describe('cohort index verify and compact', () => {
  let small: string;
  let segmentIds: string[];

  beforeAll(async () => {
    const index = localIndex(root, 'small-segments', { ...indexOptions, fsync: true });
    small = index.dir;
    const writer = index.writer;
    const { vectors, chunks } = segmentInput();
    segmentIds = [];
    for (let s = 0; s < 4; s++) {
      const r = await writer.addSegment(
        {
          vectors: vectors.slice(s * 6 * dims, (s + 1) * 6 * dims),
          chunks: chunks.slice(s * 6, (s + 1) * 6),
        },
        { changeId: `job-${s}` },
      );
      segmentIds.push(r.descriptor!.id);
    }
    await writer.deleteNotes(['n0', 'n5'], 'delete-1');
  });

  it('verify exits 1 while chunks of deleted notes are stored; compact drops them; verify then exits 0', async () => {
    const pending = await runCohort(['index', 'verify', '--data', small], env());
    expect(pending.code).toBe(1);
    expect(pending.stdout).toMatch(/4 chunks of deleted notes/);

    const compacted = await runCohort(['index', 'compact', '--data', small], env());
    expect(compacted.code, compacted.stderr).toBe(0);
    expect(jsonLines(compacted.stdout)).toEqual([{ merged: 4, removedChunks: 4, manifestVersion: 6 }]);

    const sound = await runCohort(['index', 'verify', '--data', small], env());
    expect(sound.code, sound.stdout + sound.stderr).toBe(0);
    expect(jsonLines(sound.stdout)).toEqual([{ ok: true, segments: 1, problems: 0 }]);
  });

  it('verify exits non-zero on a corrupted store and prints what is wrong', async () => {
    const { dir: corrupt, writer } = localIndex(root, 'corrupt', { ...indexOptions, fsync: true });
    const r = await writer.addSegment(segmentInput(), { changeId: 'job-1' });
    await writeFile(join(corrupt, segmentKey(r.descriptor!.id, 'graph.hnsw')), 'garbage');
    const out = await runCohort(['index', 'verify', '--data', corrupt], env());
    expect(out.code).not.toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`segment ${r.descriptor!.id}: graph.hnsw: 7 bytes`));
    expect(JSON.parse(lines.at(-1)!)).toEqual({ ok: false, segments: 1, problems: 1 });
  });
});

describe('cohort index gc', () => {
  it('keeps garbage within the grace period, reports it on a dry run, then deletes it', async () => {
    const index = localIndex(root, 'gc', { ...indexOptions, fsync: true });
    const { vectors, chunks } = segmentInput();
    const half = (s: number) => ({
      vectors: vectors.slice(s * 12 * dims, (s + 1) * 12 * dims),
      chunks: chunks.slice(s * 12, (s + 1) * 12),
    });
    const a = await index.writer.addSegment(half(0), { changeId: 'job-a' });
    await index.writer.addSegment(half(1), { changeId: 'job-b' });
    await index.writer.manifests.commit({ id: 'drop-a', removeSegments: [a.descriptor!.id] });

    const within = await runCohort(['index', 'gc', '--data', index.dir, '--json'], env());
    expect(within.code, within.stderr).toBe(0);
    expect(jsonLines(within.stdout)[0]).toMatchObject({
      manifestVersion: 3,
      deletedObjects: 0,
      dryRun: false,
    });

    const args = ['index', 'gc', '--data', index.dir, '--grace', '0', '--keep', '1', '--json'];
    const dry = await runCohort([...args, '--dry-run'], env());
    expect(jsonLines(dry.stdout)[0]).toMatchObject({
      dryRun: true,
      deletedManifests: 2,
      deletedSegments: 1,
      deletedObjects: 6,
      conflicts: 0,
    });
    const done = await runCohort(args, env());
    expect(done.code, done.stderr).toBe(0);
    expect(jsonLines(done.stdout)[0]).toMatchObject({
      dryRun: false,
      deletedManifests: 2,
      deletedSegments: 1,
    });
    const sound = await runCohort(['index', 'verify', '--data', index.dir], env());
    expect(jsonLines(sound.stdout)).toEqual([{ ok: true, segments: 1, problems: 0 }]);
    const stats = await runCohort(['index', 'stats', '--data', index.dir, '--json'], env());
    expect(jsonLines(stats.stdout)[0]).toMatchObject({ manifestVersion: 3, segments: 1, chunks: 12 });

    // compact --gc collects with the default grace period: nothing here is an hour old.
    const compacted = await runCohort(['index', 'compact', '--data', index.dir, '--gc'], env());
    expect(compacted.code, compacted.stderr).toBe(0);
    expect(jsonLines(compacted.stdout)[0]).toMatchObject({
      merged: 0,
      manifestVersion: 3,
      gc: { dryRun: false, deletedObjects: 0, conflicts: 0 },
    });
  });

  it('refuses a grace period without a unit', async () => {
    const out = await runCohort(['index', 'gc', '--data', data, '--grace', '60'], env());
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/not a duration/);
  });
});
