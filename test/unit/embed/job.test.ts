import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJob } from '../../../functions/embed/src/job.ts';
import { collectFiles } from '../../../functions/embed/src/local.ts';
import { fileSha256, LocalFileSource, localObjectRef } from '../../../functions/embed/src/sources.ts';
import { jobReportKey, makeJobSpec } from '../../../functions/embed/src/spec.ts';
import { Encoder } from '../../../layers/encoder/src/encoder.ts';
import { IndexReader } from '../../../layers/index/src/reader.ts';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { NoteTextStore } from '../../../layers/index/src/texts.ts';
import { chunksPerNote, jsonlNote, noteText, writeNoteSet } from '../../helpers/embed.ts';
import { tempDir, tinyBundle } from '../../helpers/encoder.ts';

let root: { dir: string; cleanup: () => Promise<void> };
let encoder: Encoder;

beforeAll(async () => {
  root = await tempDir('embed-job-');
  encoder = await Encoder.load(await tinyBundle(root.dir), { provider: 'cpu', threads: 1 });
});
afterAll(async () => {
  await encoder.close();
  await root.cleanup();
});

describe('runJob on the directory store', () => {
  it('indexes every note once, quarantines bad records, stores texts and writes a report', async () => {
    const set = await writeNoteSet(join(root.dir, 'notes-a'));
    const store = new LocalDirectoryStore(join(root.dir, 'index-a'), { fsync: false });
    const refs = await Promise.all((await collectFiles([set.root])).map(localObjectRef));
    const spec = makeJobSpec(join(root.dir, 'index-a'), refs);
    const before = await Promise.all(set.files.map(fileSha256));
    const report = await runJob(spec, {
      store,
      source: new LocalFileSource(),
      encoder,
      partChunks: 8,
      encodeBlock: 16,
      M: 8,
      efConstruction: 40,
      workDir: join(root.dir, 'work'),
    });
    expect(report.objects).toBe(set.files.length);
    expect(report.notes).toBe(set.noteIds.length);
    expect(report.quarantined.map((q) => q.reason).sort()).toEqual(set.quarantineReasons);
    expect(report.parts).toBeGreaterThan(1);
    // Sources are read, never changed or removed, quarantined ones included.
    expect(await Promise.all(set.files.map(fileSha256))).toEqual(before);
    for (const q of report.quarantined) expect(q.source.key.startsWith(set.root)).toBe(true);
    expect((await collectFiles([set.root])).length).toBe(set.files.length);
    const stored = JSON.parse(new TextDecoder().decode(await store.get(jobReportKey(spec.id))));
    expect(stored.chunks).toBe(report.chunks);
    expect(Object.keys(stored.timings).sort()).toEqual(
      ['build', 'commit', 'encode', 'encodeWaitingForInput', 'read', 'upload', 'wall'].sort(),
    );

    const { perNote, chunks } = await chunksPerNote(store, join(root.dir, 'cache-a'));
    expect([...perNote.keys()].sort()).toEqual(set.noteIds);
    expect(chunks).toBe(report.chunks);

    // Search finds a note by its own chunk's text; the chunk names its source and the text store has it.
    const reader = await IndexReader.open(store, { cacheDir: join(root.dir, 'cache-a2') });
    const texts = new NoteTextStore(store);
    const text = await readFile(join(set.root, 'patients', 'tp0', 'notes', 't0.txt'), 'utf8');
    const [query] = (await encoder.embed([text.slice(0, 200)])).embeddings;
    const hits = await reader.search(query!, { k: 50, exact: true });
    const hit = hits.find((h) => h.chunk.noteId === 't0');
    expect(hit?.chunk.source?.key).toBe(join(set.root, 'patients', 'tp0', 'notes', 't0.txt'));
    expect(hit?.chunk.source?.sequencer).toMatch(/^[0-9A-F]+$/);
    const stored0 = await texts.get({ noteId: 't0', source: hit!.chunk.source });
    expect(stored0).toBe(text);
  });

  it('skips objects already indexed at the same version when run again', async () => {
    const set = await writeNoteSet(join(root.dir, 'notes-b'), { files: 1, textNotes: 1 });
    const store = new LocalDirectoryStore(join(root.dir, 'index-b'), { fsync: false });
    const refs = await Promise.all((await collectFiles([set.root])).map(localObjectRef));
    const spec = makeJobSpec(join(root.dir, 'index-b'), refs);
    const options = { store, source: new LocalFileSource(), encoder, workDir: join(root.dir, 'work') };
    const first = await runJob(spec, options);
    const versions = await store.list('manifests/')[Symbol.asyncIterator]().next();
    expect(versions.done).toBe(false);
    const second = await runJob(spec, options);
    expect(first.notes).toBe(set.noteIds.length);
    expect(second.notes).toBe(0);
    expect(second.skipped.indexed).toBe(set.files.length);
  });
});

