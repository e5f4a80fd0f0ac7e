/**
 * The scheduled index maintenance job (AWS Batch, CPU): compaction (rewrite segments without deleted
 * chunks, merge small ones), then garbage collection of old manifests and unreferenced segments after
 * their grace period. Run by `infra/jobs/maintenance.Dockerfile`:
 * `node --import tsx infra/jobs/maintenance.ts`.
 *
 * Environment: `INDEX_URI` (required, `s3://bucket[/prefix]`), `INDEX_KMS_KEY_ID` (SSE-KMS key of new
 * objects; default the bucket's), `WORK_DIR` (scratch; default the OS temp directory). Logs ids and
 * counts only. Exit codes: 0 done; 75 (EX_TEMPFAIL) when a store call failed, so that Batch retries;
 * 1 for anything else (configuration, a corrupt index), which a retry would not fix.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { collectGarbage, compact, openStore, StoreError } from '@cohort/index';

/** Exit code asking AWS Batch to retry (see the job definition's retry strategy). */
export const EXIT_TEMPFAIL = 75;

/** One JSON log line (ids and counts only). */
function log(message: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ level: 'INFO', service: 'cohort-maintenance', message, ...fields }));
}

/** Runs compaction then garbage collection; returns the process exit code. */
export async function main(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const indexUri = env['INDEX_URI'];
  if (!indexUri) {
    console.error(JSON.stringify({ level: 'ERROR', message: 'INDEX_URI is required' }));
    return 1;
  }
  const kmsKeyId = env['INDEX_KMS_KEY_ID'];
  const store = openStore(indexUri, {
    s3: kmsKeyId ? { serverSideEncryption: 'aws:kms', sseKmsKeyId: kmsKeyId } : {},
  });
  const work = await mkdtemp(join(env['WORK_DIR'] ?? tmpdir(), 'cohort-maintenance-'));
  try {
    const cacheDir = join(work, 'cache');
    const workDir = join(work, 'work');
    await Promise.all([mkdir(cacheDir), mkdir(workDir)]);
    const compacted = await compact(store, { cacheDir, workDir });
    log('index compacted', {
      merges: compacted.merges.length,
      mergedSegments: compacted.mergedSegments,
      removedChunks: compacted.removedChunks,
      manifestVersion: compacted.manifestVersion,
    });
    const gc = await collectGarbage(store);
    // Counts only: note ids may identify patients.
    log('index garbage collected', {
      manifestVersion: gc.newestVersion,
      deletedManifests: gc.deletedVersions.length,
      deletedSegments: gc.deletedSegments.length,
      deletedTextNotes: gc.deletedTextNotes.length,
      deletedObjects: gc.deletedObjects,
      deletedBytes: gc.deletedBytes,
      conflicts: gc.conflicts.length,
    });
    // A segment deleted while a commit listing it landed: that job must run again; say so by failing.
    return gc.conflicts.length > 0 ? 1 : 0;
  } catch (error) {
    const name = error instanceof Error ? error.name : 'Error';
    const message = error instanceof Error ? error.message : String(error);
    console.error(
      JSON.stringify({ level: 'ERROR', message: 'maintenance failed', error: name, detail: message }),
    );
    return error instanceof StoreError ? EXIT_TEMPFAIL : 1;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}
