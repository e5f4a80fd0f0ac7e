import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LocalSearcher } from '../../../functions/query/src/searcher.ts';
import { IndexReader } from '../../../layers/index/src/reader.ts';
import { tempDir } from '../../helpers/encoder.ts';
import { localIndex, syntheticSegment } from '../../helpers/index.ts';

const DIMS = 16;
let root: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-searcher-'));
});
afterAll(async () => cleanup());

const segment = (n: number, seed: number, note: (i: number) => string) =>
  syntheticSegment(n, DIMS, seed, (i) => ({
    noteId: note(i),
    patientId: `p${i % 5}`,
    section: 'hospital_course',
    start: 0,
    end: 10,
    tokens: 4,
    assertions: [],
    flags: [],
  }));

describe('LocalSearcher', () => {
  it('counts the live chunks once per loaded manifest, not on every search, and again after a refresh', async () => {
    const { store, writer } = localIndex(root, 'counted', { dims: DIMS, modelFingerprint: 'sha256:test' });
    await writer.addSegment(
      segment(40, 1, (i) => `a${i}`),
      { changeId: 'one' },
    );
    const reader = await IndexReader.open(store, { cacheDir: join(root, 'counted-cache') });
    const searcher = new LocalSearcher(reader, store);
    const stats = vi.spyOn(reader, 'stats');
    const query = segment(1, 99, () => 'q').vectors;

    const first = await searcher.search(query, { k: 5 });
    const second = await searcher.search(query, { k: 5, minScore: -1 });
    expect(await searcher.status()).toMatchObject({ manifestVersion: 1, chunks: 40 });
    expect([first.chunks, second.chunks, second.hits.length]).toEqual([40, 40, 40]);
    expect(stats).toHaveBeenCalledTimes(1);

    await writer.addSegment(
      segment(10, 2, (i) => `b${i}`),
      { changeId: 'two' },
    );
    await writer.deleteNotes(['a0', 'a1'], 'three');
    expect(await searcher.refresh()).toBe(true);
    const third = await searcher.search(query, { k: 5 });
    expect(third).toMatchObject({ manifestVersion: 3, chunks: 48 });
    expect(await searcher.status()).toMatchObject({ manifestVersion: 3, chunks: 48, segments: 2 });
    expect(stats).toHaveBeenCalledTimes(2);
  });
});