describe('runJob progress', () => {
  it('logs counts, rates and an ETA every interval, never note text', async () => {
    const set = await writeNoteSet(join(root.dir, 'notes-c'), { files: 4, notesPerFile: 3, textNotes: 4 });
    const store = new LocalDirectoryStore(join(root.dir, 'index-c'), { fsync: false });
    const refs = await Promise.all((await collectFiles([set.root])).map(localObjectRef));
    const lines: { message: string; fields: Record<string, unknown> }[] = [];
    const record = (message: string, ...extra: Record<string, unknown>[]) =>
      lines.push({ message, fields: Object.assign({}, ...extra) });
    const progress: number[] = [];
    await runJob(makeJobSpec(join(root.dir, 'index-c'), refs), {
      store,
      source: new LocalFileSource(),
      encoder,
      partChunks: 4,
      encodeBlock: 4,
      workDir: join(root.dir, 'work'),
      progressIntervalMs: 5,
      logger: { info: record, warn: record, debug: record },
      onProgress: (p) => progress.push(p.objectsDone),
      // Slow the commits a little so that the job spans several progress intervals.
      beforeCommit: () => new Promise((resolve) => setTimeout(resolve, 10)),
    });
    const ticks = lines.filter((l) => l.message === 'embed progress');
    expect(ticks.length).toBeGreaterThan(1);
    for (const t of ticks)
      expect(t.fields).toMatchObject({
        objects: expect.stringMatching(/^\d+\/\d+$/),
        chunksPerSecond: expect.any(Number),
      });
    expect(ticks.some((t) => typeof t.fields['etaSeconds'] === 'number')).toBe(true);
    expect(progress.at(-1)).toBe(refs.length);
    const logged = JSON.stringify(lines);
    expect(logged).not.toContain('denies chest pain');
    expect(logged).not.toContain('apixaban');
  });
});

describe('runJob after a crash between claim and commit', () => {
  it('still tombstones the notes that the new version of a file no longer holds', async () => {
    const { mkdir, writeFile, utimes } = await import('node:fs/promises');
    const dir = join(root.dir, 'notes-d');
    await mkdir(dir, { recursive: true });
    const file = join(dir, 'a.jsonl');
    await writeFile(
      file,
      `${[jsonlNote('x1', 'p1', noteText(1)), jsonlNote('x2', 'p1', noteText(2))].join('\n')}\n`,
    );
    const store = new LocalDirectoryStore(join(root.dir, 'index-d'), { fsync: false });
    const options = { store, source: new LocalFileSource(), encoder, workDir: join(root.dir, 'work') };
    await runJob(makeJobSpec('index-d', [await localObjectRef(file)]), options);

    await writeFile(file, `${jsonlNote('x1', 'p1', noteText(3))}\n`);
    await utimes(file, new Date(), new Date(Date.now() + 60_000));
    const v2 = makeJobSpec('index-d', [await localObjectRef(file)]);
    // The first attempt dies after claiming the new version and before committing it.
    await expect(
      runJob(v2, {
        ...options,
        beforeCommit: async () => {
          throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    const retry = await runJob(v2, options);
    expect(retry.notes).toBe(1);
    const { perNote } = await chunksPerNote(store, join(root.dir, 'cache-d'));
    expect([...perNote.keys()]).toEqual(['x1']);
  });
});
