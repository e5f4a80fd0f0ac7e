import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJob } from '../../../functions/embed/src/job.ts';
import { S3ObjectSource } from '../../../functions/embed/src/sources.ts';
import { makeJobSpec } from '../../../functions/embed/src/spec.ts';
import { Encoder } from '../../../layers/encoder/src/encoder.ts';
import { IndexReader } from '../../../layers/index/src/reader.ts';
import { S3Store } from '../../../layers/index/src/store/s3.ts';
import { NoteTextStore } from '../../../layers/index/src/texts.ts';
import { chunksPerNote, jsonlNote, noteText, sequencer } from '../../helpers/embed.ts';
import { tempDir, tinyBundle } from '../../helpers/encoder.ts';
import { type ConditionalS3Server, startConditionalS3Server } from '../../helpers/s3-conditional-server.ts';

let server: ConditionalS3Server;
let root: { dir: string; cleanup: () => Promise<void> };
let encoder: Encoder;
let s3: S3Client;
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

beforeAll(async () => {
  server = await startConditionalS3Server();
  root = await tempDir('embed-overlap-');
  encoder = await Encoder.load(await tinyBundle(root.dir), { provider: 'cpu', threads: 1 });
  s3 = new S3Client({ endpoint: server.endpoint, forcePathStyle: true, region: 'us-east-1', credentials });
});
afterAll(async () => {
  await encoder.close();
  s3.destroy();
  await server.close();
  await root.cleanup();
});

let seq = 1;
let run = 0;
async function upload(key: string, lines: string[]) {
  const body = `${lines.join('\n')}\n`;
  const out = await s3.send(new PutObjectCommand({ Bucket: 'notes', Key: key, Body: body }));
  return { bucket: 'notes', key, etag: out.ETag!, sequencer: sequencer(seq++), size: body.length };
}

/** A fresh index and the pieces to run jobs on it (conditional writes enforced, as on S3). */
function freshIndex() {
  const prefix = `idx-${run++}`;
  const store = new S3Store({
    bucket: 'index',
    prefix,
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials,
    baseDelayMs: 1,
  });
  const job = (spec: ReturnType<typeof makeJobSpec>, beforeCommit?: (id: string) => Promise<void>) =>
    runJob(spec, {
      store,
      source: new S3ObjectSource(s3),
      encoder,
      workDir: join(root.dir, 'work'),
      M: 8,
      efConstruction: 40,
      ...(beforeCommit ? { beforeCommit } : {}),
    });
  return { store, job, uri: `s3://index/${prefix}` };
}

async function textOf(store: S3Store, reader: IndexReader, noteId: string): Promise<string | undefined> {
  const [query] = (await encoder.embed(['atrial fibrillation'])).embeddings;
  const hit = (await reader.search(query!, { k: 100, exact: true })).find((h) => h.chunk.noteId === noteId);
  return hit ? new NoteTextStore(store).get(hit.chunk) : undefined;
}

describe('two jobs over overlapping objects', () => {
  it('end with each note once, at the newest version, when the older job commits last', async () => {
    const { store, job, uri } = freshIndex();
    const key = `incoming/${run}/a.jsonl`;
    const v1 = await upload(key, [jsonlNote('a1', 'p1', noteText(11)), jsonlNote('a2', 'p1', noteText(12))]);
    const other = await upload(`incoming/${run}/b.jsonl`, [jsonlNote('b1', 'p2', noteText(13))]);
    // The old job reads v1, then waits before its commit while v2 is uploaded and indexed.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let paused!: () => void;
    const reachedGate = new Promise<void>((resolve) => {
      paused = resolve;
    });
    const oldJob = job(makeJobSpec(uri, [v1, other]), async () => {
      paused();
      await gate;
    });
    await reachedGate;
    const v2 = await upload(key, [jsonlNote('a1', 'p1', noteText(21)), jsonlNote('a3', 'p1', noteText(23))]);
    const newReport = await job(makeJobSpec(uri, [v2]));
    expect(newReport.notes).toBe(2);
    release();
    const oldReport = await oldJob;
    expect(oldReport.skipped.superseded).toBe(1);

    const { perNote } = await chunksPerNote(store, join(root.dir, `cache-${run}`));
    expect([...perNote.keys()].sort()).toEqual(['a1', 'a3', 'b1']);
    const reader = await IndexReader.open(store, { cacheDir: join(root.dir, `cache-${run}-r`) });
    expect(await textOf(store, reader, 'a1')).toBe(noteText(21));
  });

  it('end with each note once, at the newest version, when both run at once and again', async () => {
    const { store, job, uri } = freshIndex();
    const key = `incoming/${run}/a.jsonl`;
    const v1 = await upload(key, [jsonlNote('c1', 'p1', noteText(31)), jsonlNote('c2', 'p1', noteText(32))]);
    const first = makeJobSpec(uri, [v1]);
    await job(first);
    const v2 = await upload(key, [jsonlNote('c1', 'p1', noteText(41))]);
    const second = makeJobSpec(uri, [v2]);
    // A retried old job and the new one, concurrently; then both once more (repeated events).
    await Promise.all([job(first), job(second)]);
    await Promise.all([job(second), job(first)]);
    const { perNote } = await chunksPerNote(store, join(root.dir, `cache-${run}`));
    // c2 left the object in v2: the commit that indexed v2 tombstoned it.
    expect([...perNote.keys()].sort()).toEqual(['c1']);
    const reader = await IndexReader.open(store, { cacheDir: join(root.dir, `cache-${run}-r`) });
    expect(await textOf(store, reader, 'c1')).toBe(noteText(41));
  });
});
