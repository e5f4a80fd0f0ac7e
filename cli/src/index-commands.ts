import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultCacheDir, type EncoderLogger } from '@cohort/encoder';
import {
  collectGarbage,
  compact,
  type GarbageCollectionResult,
  GC_DEFAULTS,
  IndexReader,
  ManifestStore,
  type ObjectStore,
  openStore,
  parseDuration,
  verify,
} from '@cohort/index';
import { type Command, InvalidArgumentError } from 'commander';
import { parsePositiveInt, printJson } from './output.ts';

/** Where `--data` segments are cached locally: one folder per index location. */
export function cacheFor(location: string): string {
  return join(defaultCacheDir(), 'index', createHash('sha256').update(location).digest('hex').slice(0, 16));
}

function parseGrace(value: string): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** Counts of a garbage collection, for JSON output and logs (no note ids: they may identify patients). */
function gcSummary(r: GarbageCollectionResult) {
  return {
    dryRun: r.dryRun,
    manifestVersion: r.newestVersion,
    deletedManifests: r.deletedVersions.length,
    deletedSegments: r.deletedSegments.length,
    deletedTextNotes: r.deletedTextNotes.length,
    deletedObjects: r.deletedObjects,
    deletedBytes: r.deletedBytes,
    pending: r.pending,
    conflicts: r.conflicts.length,
  };
}

async function runGc(
  store: ObjectStore,
  opts: { grace: number; keep: number; dryRun: boolean },
  logger: () => EncoderLogger,
) {
  const result = await collectGarbage(store, {
    graceMs: opts.grace,
    keepVersions: opts.keep,
    dryRun: opts.dryRun,
  });
  const summary = gcSummary(result);
  logger().info(opts.dryRun ? 'index garbage found (dry run)' : 'index garbage collected', summary);
  for (const id of result.conflicts) {
    logger().warn('segment deleted while a commit that lists it landed: re-run that job', { segment: id });
  }
  if (result.conflicts.length > 0) process.exitCode = 1;
  return summary;
}

/** Adds `cohort index stats`, `verify`, `compact`, `delete` and `gc` to the program. */
export function registerIndexCommands(program: Command, logger: () => EncoderLogger): void {
  const index = program.command('index').description('inspect and change an index');
  // Every index command names the index location the same way.
  const indexCommand = (name: string) =>
    index
      .command(name)
      .requiredOption('--data <dir-or-s3-uri>', 'index location: a directory, or s3://bucket/prefix');

  indexCommand('stats')
    .description(
      'manifest version, segments, live chunks, notes, patients, tombstones, bytes and model fingerprint',
    )
    .option('--json', 'one JSON line', false)
    .action(async (opts: { data: string; json: boolean }) => {
      const reader = await IndexReader.open(openStore(opts.data), { cacheDir: cacheFor(opts.data) });
      const stats = await reader.stats();
      if (opts.json) {
        printJson(stats);
        return;
      }
      for (const [key, value] of Object.entries(stats)) {
        process.stdout.write(`${key}: ${typeof value === 'object' ? JSON.stringify(value) : value}\n`);
      }
    });

  indexCommand('verify')
    .description('check every file of every segment; exit 0 only if all is sound, else print what is not')
    .action(async (opts: { data: string }) => {
      const cacheDir = cacheFor(opts.data);
      await mkdir(cacheDir, { recursive: true });
      const report = await verify(openStore(opts.data), { cacheDir });
      for (const problem of report.problems) process.stdout.write(`${problem}\n`);
      printJson({ ok: report.ok, segments: report.segments, problems: report.problems.length });
      if (!report.ok) process.exitCode = 1;
    });

  indexCommand('compact')
    .description('merge small segments (tiered policy), dropping the chunks of deleted notes')
    .option(
      '--gc',
      'then collect garbage older than the grace period (what this compaction replaced goes on a later run)',
      false,
    )
    .action(async (opts: { data: string; gc: boolean }) => {
      const cacheDir = cacheFor(opts.data);
      const workDir = join(cacheDir, 'work');
      await mkdir(workDir, { recursive: true });
      const result = await compact(openStore(opts.data), { cacheDir, workDir });
      logger().info('index compacted', {
        merges: result.merges.length,
        mergedSegments: result.mergedSegments,
        removedChunks: result.removedChunks,
        manifestVersion: result.manifestVersion,
      });
      const gc = opts.gc
        ? await runGc(
            openStore(opts.data),
            { grace: GC_DEFAULTS.graceMs, keep: GC_DEFAULTS.keepVersions, dryRun: false },
            logger,
          )
        : undefined;
      printJson({
        merged: result.mergedSegments,
        removedChunks: result.removedChunks,
        manifestVersion: result.manifestVersion,
        ...(gc ? { gc } : {}),
      });
    });

  indexCommand('gc')
    .description(
      'delete superseded manifests, unreferenced segments and the stored texts of deleted notes, ' +
        'once they have been garbage for longer than the grace period',
    )
    .option('--grace <duration>', 'grace period: 90s, 30m, 1h, 2d or 0', parseGrace, GC_DEFAULTS.graceMs)
    .option(
      '--keep <n>',
      'newest manifest versions kept whatever their age',
      parsePositiveInt,
      GC_DEFAULTS.keepVersions,
    )
    .option('--dry-run', 'report what would be deleted, delete nothing', false)
    .option('--json', 'one JSON line', false)
    .action(async (opts: { data: string; grace: number; keep: number; dryRun: boolean; json: boolean }) => {
      const summary = await runGc(openStore(opts.data), opts, logger);
      if (opts.json) {
        printJson(summary);
        return;
      }
      for (const [key, value] of Object.entries(summary)) {
        process.stdout.write(`${key}: ${typeof value === 'object' ? JSON.stringify(value) : value}\n`);
      }
    });

  indexCommand('delete')
    .description(
      'delete notes, or every note of patients, by committing tombstones (compaction later drops the chunks)',
    )
    .option('--note <ids...>', 'note ids')
    .option('--patient <ids...>', 'patient ids: every note of theirs in the index')
    .action(async (opts: { data: string; note?: string[]; patient?: string[] }) => {
      if (!opts.note?.length && !opts.patient?.length)
        throw new Error('name --note or --patient ids to delete');
      const store = openStore(opts.data);
      const notes = new Set(opts.note ?? []);
      if (opts.patient?.length) {
        const patients = new Set(opts.patient);
        const reader = await IndexReader.open(store, { cacheDir: cacheFor(opts.data) });
        for (const segment of reader.segments) {
          for (let i = 0; i < segment.count; i++) {
            const chunk = segment.chunk(i);
            if (patients.has(chunk.patientId)) notes.add(chunk.noteId);
          }
        }
      }
      const ids = [...notes].sort();
      // The change id is derived from what is deleted, so running the same command twice commits once.
      const changeId = `delete-${createHash('sha256').update(ids.join('\n')).digest('hex').slice(0, 32)}`;
      const result = await new ManifestStore(store).commit({ id: changeId, tombstoneNotes: ids });
      logger().info('notes deleted', {
        notes: ids.length,
        manifestVersion: result.manifest.version,
        applied: result.applied,
      });
      printJson({
        deletedNotes: ids.length,
        manifestVersion: result.manifest.version,
        applied: result.applied,
      });
    });
}
