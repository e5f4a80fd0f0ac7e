/**
 * `cohort start`, behind `npm start`: local mode in one command. It picks a model bundle, ingests
 * the example notes into the data directory when that holds no index yet, then serves the query
 * API and the web page on http://127.0.0.1:8080 and prints the URL.
 *
 * The data directory holds everything local mode writes, so that deleting it starts over:
 *
 * ```text
 * <data>/index   the index (segments, manifests, note texts, job specs): `--data` of the other commands
 * <data>/audit   the audit log: one JSON line per search (append-only files, one per process and day)
 * <data>/cache   segment cache (used for s3:// indexes only: the local index is read in place)
 * <data>/work    scratch space of ingestion
 * ```
 */
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type IngestSummary, ingestLocal, type JobProgress } from '@cohort/embed';
import {
  type EncoderLogger,
  ModelUnavailableError,
  type ResolvedModel,
  resolveModelBundle,
} from '@cohort/encoder';
import { ManifestStore, openStore } from '@cohort/index';
import {
  createQueryServer,
  LOCAL_SERVER_MODEL_WORKERS,
  openQueryService,
  type QueryService,
} from '@cohort/query';
import { type Command, InvalidArgumentError } from 'commander';
import { createStderrLogger } from './log.ts';
import { createDownloadProgress, type ProgressStream } from './progress.ts';

/** Data directory when neither `--data` nor `COHORT_DATA` is given, relative to the working directory. */
export const DEFAULT_DATA_DIR = '.cohort-data';
/** Port when neither `--port` nor `COHORT_PORT` is given. */
export const DEFAULT_PORT = 8080;
/** Interface the server binds to by default: loopback only, since notes are PHI. */
export const DEFAULT_HOST = '127.0.0.1';
/** The example notes shipped with the repository (see `examples/SOURCE.md`). */
export const EXAMPLE_NOTES_DIR = fileURLToPath(new URL('../../examples/notes/', import.meta.url));

/** Where each part of local mode's state lives inside a data directory (see the module comment). */
export function dataLayout(dataDir: string): { index: string; audit: string; cache: string; work: string } {
  const root = resolve(dataDir);
  return {
    index: join(root, 'index'),
    audit: join(root, 'audit'),
    cache: join(root, 'cache'),
    work: join(root, 'work'),
  };
}

/**
 * Parses a TCP port, 0 to 65535 (0: the system picks a free one).
 * @throws InvalidArgumentError for anything else
 */
export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isInteger(n) || n > 65535)
    throw new InvalidArgumentError(`${value} is not a port (0 to 65535)`);
  return n;
}

/** Settings of one `cohort start`, after options and environment are merged. */
export interface StartSettings {
  /** Data directory. Default `$COHORT_DATA`, else {@link DEFAULT_DATA_DIR}. */
  readonly data: string;
  /** Model spec for `resolveModelBundle`: a bundle directory or `fixture`. Default `$COHORT_MODEL`, else the cached or downloaded ClinicalBERT. */
  readonly model?: string;
  /** Notes to ingest into an empty data directory. Default {@link EXAMPLE_NOTES_DIR}. */
  readonly notes: readonly string[];
  /** Default `$COHORT_PORT`, else {@link DEFAULT_PORT}. */
  readonly port: number;
  /** Default {@link DEFAULT_HOST}. */
  readonly host: string;
  /** Bearer token the API requires. Default `$COHORT_TOKEN`, else none. */
  readonly token?: string;
}

/** Merges command options with the environment into {@link StartSettings}. */
export function startSettings(
  opts: { data?: string; model?: string; notes?: string[]; port?: number; host?: string; token?: string },
  env: NodeJS.ProcessEnv = process.env,
): StartSettings {
  const envPort = env['COHORT_PORT'];
  let port = opts.port;
  if (port === undefined && envPort) {
    try {
      port = parsePort(envPort);
    } catch {
      throw new InvalidArgumentError(`COHORT_PORT=${envPort} is not a port (0 to 65535)`);
    }
  }
  const token = opts.token ?? (env['COHORT_TOKEN'] || undefined);
  return {
    data: opts.data ?? (env['COHORT_DATA'] || DEFAULT_DATA_DIR),
    ...(opts.model === undefined ? {} : { model: opts.model }),
    notes: opts.notes?.length ? opts.notes : [EXAMPLE_NOTES_DIR],
    port: port ?? DEFAULT_PORT,
    host: opts.host ?? DEFAULT_HOST,
    ...(token === undefined ? {} : { token }),
  };
}

