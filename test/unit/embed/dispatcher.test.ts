import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dispatcher, type QueueMessage } from '../../../functions/embed/src/dispatcher.ts';
import { JobSubmitError } from '../../../functions/embed/src/errors.ts';
import { parseJobSpec } from '../../../functions/embed/src/spec.ts';
import type { JobSubmission, JobSubmitter } from '../../../functions/embed/src/submitter.ts';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { s3Event, sequencer } from '../../helpers/embed.ts';
import { tempDir } from '../../helpers/encoder.ts';

/** Records submissions; fails the calls whose numbers are in `failOn` (the AWS Batch boundary). */
class RecordingSubmitter implements JobSubmitter {
  readonly submitted: JobSubmission[] = [];
  private calls = 0;
  constructor(private readonly failOn: ReadonlySet<number> = new Set()) {}
  async submit(job: JobSubmission) {
    if (this.failOn.has(this.calls++)) throw new JobSubmitError('batch unavailable');
    this.submitted.push(job);
    return { submittedId: `batch-${this.submitted.length}` };
  }
}

let root: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  root = await tempDir('embed-dispatch-');
});
afterAll(async () => root.cleanup());

let n = 0;
function setup(limits = { maxObjects: 100, maxBytes: 1e9, maxAgeSeconds: 3600 }, failOn?: Set<number>) {
  const store = new LocalDirectoryStore(join(root.dir, `index-${n++}`), { fsync: false });
  const submitter = new RecordingSubmitter(failOn);
  const dispatcher = new Dispatcher({
    store,
    indexUri: 's3://index-bucket/idx',
    notesBucket: 'notes',
    notesPrefix: 'incoming/',
    limits,
    submitter,
  });
  return { store, submitter, dispatcher };
}

const created = (
  id: string,
  key: string,
  seq: number,
  extra: { size?: number; time?: string; bucket?: string; versionId?: string } = {},
): QueueMessage => ({
  messageId: id,
  body: JSON.stringify(
    s3Event(
      'Object Created',
      {
        bucket: extra.bucket ?? 'notes',
        key,
        size: extra.size ?? 10,
        etag: `e-${key}-${seq}`,
        sequencer: sequencer(seq),
        ...(extra.versionId ? { versionId: extra.versionId } : {}),
      },
      extra.time,
    ),
  ),
});

async function specOf(store: LocalDirectoryStore, specUri: string) {
  const key = specUri.replace('s3://index-bucket/idx/', '');
  return parseJobSpec(new TextDecoder().decode(await store.get(key)), key);
}

