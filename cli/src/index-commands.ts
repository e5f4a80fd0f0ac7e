import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultCacheDir, type EncoderLogger } from '@cohort/encoder';
import { compact, IndexReader, ManifestStore, openStore, verify } from '@cohort/index';
import type { Command } from 'commander';
import { printJson } from './output.ts';

/** Where `--data` segments are cached locally: one folder per index location. */
function cacheFor(location: string): string {
  return join(defaultCacheDir(), 'index', createHash('sha256').update(location).digest('hex').slice(0, 16));
}

/** Adds `cohort index stats`, `verify`, `compact` and `delete` to the program. */
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
    .action(async (opts: { data: string }) => {
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
      printJson({
        merged: result.mergedSegments,
        removedChunks: result.removedChunks,
        manifestVersion: result.manifestVersion,
      });
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
