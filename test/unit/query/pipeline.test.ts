/**
 * End to end: notes ingested by the embed pipeline (`ingestLocal`, the tiny real model) are found by
 * the query service, with snippets from the note texts the pipeline stored, on a directory and on
 * an S3-protocol server. The fixture model is random, so these tests assert what holds whatever the
 * ranking: who can appear, and that evidence points into the real notes.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingestLocal } from '../../../functions/embed/src/index.ts';
import {
  openQueryService,
  type QueryService,
  SearchRequestSchema,
} from '../../../functions/query/src/index.ts';
import { tempDir, tinyBundle } from '../../helpers/encoder.ts';
import { type RunningS3rver, startS3rver } from '../../helpers/s3rver.ts';

const NOTES = new URL('../../fixtures/notes-formats/notes.jsonl', import.meta.url).pathname;
let root: string;
let cleanup: () => Promise<void>;
let bundle: string;
let s3: RunningS3rver;
const services: QueryService[] = [];
let notes: { noteId: string; patientId: string; text: string }[];

beforeAll(async () => {
  ({ dir: root, cleanup } = await tempDir('cohort-pipeline-'));
  bundle = await tinyBundle(root, { variants: ['fp32', 'int8'] });
  notes = (await readFile(NOTES, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    // The readers take numeric ids as strings.
    .map((n) => ({ noteId: String(n.noteId), patientId: String(n.patientId), text: n.text }));
  s3 = await startS3rver(['notes-index']);
});

afterAll(async () => {
  for (const s of services) await s.close();
  await s3?.close();
  await cleanup?.();
});

async function checkSearch(indexUri: string, s3Options?: Record<string, unknown>) {
  const service = await openQueryService({
    modelDir: bundle,
    indexUri,
    ...(s3Options ? { s3: s3Options } : {}),
    audit: join(root, 'audit'),
    cacheDir: join(root, `cache-${services.length}`),
    threads: 1,
  });
  services.push(service);
  const answer = await service.search(
    SearchRequestSchema.parse({ query: 'labor progressing with epidural', k: 10, assertion: 'any' }),
    { id: 'tester', kind: 'local' },
  );
  expect(answer.index.manifestVersion).toBeGreaterThanOrEqual(1);
  expect(answer.cohort.length).toBe(new Set(notes.map((n) => n.patientId)).size);
  for (const member of answer.cohort) {
    expect(notes.map((n) => n.patientId)).toContain(member.patientId);
    for (const e of member.evidence) {
      const note = notes.find((n) => n.noteId === e.noteId)!;
      expect(note.patientId).toBe(member.patientId);
      expect(e.snippet).not.toBeNull();
      expect(note.text).toContain(e.snippet);
      const [[a, b]] = e.highlights as [[number, number]];
      expect(0 <= a && a < b && b <= e.snippet!.length).toBe(true);
    }
  }
}

describe('an index built by the embed pipeline', () => {
  it('is searched with snippets from the stored note texts (directory store)', async () => {
    const data = join(root, 'index');
    await ingestLocal({ paths: [NOTES], data, model: bundle, threads: 1, workDir: join(root, 'work') });
    await checkSearch(data);
  });

  it('is searched on an S3-protocol server', async () => {
    const s3Options = {
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: s3.credentials,
      region: 'us-east-1',
    };
    await ingestLocal({
      paths: [NOTES],
      data: 's3://notes-index/idx',
      store: { s3: s3Options },
      model: bundle,
      threads: 1,
      workDir: join(root, 'work-s3'),
    });
    await checkSearch('s3://notes-index/idx', s3Options);
  });
});
