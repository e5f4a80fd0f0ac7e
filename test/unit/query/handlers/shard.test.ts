import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShardHandler } from '../../../../functions/query/src/handlers/shard.ts';
import type { ShardResponse } from '../../../../functions/query/src/searcher.ts';
import { openShardSearcher } from '../../../../functions/query/src/shards.ts';
import { tempDir } from '../../../helpers/encoder.ts';
import { localIndex, syntheticSegment } from '../../../helpers/index.ts';

const DIMS = 16;
let root: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-shard-handler-'));
});
afterAll(async () => cleanup());

const notesOf = (r: ShardResponse) => {
  if (r.action !== 'search') throw new Error(`expected a search answer, got ${JSON.stringify(r)}`);
  return new Set(r.hits.map((h) => h.chunk.noteId));
};

describe('shard handler', () => {
  it('re-checks the manifest in every warm container after the interval, not only where a refresh request lands', async () => {
    const { dir, writer } = localIndex(root, 'index', { dims: DIMS, modelFingerprint: 'sha256:test' });
    const input = syntheticSegment(30, DIMS, 1, (i) => ({
      noteId: `n${i}`,
      patientId: `p${i}`,
      section: 'hospital_course',
      start: 0,
      end: 10,
      tokens: 4,
      assertions: [],
      flags: [],
    }));
    await writer.addSegment(input, { changeId: 'one' });
    let clock = 0;
    // Two warm containers of one shard function: Lambda sends each request to either.
    const container = (name: string) =>
      createShardHandler(
        () => openShardSearcher({ indexUri: dir, shard: 0, count: 1, cacheDir: join(root, name) }),
        { refreshIntervalMs: 5000, now: () => clock },
      );
    const a = container('a');
    const b = container('b');
    const search = { action: 'search' as const, vector: Array.from(input.vectors.subarray(0, DIMS)), k: 30 };
    expect(notesOf(await a(search)).has('n0')).toBe(true);
    expect(notesOf(await b(search)).has('n0')).toBe(true);

    await writer.deleteNotes(['n0'], 'delete-n0');
    // The API's refresh request lands on container a only.
    expect(await a({ action: 'refresh' })).toMatchObject({ action: 'refresh', changed: true });
    expect(notesOf(await a(search)).has('n0')).toBe(false);
    // Within the interval container b may still serve the version it loaded …
    clock = 4999;
    expect(await b({ action: 'status' })).toMatchObject({ manifestVersion: 1 });
    // … but once it has passed, b checks the manifest itself before answering.
    clock = 5000;
    expect(notesOf(await b(search)).has('n0')).toBe(false);
    expect(await b({ action: 'status' })).toMatchObject({ manifestVersion: 2, chunks: 29 });
  });
});