/** The startup warning for the fixture model: said plainly, because its rankings look like results. */
export const FIXTURE_WARNING =
  'WARNING: the tiny random FIXTURE model is in use (COHORT_MODEL=fixture). It runs the whole pipeline, ' +
  'but its RANKINGS ARE MEANINGLESS. For real results set COHORT_MODEL to a ClinicalBERT bundle, or unset ' +
  'it to use the cached one (pulled from the Hugging Face hub when missing).';

const BAR_WIDTH = 20;
const TTY_REDRAW_MS = 100;
const PLAIN_LINE_MS = 5000;

/**
 * A progress display for ingestion, fed with the job's counts: on a terminal one line redrawn in
 * place (`ingest  [########------------]  4/9 files  44 notes  286 chunks  ETA 3s`), elsewhere a
 * plain line every few seconds and at the end. Counts only, never note text.
 */
export function createIngestProgress(
  stream: ProgressStream = process.stderr,
  now: () => number = Date.now,
): { update(progress: JobProgress): void; done(): void } {
  const tty = stream.isTTY === true;
  let last: JobProgress | undefined;
  let lastDrawAt = Number.NEGATIVE_INFINITY;
  let lineLength = 0;
  let printed = '';
  const describe = (p: JobProgress, bar: boolean) => {
    const share = p.objectsTotal > 0 ? Math.min(1, p.objectsDone / p.objectsTotal) : 1;
    const parts = ['ingest'];
    if (bar) {
      const filled = Math.round(share * BAR_WIDTH);
      parts.push(`[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`);
    }
    parts.push(`${p.objectsDone}/${p.objectsTotal} files`, `${p.notes} notes`, `${p.chunks} chunks`);
    if (p.quarantined > 0) parts.push(`${p.quarantined} quarantined`);
    if (p.etaSeconds !== undefined && share < 1) parts.push(`ETA ${Math.ceil(p.etaSeconds)}s`);
    return parts.join('  ');
  };
  const draw = (p: JobProgress) => {
    if (tty) {
      const line = describe(p, true);
      stream.write(`\r${line.padEnd(lineLength)}`);
      lineLength = line.length;
    } else {
      const line = describe(p, false);
      if (line !== printed) stream.write(`${line}\n`);
      printed = line;
    }
    lastDrawAt = now();
  };
  return {
    update(progress) {
      last = progress;
      if (now() - lastDrawAt >= (tty ? TTY_REDRAW_MS : PLAIN_LINE_MS)) draw(progress);
    },
    done() {
      if (last) draw(last);
      if (tty && lineLength > 0) stream.write('\n');
      lineLength = 0;
    },
  };
}

/** Thrown when the data directory's index was built with another model than the one chosen. */
export class IndexModelMismatchError extends Error {
  override readonly name = 'IndexModelMismatchError';
}

/** What {@link prepareIndex} did. */
export type PreparedIndex =
  | { readonly ingested: false; readonly manifestVersion: number }
  | { readonly ingested: true; readonly summary: IngestSummary };

/**
 * Makes sure the data directory holds an index built with `model`: ingests `notes` into it when it
 * holds none; leaves an existing one as it is.
 * @throws IndexModelMismatchError when the existing index was built with another model
 */
export async function prepareIndex(
  settings: StartSettings,
  model: ResolvedModel,
  options: { progress?: ProgressStream } = {},
): Promise<PreparedIndex> {
  const layout = dataLayout(settings.data);
  const manifest = await new ManifestStore(openStore(layout.index)).latest();
  if (manifest) {
    if (manifest.modelFingerprint !== null && manifest.modelFingerprint !== model.info.fingerprint) {
      throw new IndexModelMismatchError(
        `the index in ${layout.index} was built with model ${manifest.modelFingerprint}, but the model in use ` +
          `is ${model.info.fingerprint}${model.fixture ? ' (the fixture model)' : ''} from ${model.dir}. Start with ` +
          `the model it was built with, or with another data directory (--data or COHORT_DATA), or delete ` +
          `${resolve(settings.data)} to ingest the notes again`,
      );
    }
    return { ingested: false, manifestVersion: manifest.version };
  }
  const progress = createIngestProgress(options.progress ?? process.stderr);
  try {
    const summary = await ingestLocal({
      paths: settings.notes,
      data: layout.index,
      model: model.dir,
      workDir: layout.work,
      onProgress: (p) => progress.update(p),
      // The progress display says what the job's periodic log lines would; warnings still show.
      logger: createStderrLogger('warn'),
    });
    return { ingested: true, summary };
  } finally {
    progress.done();
  }
}

