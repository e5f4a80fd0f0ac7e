/**
 * `cohort search` (one query from the command line, the API's answer as a table or JSON) and
 * `cohort serve` (the local API and web page). Both load the model and the index once, through the
 * same query service as the Lambda, and audit every search (default: `<cache>/audit`).
 */
import { join } from 'node:path';
import { defaultCacheDir, type EncoderLogger, resolveModelBundle } from '@cohort/encoder';
import {
  createQueryServer,
  type Identity,
  LOCAL_SERVER_MODEL_WORKERS,
  openQueryService,
  SearchRequestSchema,
  type SearchResponse,
  ValidationError,
} from '@cohort/query';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { cacheFor } from './index-commands.ts';
import { parseNonNegativeInt, parsePositiveInt, printJson } from './output.ts';
import { parsePort } from './start.ts';

/** `--model-workers`: `auto` or a whole number ≥ 0. */
function parseModelWorkers(value: string): number | 'auto' {
  if (value === 'auto') return 'auto';
  try {
    return parseNonNegativeInt(value);
  } catch {
    throw new InvalidArgumentError(`${value} is neither auto nor an integer ≥ 0`);
  }
}
/** Audit location when `--audit` is not given. */
export function defaultAuditDir(): string {
  return join(defaultCacheDir(), 'audit');
}

/**
 * Resolves the model (warning when it is the fixture) and opens the query service over `--data`,
 * with the segment cache of that location (used for `s3://` indexes) and `--audit` (default
 * {@link defaultAuditDir}).
 */
async function openLocalService(
  opts: { data: string; model?: string; audit?: string },
  log: EncoderLogger,
  extra: Partial<Parameters<typeof openQueryService>[0]> = {},
) {
  const model = await resolveModelBundle(opts.model);
  if (model.fixture) log.warn('the fixture model is random: its rankings are meaningless');
  return openQueryService({
    modelDir: model.dir,
    indexUri: opts.data,
    audit: opts.audit ?? defaultAuditDir(),
    cacheDir: cacheFor(opts.data),
    logger: log,
    ...extra,
  });
}

function parseScore(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < -1 || n > 1)
    throw new InvalidArgumentError(`${value} is not a score in [-1, 1]`);
  return n;
}

/** Cuts text to `width` characters on one line. */
function oneLine(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length <= width ? flat : `${flat.slice(0, width - 1)}…`;
}

