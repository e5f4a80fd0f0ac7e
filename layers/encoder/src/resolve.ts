import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { importCheckpoint, type ModelInfo, readBundleInfo, type Variant } from './bundle.ts';
import { BundleError, EncoderError, ModelUnavailableError } from './errors.ts';
import { writeRandomBertCheckpoint } from './fixture.ts';
import { defaultCacheDir, type HubProgressEvent, pullCheckpoint } from './hub.ts';

/** The Hugging Face repository of the default model: Bio+Discharge Summary BERT. */
export const DEFAULT_MODEL_REPO = 'emilyalsentzer/Bio_Discharge_Summary_BERT';

/** The model spec that selects the tiny random fixture model. */
export const FIXTURE_MODEL = 'fixture';

/** The `source.repo` recorded in the fixture bundle's `model.json`. */
export const FIXTURE_MODEL_REPO = 'cohort/tiny-random-bert-fixture';

/** Whether a bundle is the tiny random fixture model, whose rankings are meaningless. */
export function isFixtureModel(info: Pick<ModelInfo, 'source'>): boolean {
  return info.source.repo === FIXTURE_MODEL_REPO;
}

/** Options of {@link resolveModelBundle}. */
export interface ResolveModelOptions {
  /** Cache root. Default {@link defaultCacheDir}. */
  readonly cacheDir?: string;
  /** Environment to read `COHORT_MODEL` from. Default `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Variants to build when a bundle is created here. Default fp32 and int8 (the CPU ones). */
  readonly variants?: readonly Variant[];
  /** Hub base URL for the default model. Default as in `pullCheckpoint` (`HF_ENDPOINT` or the hub). */
  readonly endpoint?: string;
  /** Download progress of the default model. */
  readonly onProgress?: (event: HubProgressEvent) => void;
  /** Called as each stage of building a bundle starts. */
  readonly onStage?: (stage: string) => void;
  /** The fetch to use for the hub. Default the global `fetch`. */
  readonly fetch?: typeof fetch;
}

/** A model bundle ready to load, and where it came from. */
export interface ResolvedModel {
  /** The bundle directory. */
  readonly dir: string;
  readonly info: ModelInfo;
  /** True for the tiny random fixture model: its rankings are meaningless. */
  readonly fixture: boolean;
  /** How it was chosen: the argument, `COHORT_MODEL`, the cache, or a download from the hub. */
  readonly origin: 'argument' | 'env' | 'cache' | 'hub';
}

/**
 * Finds the model bundle to use. `spec` (else `$COHORT_MODEL`) is a bundle directory or `fixture`;
 * with neither, the cached default bundle ({@link DEFAULT_MODEL_REPO}) is used, and pulled from the
 * hub and imported when the cache has none. The fixture bundle is built once into the cache.
 * @throws BundleError when a named directory holds no bundle; ModelUnavailableError when no model can be had (no network)
 */
export async function resolveModelBundle(
  spec?: string,
  options: ResolveModelOptions = {},
): Promise<ResolvedModel> {
  const env = options.env ?? process.env;
  const cacheDir = options.cacheDir ?? defaultCacheDir(env);
  const variants = options.variants ?? ['fp32', 'int8'];
  const chosen = spec ?? (env['COHORT_MODEL'] || undefined);
  const origin = spec !== undefined ? 'argument' : 'env';
  if (chosen === FIXTURE_MODEL) {
    const dir = join(cacheDir, 'models', 'fixture');
    const info = await buildOnce(dir, variants, options, async (checkpoint) => {
      await writeRandomBertCheckpoint(checkpoint);
      return { repo: FIXTURE_MODEL_REPO };
    });
    return { dir, info, fixture: true, origin };
  }
  if (chosen !== undefined) {
    const dir = resolve(chosen);
    let info: ModelInfo;
    try {
      info = await readBundleInfo(dir);
    } catch (error) {
      throw new BundleError(
        `${dir} is not a model bundle (from ${origin === 'env' ? 'COHORT_MODEL' : '--model'}); build one with 'cohort model import' or 'cohort model pull', or use '${FIXTURE_MODEL}'`,
        { cause: error },
      );
    }
    // A directory may hold the fixture bundle too (e.g. the cached one): say so wherever it is used.
    return { dir, info, fixture: isFixtureModel(info), origin };
  }
  const dir = join(cacheDir, 'models', DEFAULT_MODEL_REPO.replace('/', '--'));
  const cached = await readBundleInfo(dir).catch(() => undefined);
  if (cached) return { dir, info: cached, fixture: false, origin: 'cache' };
  let pulled: Awaited<ReturnType<typeof pullCheckpoint>>;
  try {
    pulled = await pullCheckpoint({
      repoId: DEFAULT_MODEL_REPO,
      cacheDir,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
    });
  } catch (error) {
    throw new ModelUnavailableError(
      `no model bundle is cached and ${DEFAULT_MODEL_REPO} could not be downloaded from the Hugging Face hub ` +
        `(${error instanceof Error ? error.message : String(error)}). Options: set COHORT_MODEL (or --model) to a bundle ` +
        `directory; build one from a local checkpoint with 'cohort model import <dir> --out <bundle>'; ` +
        `or COHORT_MODEL=${FIXTURE_MODEL} for the tiny random model, which exercises the whole pipeline but ranks meaninglessly`,
      { cause: error },
    );
  }
  const info = await buildOnce(dir, variants, options, async () => ({
    checkpoint: pulled.dir,
    repo: DEFAULT_MODEL_REPO,
    revision: pulled.revision,
    commit: pulled.commitSha,
  }));
  return { dir, info, fixture: false, origin: 'hub' };
}

/**
 * Returns the bundle at `dir`, importing it first when missing. The checkpoint is written by
 * `prepare` (into the scratch directory it is given, unless it names its own). Two processes racing
 * here both import; `importCheckpoint` renames into place, so one wins and the other reads its bundle.
 */
async function buildOnce(
  dir: string,
  variants: readonly Variant[],
  options: ResolveModelOptions,
  prepare: (
    scratch: string,
  ) => Promise<{ checkpoint?: string; repo: string; revision?: string; commit?: string }>,
): Promise<ModelInfo> {
  const existing = await readBundleInfo(dir).catch(() => undefined);
  if (existing) return existing;
  await mkdir(dirname(dir), { recursive: true });
  const scratch = await mkdtemp(`${dir}.checkpoint-`);
  try {
    const { checkpoint, ...source } = await prepare(scratch);
    try {
      return await importCheckpoint(checkpoint ?? scratch, dir, {
        variants,
        source,
        ...(options.onStage === undefined ? {} : { onStage: options.onStage }),
      });
    } catch (error) {
      // Lost a race with another process building the same bundle: use theirs.
      if (error instanceof EncoderError) {
        const theirs = await readBundleInfo(dir).catch(() => undefined);
        if (theirs) return theirs;
      }
      throw error;
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
