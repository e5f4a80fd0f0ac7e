import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXIT_TEMPFAIL, main } from '../../../infra/jobs/maintenance.ts';
import { ManifestStore } from '../../../layers/index/src/manifest.ts';
import { localIndex, syntheticSegment } from '../../helpers/index.ts';

const dims = 8;
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'infra-maintenance-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Three small segments of notes `<prefix>0..4` (two chunks a note), one note of each deleted. */
async function indexWithDeletes(name: string) {
  const { dir, store, writer, workDir } = localIndex(root, name, { dims, modelFingerprint: 'sha256:m' });
  await mkdir(workDir, { recursive: true });
  for (const [seed, prefix] of ['a', 'b', 'c'].entries()) {
    const input = syntheticSegment(10, dims, seed + 1, (i) => ({
      noteId: `${prefix}${Math.floor(i / 2)}`,
      patientId: `p${i % 3}`,
      section: 'hpi',
      start: 0,
      end: 10,
      tokens: 5,
      assertions: [],
      flags: [],
      source: { key: `incoming/${prefix}.jsonl`, sequencer: '0A' },
    }));
    await writer.addSegment(input, { changeId: `job-${prefix}` });
  }
  await writer.deleteNotes(['a0', 'b1', 'c2'], 'delete-1');
  return { dir, manifests: new ManifestStore(store) };
}

describe('maintenance job', () => {
  it('compacts the index into one segment without the deleted notes and exits 0', async () => {
    const { dir, manifests } = await indexWithDeletes('index');
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((line: string) => lines.push(line));
    try {
      expect(await main({ INDEX_URI: dir, WORK_DIR: root })).toBe(0);
    } finally {
      spy.mockRestore();
    }
    const latest = (await manifests.latest())!;
    expect(latest.segments).toHaveLength(1);
    expect(latest.segments[0]!.count).toBe(24);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged[0]).toMatchObject({ message: 'index compacted', mergedSegments: 3, removedChunks: 6 });
    expect(logged[1]).toMatchObject({ message: 'index garbage collected', conflicts: 0 });
    // Counts and versions only: no note or patient ids in the logs.
    expect(lines.join('\n')).not.toMatch(/"a0"|"b1"|"c2"|"p[0-2]"/);
  });

  it('exits 1 without INDEX_URI and 75 (retry) when the store cannot be reached', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      expect(await main({})).toBe(1);
      const unreachable = {
        INDEX_URI: 's3://cohort-index/',
        AWS_REGION: 'eu-west-1',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        WORK_DIR: root,
      };
      const saved = { ...process.env };
      // The S3 client reads its endpoint and credentials from the process: point it at a closed port.
      Object.assign(process.env, unreachable, { AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9' });
      try {
        expect(await main(unreachable)).toBe(EXIT_TEMPFAIL);
      } finally {
        process.env = saved;
      }
    } finally {
      errors.mockRestore();
    }
  });
});