/** The readable table of an answer: rank, patient, score, then the top evidence (section, snippet). */
export function formatCohortTable(answer: SearchResponse): string {
  const rows = answer.cohort.map((m) => {
    const e = m.evidence[0];
    // Show the highlighted sentence when there is one: it is why the chunk matched.
    const [h] = e?.highlights ?? [];
    const text = e?.snippet ? (h ? e.snippet.slice(h[0], h[1]) : e.snippet) : '(note text not stored)';
    return [
      String(m.rank),
      m.patientId,
      m.score.toFixed(4),
      e ? `${e.section}${e.assertion === 'affirmed' ? '' : ` [${e.assertion}]`}` : '',
      e ? oneLine(text, 80) : '',
    ];
  });
  const headers = ['rank', 'patient', 'score', 'section', 'evidence'];
  const widths = headers.map((hd, c) => Math.max(hd.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: readonly string[]) =>
    r
      .map((v, c) => v.padEnd(widths[c]!))
      .join('  ')
      .trimEnd();
  const out = [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  out.push(
    `${answer.cohort.length} of ${answer.totalPatients} patients · manifest ${answer.index.manifestVersion} · ${answer.index.chunks} chunks · ${answer.timings.totalMs} ms`,
  );
  return `${out.join('\n')}\n`;
}

const localUser = (): Identity => ({ id: `cli:${process.env['USER'] ?? 'unknown'}`, kind: 'local' });

/** Adds `cohort search` and `cohort serve` to the program. */
export function registerSearchCommands(program: Command, logger: () => EncoderLogger): void {
  program
    .command('search')
    .description('find a cohort: patients ranked by their best-matching note chunk, with evidence')
    .argument('<query>', 'the patients to find, in words')
    .requiredOption('--data <dir-or-s3-uri>', 'index location: a directory, or s3://bucket/prefix')
    .option(
      '--model <bundle>',
      "model bundle directory or 'fixture' (default: $COHORT_MODEL, else ClinicalBERT)",
    )
    .option('--k <n>', 'patients to return (default 50, at most 1000)', parsePositiveInt)
    .addOption(
      new Option('--assertion <mode>', 'affirmed: negated, hypothetical and family evidence does not count')
        .choices(['affirmed', 'any'])
        .default('affirmed'),
    )
    .option(
      '--min-score <score>',
      'exhaustive mode: every patient scoring at least this (first page of k)',
      parseScore,
    )
    .option('--audit <dir-or-s3-uri>', 'where the audit record goes (default: <cache>/audit)')
    .option('--json', "the API's JSON answer on one line instead of a table", false)
    .action(
      async (
        query: string,
        opts: {
          data: string;
          model?: string;
          k?: number;
          assertion: 'affirmed' | 'any';
          minScore?: number;
          audit?: string;
          json: boolean;
        },
      ) => {
        const parsed = SearchRequestSchema.safeParse({
          query,
          assertion: opts.assertion,
          ...(opts.k === undefined ? {} : { k: opts.k }),
          ...(opts.minScore === undefined ? {} : { minScore: opts.minScore }),
        });
        if (!parsed.success) {
          throw new ValidationError(
            `invalid search: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'query'} ${i.message}`).join('; ')}`,
          );
        }
        const service = await openLocalService(opts, logger());
        try {
          const answer = await service.search(parsed.data, localUser());
          if (opts.json) printJson(answer);
          else process.stdout.write(formatCohortTable(answer));
        } finally {
          await service.close();
        }
      },
    );

  program
    .command('serve')
    .description(
      'serve the query API and the web page locally (POST /v1/search, GET /v1/health, /openapi.json)',
    )
    .requiredOption('--data <dir-or-s3-uri>', 'index location: a directory, or s3://bucket/prefix')
    .option(
      '--model <bundle>',
      "model bundle directory or 'fixture' (default: $COHORT_MODEL, else ClinicalBERT)",
    )
    .option('--port <port>', 'TCP port; 0 picks a free one', parsePort, 8080)
    .option('--host <host>', 'interface to bind (default loopback only: notes are PHI)', '127.0.0.1')
    .option(
      '--token <token>',
      'require "Authorization: Bearer <token>" on /v1/* (default: $COHORT_TOKEN, else none)',
    )
    .option(
      '--shards <n>',
      'hold the segments in n worker threads and fan out (as shard functions do in AWS)',
      parsePositiveInt,
    )
    .option('--audit <dir-or-s3-uri>', 'where audit records go (default: <cache>/audit)')
    .option(
      '--model-workers <n>',
      'worker threads running the query model (0: in the server thread; auto: one on every core for lone queries, narrower ones for load)',
      parseModelWorkers,
      LOCAL_SERVER_MODEL_WORKERS,
    )
    .option(
      '--model-threads <n>',
      'CPU threads of each model session, with a number of --model-workers (default: the cores shared among them)',
      parsePositiveInt,
    )
    .option(
      '--model-batch <n>',
      'most queries embedded together under load (default 8; 1: every query alone, identical vectors every time)',
      parsePositiveInt,
    )
    .action(
      async (opts: {
        data: string;
        model?: string;
        port: number;
        host: string;
        token?: string;
        shards?: number;
        audit?: string;
        modelWorkers: number | 'auto';
        modelThreads?: number;
        modelBatch?: number;
      }) => {
        const log = logger();
        if (opts.modelThreads !== undefined && opts.modelWorkers === 'auto') {
          throw new InvalidArgumentError(
            '--model-threads needs a number of --model-workers (auto chooses per worker)',
          );
        }
        const token = opts.token ?? (process.env['COHORT_TOKEN'] || undefined);
        const service = await openLocalService(opts, log, {
          modelWorkers: opts.modelWorkers,
          ...(opts.modelThreads ? { threads: opts.modelThreads } : {}),
          ...(opts.modelBatch ? { modelBatch: opts.modelBatch } : {}),
          ...(opts.shards ? { shards: { kind: 'workers' as const, count: opts.shards } } : {}),
        });
        let running: Awaited<ReturnType<typeof createQueryServer>>;
        try {
          running = await createQueryServer({
            service,
            host: opts.host,
            port: opts.port,
            ...(token === undefined ? {} : { token }),
            logger: log,
          });
        } catch (error) {
          await service.close();
          throw error;
        }
        if (token === undefined && !['127.0.0.1', '::1', 'localhost'].includes(opts.host)) {
          log.warn('serving beyond this machine without a token: anyone who can reach the port can search', {
            host: opts.host,
          });
        }
        // One line on stdout so that scripts (and tests) can read the address.
        printJson({ url: running.url, token: token !== undefined });
        await new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        await running.close();
        await service.close();
      },
    );
}
