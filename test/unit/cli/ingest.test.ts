import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { jsonLines, runCohort } from '../../helpers/cli.ts';
import { chunksPerNote, writeNoteSet } from '../../helpers/embed.ts';
import { tempDir, tinyBundle } from '../../helpers/encoder.ts';

let root: { dir: string; cleanup: () => Promise<void> };
let bundle: string;

beforeAll(async () => {
  root = await tempDir('cli-ingest-');
  bundle = await tinyBundle(root.dir);
});
afterAll(async () => root.cleanup());

describe('cohort ingest', () => {
  it('indexes the files, lists what it quarantined, and changes nothing when run again', {
    timeout: 60_000,
  }, async () => {
    const set = await writeNoteSet(join(root.dir, 'notes'));
    const data = join(root.dir, 'index');
    const first = await runCohort(['ingest', set.root, '--data', data, '--model', bundle, '--json']);
    expect(first.stderr).not.toContain('Patient denies');
    expect(first.code).toBe(0);
    const summary = jsonLines(first.stdout).at(-1)!;
    expect(Object.keys(summary).sort()).toEqual(
      ['chunks', 'chunks_per_s', 'notes', 'objects', 'quarantined', 'seconds', 'skipped'].sort(),
    );
    expect(summary['objects']).toBe(set.files.length);
    expect(summary['notes']).toBe(set.noteIds.length);
    expect(summary['skipped']).toBe(0);
    const quarantined = summary['quarantined'] as { source: string; reason: string }[];
    expect(quarantined.map((q) => q.reason).sort()).toEqual(set.quarantineReasons);
    expect(quarantined.find((q) => q.reason === 'missing text')?.source).toMatch(/batch-0\.jsonl line 4$/);
    const { perNote, chunks } = await chunksPerNote(new LocalDirectoryStore(data), join(root.dir, 'cache'));
    expect([...perNote.keys()].sort()).toEqual(set.noteIds);
    expect(chunks).toBe(summary['chunks']);

    const again = await runCohort(['ingest', set.root, '--data', data, '--model', bundle, '--json']);
    const second = jsonLines(again.stdout).at(-1)!;
    expect(second).toMatchObject({
      objects: set.files.length,
      notes: 0,
      chunks: 0,
      skipped: set.files.length,
    });
    const human = await runCohort(['ingest', set.root, '--data', data, '--model', bundle]);
    expect(human.stdout).toContain(`nothing to do: all ${set.files.length} files are already indexed`);
    const after = await chunksPerNote(new LocalDirectoryStore(data), join(root.dir, 'cache2'));
    expect(after.chunks).toBe(chunks);
  });

  it('fails with a clear message when the paths hold no files', async () => {
    const empty = join(root.dir, 'empty');
    await import('node:fs/promises').then((fs) => fs.mkdir(empty, { recursive: true }));
    const result = await runCohort(['ingest', empty, '--data', join(root.dir, 'i2'), '--model', bundle]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('no files found');
  });
});