describe('Dispatcher', () => {
  it('writes one spec per group and submits a job naming it', async () => {
    const { store, submitter, dispatcher } = setup();
    const result = await dispatcher.handle([
      created('m1', 'incoming/a.txt', 1),
      created('m2', 'incoming/b.txt', 2),
    ]);
    expect(result.batchItemFailures).toEqual([]);
    expect(submitter.submitted).toHaveLength(1);
    const job = submitter.submitted[0]!;
    expect(job.specUri).toBe(`s3://index-bucket/idx/jobs/${job.jobId}.json`);
    const spec = await specOf(store, job.specUri);
    expect(spec.id).toBe(job.jobId);
    expect(spec.index).toBe('s3://index-bucket/idx');
    expect(spec.objects.map((o) => [o.bucket, o.key, o.sequencer])).toEqual([
      ['notes', 'incoming/a.txt', sequencer(1)],
      ['notes', 'incoming/b.txt', sequencer(2)],
    ]);
  });

  it('ignores other buckets, keys outside the prefix and event types it does not act on', async () => {
    const { submitter, dispatcher } = setup();
    const restore = {
      messageId: 'm4',
      body: JSON.stringify({
        ...s3Event('Object Created', { bucket: 'notes', key: 'incoming/r.txt', sequencer: '01' }),
        'detail-type': 'Object Restore Completed',
      }),
    };
    const result = await dispatcher.handle([
      created('m1', 'incoming/a.txt', 1, { bucket: 'other' }),
      created('m2', 'archive/a.txt', 2),
      restore,
      created('m3', 'incoming/c.txt', 3),
    ]);
    expect(result.ignored).toBe(3);
    expect(submitter.submitted).toHaveLength(1);
    expect(result.batchItemFailures).toEqual([]);
  });

  it('drops duplicate deliveries by bucket, key, version id and sequencer, and keeps the newest version of a key', async () => {
    const { store, submitter, dispatcher } = setup();
    const result = await dispatcher.handle([
      created('m1', 'incoming/a.txt', 5, { versionId: 'v1' }),
      created('m2', 'incoming/a.txt', 5, { versionId: 'v1' }),
      created('m3', 'incoming/a.txt', 4, { versionId: 'v0' }),
      created('m4', 'incoming/a.txt', 5, { versionId: 'v1', bucket: 'notes' }),
    ]);
    expect(result.duplicates).toBe(2);
    const spec = await specOf(store, submitter.submitted[0]!.specUri);
    expect(spec.objects).toHaveLength(1);
    expect(spec.objects[0]!.versionId).toBe('v1');
  });

  it('groups objects by count, bytes and age', async () => {
    const byCount = setup({ maxObjects: 2, maxBytes: 1e9, maxAgeSeconds: 3600 });
    await byCount.dispatcher.handle([1, 2, 3, 4, 5].map((i) => created(`m${i}`, `incoming/${i}.txt`, i)));
    expect(byCount.submitter.submitted).toHaveLength(3);

    const byBytes = setup({ maxObjects: 100, maxBytes: 100, maxAgeSeconds: 3600 });
    await byBytes.dispatcher.handle(
      [1, 2, 3].map((i) => created(`m${i}`, `incoming/${i}.txt`, i, { size: 60 })),
    );
    expect(byBytes.submitter.submitted).toHaveLength(3);

    const byAge = setup({ maxObjects: 100, maxBytes: 1e9, maxAgeSeconds: 60 });
    await byAge.dispatcher.handle([
      created('m1', 'incoming/1.txt', 1, { time: '2026-01-01T00:00:00Z' }),
      created('m2', 'incoming/2.txt', 2, { time: '2026-01-01T00:00:30Z' }),
      created('m3', 'incoming/3.txt', 3, { time: '2026-01-01T00:05:00Z' }),
    ]);
    const sizes = await Promise.all(
      byAge.submitter.submitted.map(async (j) => (await specOf(byAge.store, j.specUri)).objects.length),
    );
    expect(sizes.sort()).toEqual([1, 2]);
  });

  it('does not submit a redelivered batch again', async () => {
    const { submitter, dispatcher } = setup();
    const batch = [created('m1', 'incoming/a.txt', 1), created('m2', 'incoming/b.txt', 2)];
    await dispatcher.handle(batch);
    const again = await dispatcher.handle(batch);
    expect(submitter.submitted).toHaveLength(1);
    expect(again.alreadySubmitted).toEqual([submitter.submitted[0]!.jobId]);
  });

  it('reports only the failed messages: an unreadable one and those of a group whose submission failed', async () => {
    const { submitter, dispatcher } = setup(
      { maxObjects: 1, maxBytes: 1e9, maxAgeSeconds: 3600 },
      new Set([0]),
    );
    const result = await dispatcher.handle([
      { messageId: 'bad', body: '{not json' },
      created('m1', 'incoming/a.txt', 1, { time: '2026-01-01T00:00:00Z' }),
      created('m2', 'incoming/b.txt', 2, { time: '2026-01-01T00:00:01Z' }),
      created('m2-dup', 'incoming/b.txt', 2, { time: '2026-01-01T00:00:01Z' }),
    ]);
    // The first submission (a.txt) fails; b.txt's job goes through.
    expect(result.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(['bad', 'm1']);
    expect(submitter.submitted).toHaveLength(1);
    // Redelivery of the failed message submits its job (the spec exists, the submission does not).
    const retry = await dispatcher.handle([
      created('m1', 'incoming/a.txt', 1, { time: '2026-01-01T00:00:00Z' }),
    ]);
    expect(retry.batchItemFailures).toEqual([]);
    expect(submitter.submitted).toHaveLength(2);
  });
});
