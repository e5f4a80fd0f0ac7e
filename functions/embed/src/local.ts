/**
 * Local mode: the dispatcher and the job in one process, over local files, into an index in a
 * directory (or an S3 URI). `cohort ingest` and `npm start` call {@link ingestLocal}.
 */
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type EncoderLogger, type Provider, resolveModelBundle, WorkerEncoder } from '@cohort/encoder';
import { type ObjectStore, type OpenStoreOptions, openStore } from '@cohort/index';
import { SIDECAR_SUFFIX } from '@cohort/notes';
import { EmbedConfigError } from './errors.ts';
import type { ObjectRef } from './events.ts';
import { type JobLogger, type JobProgress, runJob, type SkipCounts } from './job.ts';
import { LocalFileSource, localObjectRef } from './sources.ts';
import { makeJobSpec, writeJobSpec } from './spec.ts';

/** Options of {@link ingestLocal}. */
export interface IngestLocalOptions {
  /** Files and directories (read recursively; `.meta.json` sidecars and dot files are not notes). */
  readonly paths: readonly string[];
  /** The index: a directory or `s3://bucket/prefix`. */
  readonly data: string;
  /** Model bundle directory or `fixture`. Default: as `resolveModelBundle` chooses ($COHORT_MODEL, the cached ClinicalBERT, or a download). */
  readonly model?: string;
  /** Execution provider. Default `cpu` (local mode). */
  readonly provider?: Provider;
  /** CPU threads of the encoder. Default: all cores. */
  readonly threads?: number;
  /** Chunks per committed part. Default 50,000. */
  readonly partChunks?: number;
  /** Chunks per encoder call. Default 1,024. */
  readonly encodeBlock?: number;
  /** Options of the index store (e.g. S3 endpoint and credentials). */
  readonly store?: OpenStoreOptions;
  /** An open store to use instead of opening `data` (tests). */
  readonly openedStore?: ObjectStore;
  /** Called with counts as the job goes (for a progress bar). */
  readonly onProgress?: (progress: JobProgress) => void;
  /** Logger (progress lines every `progressIntervalMs`, ids and counts only). Default: none. */
  readonly logger?: JobLogger & EncoderLogger;
  /** Milliseconds between progress log lines. Default 5,000. */
  readonly progressIntervalMs?: number;
  /** Scratch directory for segments. Default `os.tmpdir()`. */
  readonly workDir?: string;
}

/** One quarantined record, for people: where (path, and row or line) and why. */
export interface QuarantineSummary {
  readonly source: string;
  readonly reason: string;
}

/** What {@link ingestLocal} returns (and `cohort ingest --json` prints). */
export interface IngestSummary {
  /** Files found. */
  readonly objects: number;
  /** Notes and chunks indexed by this run. */
  readonly notes: number;
  readonly chunks: number;
  /** Files skipped: already indexed at the same version, or otherwise (see `skippedBy`). */
  readonly skipped: number;
  readonly skippedBy: SkipCounts;
  readonly quarantined: QuarantineSummary[];
  readonly seconds: number;
  readonly chunks_per_s: number;
  /** The job's id (its spec and report are under `jobs/` in the index). */
  readonly jobId: string;
  /** The encoder's execution provider. */
  readonly provider: string;
}

/** Every note file under the given paths, sorted; sidecars and dot files excluded. */
export async function collectFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const visit = async (path: string): Promise<void> => {
    const s = await stat(path);
    if (s.isDirectory()) {
      for (const entry of (await readdir(path)).sort()) {
        if (entry.startsWith('.')) continue;
        await visit(join(path, entry));
      }
    } else if (s.isFile() && !path.endsWith(SIDECAR_SUFFIX)) {
      out.push(path);
    }
  };
  for (const p of paths) await visit(resolve(p));
  return [...new Set(out)].sort();
}

function describeSource(source: { key: string; row?: number; line?: number }): string {
  if (source.row !== undefined) return `${source.key} row ${source.row}`;
  if (source.line !== undefined) return `${source.key} line ${source.line}`;
  return source.key;
}

/**
 * Ingests local files into an index in one process: finds the files, writes a job spec for them
 * (as the dispatcher would), and runs the job. Files already indexed at the same content are
 * skipped, so a second run over unchanged files indexes nothing (`notes` 0, `skipped` = files).
 * @throws EmbedConfigError when no files are found
 */
export async function ingestLocal(options: IngestLocalOptions): Promise<IngestSummary> {
  const t0 = performance.now();
  const files = await collectFiles(options.paths);
  if (files.length === 0) throw new EmbedConfigError(`no files found under ${options.paths.join(', ')}`);
  const refs: ObjectRef[] = [];
  for (const f of files) refs.push(await localObjectRef(f));
  const store = options.openedStore ?? openStore(options.data, options.store);
  const spec = makeJobSpec(options.data, refs);
  await writeJobSpec(store, spec);
  const model = await resolveModelBundle(options.model);
  const encoder = await WorkerEncoder.start(model.dir, {
    provider: options.provider ?? 'cpu',
    ...(options.threads ? { threads: options.threads } : {}),
  });
  options.logger?.info('encoder loaded', {
    fingerprint: encoder.info.fingerprint,
    provider: encoder.provider,
    variant: encoder.variant,
  });
  try {
    const report = await runJob(spec, {
      store,
      source: new LocalFileSource(),
      encoder,
      partChunks: options.partChunks ?? 50_000,
      encodeBlock: options.encodeBlock ?? 1024,
      progressIntervalMs: options.progressIntervalMs ?? 5000,
      ...(options.workDir ? { workDir: options.workDir } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    const seconds = (performance.now() - t0) / 1000;
    const s = report.skipped;
    return {
      objects: files.length,
      notes: report.notes,
      chunks: report.chunks,
      skipped: s.indexed + s.superseded + s.gone + s.changed,
      skippedBy: s,
      quarantined: report.quarantined.map((q) => ({ source: describeSource(q.source), reason: q.reason })),
      seconds: Math.round(seconds * 1000) / 1000,
      chunks_per_s: seconds > 0 ? Math.round((report.chunks / seconds) * 10) / 10 : 0,
      jobId: spec.id,
      provider: report.provider,
    };
  } finally {
    await encoder.close();
  }
}
