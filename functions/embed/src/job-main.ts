/**
 * The batch container's entry point: `node --import tsx functions/embed/src/job-main.ts [SPEC_URI]`
 * (else `JOB_SPEC_URI`). Reads the job spec, loads the model bundle (baked into the image, or
 * fetched from S3 and checked against its sha256), runs the job, and exits 0. A transient failure
 * (S3 throttling or 5xx, a network error, a commit that kept losing races) exits 75 (EX_TEMPFAIL),
 * which the job definition's retry strategy retries (the retry skips what was committed); any
 * other failure exits 1 and is not retried: a bad spec, model or bug would fail the same way again.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Logger } from '@aws-lambda-powertools/logger';
import { S3Client } from '@aws-sdk/client-s3';
import { verifyBundle, WorkerEncoder } from '@cohort/encoder';
import { CommitRetriesExhaustedError, isRetryable, openStore } from '@cohort/index';
import { jobConfigFromEnv } from './config.ts';
import { EmbedConfigError } from './errors.ts';
import { runJob } from './job.ts';
import { LocalFileSource, RoutingSource, S3ObjectSource } from './sources.ts';
import { readJobSpec } from './spec.ts';

/** Fetches every object under `uri` (`s3://bucket/prefix`) into `dir`. */
async function fetchBundle(uri: string, dir: string): Promise<void> {
  const store = openStore(uri);
  for await (const o of store.list('')) await store.getToFile(o.key, join(dir, o.key));
}

/** Exit code of a transient failure (sysexits.h EX_TEMPFAIL); the Batch job definition retries it. */
export const EXIT_TRANSIENT = 75;

/** The exit code for a failure: {@link EXIT_TRANSIENT} when it, or an error it wraps, is transient, else 1. */
export function exitCodeFor(error: unknown): number {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (isRetryable(e) || e instanceof CommitRetriesExhaustedError) return EXIT_TRANSIENT;
  }
  return 1;
}

/** Runs the job named by `argv[2]` or `JOB_SPEC_URI`; returns the process exit code. */
export async function main(
  argv: readonly string[] = process.argv,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const logger = new Logger({ serviceName: 'cohort-embed-job' });
  try {
    const config = jobConfigFromEnv(env);
    const specUri = argv[2] ?? config.jobSpec;
    if (!specUri) throw new EmbedConfigError('name the job spec: an argument or JOB_SPEC_URI');
    const spec = await readJobSpec(specUri);
    if (config.modelUri) await fetchBundle(config.modelUri, config.modelDir);
    if (config.modelSha256) {
      const actual = createHash('sha256')
        .update(await readFile(join(config.modelDir, 'model.json')))
        .digest('hex');
      if (actual !== config.modelSha256) {
        throw new EmbedConfigError(
          `model bundle ${config.modelDir}: model.json has sha256 ${actual}, expected ${config.modelSha256}`,
        );
      }
      // model.json names the sha256 of every weight and tokenizer file; check them all.
      await verifyBundle(config.modelDir);
    }
    const encoder = await WorkerEncoder.start(config.modelDir, { provider: config.provider });
    try {
      const store = openStore(spec.index, {
        local: { staleLockMs: config.staleLockMs },
        s3: config.kmsKeyId ? { serverSideEncryption: 'aws:kms', sseKmsKeyId: config.kmsKeyId } : {},
      });
      logger.info('embed job started', {
        jobId: spec.id,
        objects: spec.objects.length,
        provider: encoder.provider,
      });
      await runJob(spec, {
        store,
        source: new RoutingSource(new S3ObjectSource(new S3Client({})), new LocalFileSource()),
        encoder,
        partChunks: config.partChunks,
        encodeBlock: config.encodeBlock,
        progressIntervalMs: config.progressSeconds * 1000,
        logger,
      });
    } finally {
      await encoder.close();
    }
    return 0;
  } catch (error) {
    const code = exitCodeFor(error);
    logger.error('embed job failed', {
      error: (error as Error).message,
      name: (error as Error).name,
      exitCode: code,
      retried: code === EXIT_TRANSIENT,
    });
    return code;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}
