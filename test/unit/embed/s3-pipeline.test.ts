import { join } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DISPATCHER_ENV } from '../../../functions/embed/src/config.ts';
import { createHandler } from '../../../functions/embed/src/handlers/dispatcher.ts';
import { runJob } from '../../../functions/embed/src/job.ts';
import { S3ObjectSource } from '../../../functions/embed/src/sources.ts';
import { readJobSpec } from '../../../functions/embed/src/spec.ts';
import type { JobSubmission, JobSubmitter } from '../../../functions/embed/src/submitter.ts';
import { Encoder } from '../../../layers/encoder/src/encoder.ts';
import { IndexReader } from '../../../layers/index/src/reader.ts';
import { openStore } from '../../../layers/index/src/store/index.ts';
import { NoteTextStore } from '../../../layers/index/src/texts.ts';
import { jsonlNote, noteText, s3Event, sequencer, sqsRecord } from '../../helpers/embed.ts';
import { tempDir, tinyBundle } from '../../helpers/encoder.ts';
import { type RunningS3rver, startS3rver } from '../../helpers/s3rver.ts';

let server: RunningS3rver;
let root: { dir: string; cleanup: () => Promise<void> };
let encoder: Encoder;
let s3: S3Client;

beforeAll(async () => {
  server = await startS3rver(['notes', 'index']);
  root = await tempDir('embed-s3-');
  encoder = await Encoder.load(await tinyBundle(root.dir), { provider: 'cpu', threads: 1 });
  s3 = new S3Client({
    endpoint: server.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: server.credentials,
  });
});
afterAll(async () => {
  await encoder.close();
  s3.destroy();
  await server.close();
  await root.cleanup();
});

class RecordingSubmitter implements JobSubmitter {
  readonly submitted: JobSubmission[] = [];
  async submit(job: JobSubmission) {
    this.submitted.push(job);
    return { submittedId: `batch-${this.submitted.length}` };
  }
}

describe('the pipeline against an S3-protocol server', () => {
  it('indexes uploaded notes from their S3 events, and a delete event removes them', async () => {
    let seq = 100;
    const upload = async (key: string, body: string, metadata?: Record<string, string>) => {
      const out = await s3.send(
        new PutObjectCommand({
          Bucket: 'notes',
          Key: key,
          Body: body,
          ...(metadata ? { Metadata: metadata } : {}),
        }),
      );
      return s3Event('Object Created', {
        bucket: 'notes',
        key,
        size: Buffer.byteLength(body),
        etag: out.ETag!,
        sequencer: sequencer(seq++),
      });
    };
    const events = [
      await upload(
        'incoming/batch.jsonl',
        [jsonlNote('s1', 'p1', noteText(1)), jsonlNote('s2', 'p2', noteText(2)), '{"noteId":"s3"}'].join(
          '\n',
        ),
      ),
      await upload('incoming/free.txt', noteText(3), { 'patient-id': 'p3', 'note-id': 's4' }),
      await upload('elsewhere/ignored.txt', noteText(4), { 'patient-id': 'p4', 'note-id': 's5' }),
    ];
    const storeOptions = {
      s3: {
        endpoint: server.endpoint,
        forcePathStyle: true,
        region: 'us-east-1',
        credentials: server.credentials,
      },
    };
    const submitter = new RecordingSubmitter();
    const handler = createHandler({
      env: {
        [DISPATCHER_ENV.indexUri]: 's3://index/idx',
        [DISPATCHER_ENV.notesBucket]: 'notes',
        [DISPATCHER_ENV.notesPrefix]: 'incoming/',
        [DISPATCHER_ENV.jobQueue]: 'q',
        [DISPATCHER_ENV.jobDefinition]: 'd',
      },
      submitter,
      storeOptions,
    });
    // The same event delivered twice, as SQS may.
    const records = [...events, events[0]].map((e, i) => sqsRecord(`m${i}`, e));
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      written.push(String(chunk));
      return true;
    });
    try {
      expect(await handler({ Records: records })).toEqual({ batchItemFailures: [] });
    } finally {
      spy.mockRestore();
    }
    expect(submitter.submitted).toHaveLength(1);
    // The batch's counts go out as embedded metrics.
    const emf = written.filter((l) => l.includes('"CloudWatchMetrics"')).map((l) => JSON.parse(l));
    expect(emf).toHaveLength(1);
    expect(emf[0]).toMatchObject({
      service: 'cohort-embed-dispatcher',
      JobsSubmitted: 1,
      DuplicateEvents: 1,
      FailedMessages: 0,
    });

    const spec = await readJobSpec(submitter.submitted[0]!.specUri, { s3: storeOptions });
    expect(spec.objects.map((o) => o.key)).toEqual(['incoming/batch.jsonl', 'incoming/free.txt']);
    const store = openStore(spec.index, storeOptions);
    const report = await runJob(spec, {
      store,
      source: new S3ObjectSource(s3),
      encoder,
      workDir: join(root.dir, 'work'),
      M: 8,
      efConstruction: 40,
    });
    expect(report.notes).toBe(3);
    expect(report.quarantined.map((q) => [q.source.key, q.reason])).toEqual([
      ['incoming/batch.jsonl', 'missing text'],
    ]);

    const reader = await IndexReader.open(store, { cacheDir: join(root.dir, 'cache') });
    expect(reader.stats().notes).toBe(3);
    const [query] = (await encoder.embed([noteText(3)])).embeddings;
    const hits = await reader.search(query!, { k: 3, exact: true });
    expect(hits[0]!.chunk.noteId).toBe('s4');
    expect(hits[0]!.chunk.source).toMatchObject({ key: 'incoming/free.txt', sequencer: sequencer(101) });
    const text = await new NoteTextStore(store).get(hits[0]!.chunk);
    expect(text?.slice(hits[0]!.chunk.start, hits[0]!.chunk.end).length).toBeGreaterThan(0);

    // Deleting the JSONL object tombstones its notes without a job.
    await s3.send(new DeleteObjectCommand({ Bucket: 'notes', Key: 'incoming/batch.jsonl' }));
    const deletion = s3Event('Object Deleted', {
      bucket: 'notes',
      key: 'incoming/batch.jsonl',
      sequencer: sequencer(seq++),
    });
    expect(await handler({ Records: [sqsRecord('d1', deletion), sqsRecord('d2', deletion)] })).toEqual({
      batchItemFailures: [],
    });
    expect(submitter.submitted).toHaveLength(1);
    await reader.refresh();
    const stats = reader.stats();
    expect(stats.notes).toBe(1);
    expect((await reader.search(query!, { k: 10, exact: true })).map((h) => h.chunk.noteId)).toEqual(
      expect.arrayContaining(['s4']),
    );
    expect(new Set((await reader.search(query!, { k: 10, exact: true })).map((h) => h.chunk.noteId))).toEqual(
      new Set(['s4']),
    );

    // A late re-run of the job for the deleted version does not bring its notes back.
    const rerun = await runJob(spec, {
      store,
      source: new S3ObjectSource(s3),
      encoder,
      workDir: join(root.dir, 'work'),
    });
    expect(rerun.notes).toBe(0);
    await reader.refresh();
    expect(reader.stats().notes).toBe(1);
  });
});
