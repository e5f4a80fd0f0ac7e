import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_ENV } from '../../../functions/embed/src/config.ts';
import { EmbedConfigError } from '../../../functions/embed/src/errors.ts';
import { EXIT_TRANSIENT, exitCodeFor, main } from '../../../functions/embed/src/job-main.ts';
import { collectFiles } from '../../../functions/embed/src/local.ts';
import { localObjectRef } from '../../../functions/embed/src/sources.ts';
import { jobReportKey, makeJobSpec } from '../../../functions/embed/src/spec.ts';
import { CommitConflictError, CommitRetriesExhaustedError } from '../../../layers/index/src/errors.ts';
import { LocalDirectoryStore } from '../../../layers/index/src/store/local.ts';
import { writeNoteSet } from '../../helpers/embed.ts';
import { tempDir, tinyBundle } from '../../helpers/encoder.ts';

let root: { dir: string; cleanup: () => Promise<void> };
let bundle: string;
let specPath: string;
let indexDir: string;

beforeAll(async () => {
  root = await tempDir('embed-main-');
  bundle = await tinyBundle(root.dir);
  const set = await writeNoteSet(join(root.dir, 'notes'), { files: 1, textNotes: 1 });
  indexDir = join(root.dir, 'index');
  const spec = makeJobSpec(indexDir, await Promise.all((await collectFiles([set.root])).map(localObjectRef)));
  specPath = join(root.dir, 'spec.json');
  await writeFile(specPath, JSON.stringify(spec));
});
afterAll(async () => root.cleanup());

describe('the job entry point', () => {
  it('refuses a model bundle whose model.json does not have the expected sha256', async () => {
    const env = {
      [JOB_ENV.modelDir]: bundle,
      [JOB_ENV.provider]: 'cpu',
      [JOB_ENV.modelSha256]: '0'.repeat(64),
    };
    expect(await main(['node', 'job-main.ts', specPath], env)).toBe(1);
    expect(await new LocalDirectoryStore(indexDir).head('manifests/0000000001.json')).toBeUndefined();
  });

  it('runs the job named by JOB_SPEC_URI with a checked bundle and writes its report', async () => {
    const sha = createHash('sha256')
      .update(await readFile(join(bundle, 'model.json')))
      .digest('hex');
    const env = {
      [JOB_ENV.modelDir]: bundle,
      [JOB_ENV.provider]: 'cpu',
      [JOB_ENV.modelSha256]: sha,
      [JOB_ENV.jobSpec]: specPath,
    };
    expect(await main(['node', 'job-main.ts'], env)).toBe(0);
    const spec = JSON.parse(await readFile(specPath, 'utf8'));
    const store = new LocalDirectoryStore(indexDir);
    const report = JSON.parse(new TextDecoder().decode(await store.get(jobReportKey(spec.id))));
    expect(report).toMatchObject({ jobId: spec.id, provider: 'cpu', objects: spec.objects.length });
  });

  it('fails with exit code 1 when no job spec is named', async () => {
    expect(await main(['node', 'job-main.ts'], { [JOB_ENV.modelDir]: bundle })).toBe(1);
  });

  it('exits 75 for transient failures (retried by Batch) and 1 for the rest', () => {
    const throttled = Object.assign(new Error('Please reduce your request rate.'), {
      name: 'SlowDown',
      Code: 'SlowDown',
      $metadata: { httpStatusCode: 503 },
    });
    expect(exitCodeFor(throttled)).toBe(EXIT_TRANSIENT);
    expect(exitCodeFor(new Error('part commit failed', { cause: throttled }))).toBe(EXIT_TRANSIENT);
    expect(exitCodeFor(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe(
      EXIT_TRANSIENT,
    );
    expect(exitCodeFor(new CommitRetriesExhaustedError('lost 10 races'))).toBe(EXIT_TRANSIENT);
    // Another model's index: retrying cannot help.
    expect(exitCodeFor(new CommitConflictError('model mismatch'))).toBe(1);
    expect(exitCodeFor(new EmbedConfigError('no spec'))).toBe(1);
    expect(exitCodeFor(new TypeError('bug'))).toBe(1);
  });
});