/** Adds `cohort start` (behind `npm start`) to the program. */
export function registerStartCommand(program: Command, logger: () => EncoderLogger): void {
  program
    .command('start')
    .description(
      'local mode in one command: ingest the example notes into the data directory if it holds no index yet, then serve the API and the web page (http://127.0.0.1:8080)',
    )
    .option('--data <dir>', `data directory (default: $COHORT_DATA, else ./${DEFAULT_DATA_DIR})`)
    .option(
      '--model <bundle>',
      "model bundle directory, or 'fixture' for the tiny random model (default: $COHORT_MODEL, else the cached ClinicalBERT, else pulled from the Hugging Face hub)",
    )
    .option(
      '--notes <paths...>',
      'notes to ingest when the data directory holds no index (default: the example notes, examples/notes)',
    )
    .option(
      '--port <port>',
      `port (default: $COHORT_PORT, else ${DEFAULT_PORT}; 0 picks a free one)`,
      parsePort,
    )
    .option('--host <host>', `interface to bind (default: ${DEFAULT_HOST}, this machine only)`)
    .option('--token <token>', 'bearer token the API requires (default: $COHORT_TOKEN, else none)')
    .action(
      async (opts: {
        data?: string;
        model?: string;
        notes?: string[];
        port?: number;
        host?: string;
        token?: string;
      }) => {
        const log = logger();
        const settings = startSettings(opts);
        const say = (line: string) => process.stderr.write(`${line}\n`);
        const layout = dataLayout(settings.data);
        say(`cohort start: data directory ${resolve(settings.data)}`);

        const model = await resolveModelBundle(settings.model, {
          onProgress: createDownloadProgress(process.stderr),
          onStage: (stage) => log.info('model import', { stage }),
        }).catch((error: unknown) => {
          if (!(error instanceof ModelUnavailableError)) throw error;
          throw new ModelUnavailableError(
            `${error.message}.\nTo try local mode without the hub: COHORT_MODEL=fixture npm start`,
            { cause: error },
          );
        });
        say(`cohort start: model ${model.info.fingerprint} (${model.origin}: ${model.dir})`);
        if (model.fixture) say(`\n${FIXTURE_WARNING}\n`);

        const prepared = await prepareIndex(settings, model);
        if (prepared.ingested) {
          const s = prepared.summary;
          const where = settings.notes.map((p) => relative(process.cwd(), p) || '.').join(', ');
          say(
            `cohort start: ingested ${s.notes} notes (${s.chunks} chunks) from ${where} in ${s.seconds.toFixed(1)} s` +
              (s.quarantined.length ? `; ${s.quarantined.length} records quarantined` : ''),
          );
          for (const q of s.quarantined.slice(0, 10)) say(`  quarantined: ${q.source}: ${q.reason}`);
        } else {
          say(
            `cohort start: serving the index already in the data directory (version ${prepared.manifestVersion})`,
          );
        }

        const service = await openQueryService({
          modelDir: model.dir,
          indexUri: layout.index,
          audit: layout.audit,
          cacheDir: layout.cache,
          modelWorkers: LOCAL_SERVER_MODEL_WORKERS,
          logger: log,
        });
        const running = await listen(service, settings, log);
        if (settings.token === undefined && !isLoopback(settings.host))
          log.warn('serving beyond this machine without a token: anyone who can reach the port can search', {
            host: settings.host,
          });
        // The one line on stdout, so that scripts (and the tests) can read the address.
        process.stdout.write(`Cohort search is running at ${running.url}/ (Ctrl+C stops it)\n`);
        if (model.fixture) say('(fixture model: rankings are meaningless)');

        let stopping = false;
        const stop = (signal: NodeJS.Signals) => {
          if (stopping) return;
          stopping = true;
          say(`cohort start: ${signal}, stopping`);
          // An open keep-alive connection must not hold the process up for long.
          setTimeout(() => process.exit(0), 3000).unref();
          void Promise.allSettled([running.close(), service.close()]).then(() => process.exit(0));
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      },
    );
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Starts the server, turning a busy port into a message that says what to do. */
async function listen(service: QueryService, settings: StartSettings, logger: EncoderLogger) {
  try {
    return await createQueryServer({
      service,
      host: settings.host,
      port: settings.port,
      logger,
      ...(settings.token === undefined ? {} : { token: settings.token }),
    });
  } catch (error) {
    await service.close();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new Error(
        `port ${settings.port} on ${settings.host} is in use (another cohort start?); choose another with --port or COHORT_PORT`,
        { cause: error },
      );
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
      throw new Error(`cannot bind to ${settings.host}: no such interface here`, { cause: error });
    throw error;
  }
}
