/**
 * `cohort ingest PATH… --data DIR`: local mode's write path. The dispatcher and the embed job run in
 * this process over local files, into the index at `--data` (a directory, or `s3://bucket/prefix`).
 * A progress bar goes to stderr; the summary to stdout (one JSON line with `--json`). Files already
 * indexed at the same content are skipped, so a second run over the same files changes nothing and
 * says so.
 */
import { resolve } from 'node:path';
import { type IngestSummary, ingestLocal } from '@cohort/embed';
import type { EncoderLogger, Provider } from '@cohort/encoder';
import { type Command, Option } from 'commander';
import { parsePositiveInt, printJson } from './output.ts';
import { createIngestProgress } from './start.ts';

/** Options of `cohort ingest` as commander parses them. */
interface IngestOptions {
  readonly data: string;
  readonly model?: string;
  readonly provider: Provider;
  readonly threads?: number;
  readonly json: boolean;
}

/** The human-readable summary: counts, then each quarantined record with its reason. */
export function describeSummary(summary: IngestSummary): string {
  const lines: string[] = [];
  if (
    summary.notes === 0 &&
    summary.skipped === summary.objects &&
    summary.skippedBy.indexed === summary.objects
  ) {
    lines.push(`nothing to do: all ${summary.objects} files are already indexed at this version`);
  } else {
    lines.push(
      `indexed ${summary.notes} notes (${summary.chunks} chunks) from ${summary.objects} files in ${summary.seconds.toFixed(1)} s, ${summary.chunks_per_s} chunks/s`,
    );
    if (summary.skipped > 0) {
      lines.push(
        `skipped ${summary.skipped} files (${summary.skippedBy.indexed} already indexed at this version)`,
      );
    }
  }
  if (summary.quarantined.length > 0) {
    lines.push(`quarantined ${summary.quarantined.length} (not indexed):`);
    for (const q of summary.quarantined) lines.push(`  ${q.source}: ${q.reason}`);
  }
  return lines.join('\n');
}

/** Adds `cohort ingest` to the program. */
export function registerIngestCommand(program: Command, logger: () => EncoderLogger): void {
  program
    .command('ingest')
    .description(
      'embed note files (MIMIC CSV, FHIR NDJSON, JSONL, text; directories are read recursively) into an index; files already indexed are skipped',
    )
    .argument('<path...>', 'files or directories of notes')
    .requiredOption('--data <dir-or-s3-uri>', 'index location: a directory, or s3://bucket/prefix')
    .option(
      '--model <bundle>',
      'model bundle directory, or "fixture" (default: $COHORT_MODEL, else the cached ClinicalBERT, else a download)',
    )
    .addOption(
      new Option('--provider <provider>', 'execution provider')
        .choices(['auto', 'cpu', 'cuda', 'webgpu'])
        .default('cpu'),
    )
    .option('--threads <n>', 'CPU threads of the encoder (default: all cores)', parsePositiveInt)
    .option('--json', 'print the summary as one JSON line', false)
    .action(async (paths: string[], opts: IngestOptions) => {
      const log = logger();
      const progress = createIngestProgress(process.stderr);
      let summary: IngestSummary;
      try {
        summary = await ingestLocal({
          paths,
          data: /^[a-z][a-z0-9+.-]*:\/\//i.test(opts.data) ? opts.data : resolve(opts.data),
          ...(opts.model ? { model: opts.model } : {}),
          provider: opts.provider,
          ...(opts.threads ? { threads: opts.threads } : {}),
          onProgress: (p) => progress.update(p),
          logger: log,
        });
      } finally {
        progress.done();
      }
      if (opts.json) {
        const { objects, notes, chunks, skipped, quarantined, seconds, chunks_per_s } = summary;
        printJson({ objects, notes, chunks, skipped, quarantined, seconds, chunks_per_s });
      } else {
        process.stdout.write(`${describeSummary(summary)}\n`);
      }
    });
}
