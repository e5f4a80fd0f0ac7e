import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommitConflictError } from '../../../layers/index/src/errors.ts';
import {
  applyChange,
  isChunkLive,
  type ManifestChange,
  ManifestStore,
} from '../../../layers/index/src/manifest.ts';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { S3Store } from '../../../layers/index/src/store/s3.ts';
import type { ObjectStore } from '../../../layers/index/src/store/types.ts';
import { type ConditionalS3Server, startConditionalS3Server } from '../../helpers/s3-conditional-server.ts';

const segment = (id: string, count = 10) => ({ id, count, sha256: id.padEnd(64, '0') });
const add = (id: string, extra: Partial<ManifestChange> = {}): ManifestChange => ({
  id: `job-${id}`,
  modelFingerprint: 'sha256:model',
  dims: 768,
  addSegments: [segment(id)],
  ...extra,
});

describe('applyChange', () => {
  it('derives the next version, keeping what the base had', () => {
    const v1 = applyChange(undefined, add('a'));
    const v2 = applyChange(v1, add('b'));
    expect(v1).toMatchObject({ version: 1, parent: null, modelFingerprint: 'sha256:model', dims: 768 });
    expect(v2).toMatchObject({ version: 2, parent: 1, commits: ['job-a', 'job-b'] });
    expect(v2.segments.map((s) => [s.id, s.addedIn])).toEqual([
      ['a', 1],
      ['b', 2],
    ]);
  });

  it('tombstones kill chunks of older segments only: a re-ingested note lives in its new segment', () => {
    const v1 = applyChange(undefined, add('old'));
    const v2 = applyChange(v1, add('new', { tombstoneNotes: ['note-1'] }));
    const tombstones = new Map(v2.tombstones.map((t) => [t.noteId, t.version]));
    const addedIn = (id: string) => v2.segments.find((s) => s.id === id)!.addedIn;
    expect(isChunkLive(tombstones, 'note-1', addedIn('old'))).toBe(false);
    expect(isChunkLive(tombstones, 'note-1', addedIn('new'))).toBe(true);
    expect(isChunkLive(tombstones, 'note-2', addedIn('old'))).toBe(true);
  });

  it('lets a compacted segment keep the age of its inputs, so a later delete is not undone', () => {
    const v1 = applyChange(undefined, add('a'));
    const v2 = applyChange(v1, add('b'));
    const v3 = applyChange(v2, { id: 'delete', tombstoneNotes: ['note-1'] });
    const v4 = applyChange(v3, {
      id: 'compact',
      removeSegments: ['a', 'b'],
      addSegments: [{ ...segment('ab', 20), addedIn: 2 }],
    });
    const tombstones = new Map(v4.tombstones.map((t) => [t.noteId, t.version]));
    expect(v4.segments.map((s) => s.id)).toEqual(['ab']);
    expect(isChunkLive(tombstones, 'note-1', v4.segments[0]!.addedIn)).toBe(false);
  });

  it('refuses to remove a segment that is gone, or to mix models or dimensions', () => {
    const v1 = applyChange(undefined, add('a'));
    expect(() => applyChange(v1, { id: 'c', removeSegments: ['zz'] })).toThrow(CommitConflictError);
    expect(() => applyChange(v1, add('b', { modelFingerprint: 'sha256:other' }))).toThrow(
      /built with model sha256:other/,
    );
    expect(() => applyChange(v1, add('b', { dims: 32 }))).toThrow(/32 dimensions/);
  });
});

/** Runs the commit suite against a store that enforces create-only writes. */
function describeCommits(
  name: string,
  make: () => Promise<{ store: ObjectStore; close: () => Promise<void> }>,
) {
  describe(`ManifestStore on ${name}`, () => {
    let store: ObjectStore;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ store, close } = await make());
    });
    afterAll(() => close());

    it('loses nothing when 8 writers commit 20 changes each at the same time', async () => {
      const manifests = new ManifestStore(store, { prefix: 'race/' });
      const results = await Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          const landed = [];
          for (let c = 0; c < 20; c++) landed.push(await manifests.commit(add(`w${w}-c${c}`)));
          return landed;
        }),
      );
      const latest = (await manifests.latest())!;
      expect(latest.version).toBe(160);
      expect(new Set(latest.segments.map((s) => s.id)).size).toBe(160);
      expect(results.flat().every((r) => r.applied)).toBe(true);
      // Writers really raced: some commits had to rebase.
      expect(results.flat().some((r) => r.retries > 0)).toBe(true);
      // Every version exists once, each derived from the one before.
      expect(await manifests.versions()).toEqual(Array.from({ length: 160 }, (_, i) => i + 1));
      for (const v of [1, 2, 80, 160]) expect((await manifests.read(v)).parent).toBe(v === 1 ? null : v - 1);
    }, 120_000);

    it('makes a retried commit a no-op', async () => {
      const manifests = new ManifestStore(store, { prefix: 'idempotent/' });
      const first = await manifests.commit(add('x'));
      const again = await manifests.commit(add('x'));
      expect(first.applied).toBe(true);
      expect(again).toMatchObject({ applied: false, manifest: { version: 1 } });
      expect(await manifests.versions()).toEqual([1]);
    });

    it('lets exactly one of two compactions of the same segments land', async () => {
      const manifests = new ManifestStore(store, { prefix: 'compact/' });
      await manifests.commit(add('a'));
      await manifests.commit(add('b'));
      const compact = (id: string) =>
        manifests.commit({
          id,
          removeSegments: ['a', 'b'],
          addSegments: [{ ...segment(id, 20), addedIn: 2 }],
        });
      const outcomes = await Promise.allSettled([compact('ab-1'), compact('ab-2')]);
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
      expect(
        outcomes.filter((o) => o.status === 'rejected').map((o) => (o as PromiseRejectedResult).reason),
      ).toEqual([expect.any(CommitConflictError)]);
      expect((await manifests.latest())!.segments).toHaveLength(1);
    });
  });
}

describeCommits('a local directory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'manifests-'));
  return { store: new LocalDirectoryStore(dir), close: () => rm(dir, { recursive: true, force: true }) };
});

let server: ConditionalS3Server | undefined;
describeCommits('an S3-protocol server that enforces conditional writes', async () => {
  server = await startConditionalS3Server({ conflictOnConcurrentWrites: true });
  return {
    store: new S3Store({
      bucket: 'index',
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      baseDelayMs: 1,
    }),
    close: () => server!.close(),
  };
});
