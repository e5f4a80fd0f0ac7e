/**
 * Configuration of the dispatcher Lambda and the batch job, read from environment variables and
 * validated with zod. {@link DISPATCHER_ENV} and {@link JOB_ENV} name every variable: the CDK app
 * reads them from here, so the infrastructure and the code cannot drift apart.
 */
import { z } from 'zod';
import { EmbedConfigError } from './errors.ts';

/** Environment variables of the dispatcher Lambda. */
export const DISPATCHER_ENV = {
  /** Where the index lives: `s3://bucket/prefix` (required). Job specs go under `jobs/` there. */
  indexUri: 'INDEX_URI',
  /** Bucket that notes are uploaded to (required); events from other buckets are ignored. */
  notesBucket: 'NOTES_BUCKET',
  /** Key prefix of notes in that bucket. Default `incoming/`; events for other keys are ignored. */
  notesPrefix: 'NOTES_PREFIX',
  /** AWS Batch job queue (name or ARN) the embed jobs are submitted to (required). */
  jobQueue: 'JOB_QUEUE',
  /** AWS Batch job definition (name, name:revision or ARN) of the GPU image (required). */
  jobDefinition: 'JOB_DEFINITION',
  /** Most objects in one job. Default 500. */
  maxObjects: 'MAX_OBJECTS_PER_JOB',
  /** Most bytes (sum of object sizes) in one job. Default 2 GiB. */
  maxBytes: 'MAX_BYTES_PER_JOB',
  /**
   * Most seconds between the first and the last upload of one job (by event time). Default 300. The
   * CDK app also sets the SQS event source's batching window from it, so a quiet bucket still gets
   * its notes embedded within about this long.
   */
  maxAgeSeconds: 'MAX_AGE_SECONDS',
  /** KMS key id or ARN for SSE-KMS writes to the index bucket. Default: the bucket's default encryption. */
  kmsKeyId: 'INDEX_KMS_KEY_ID',
} as const;

/** Environment variables of the batch job container (`job-main.ts`). */
export const JOB_ENV = {
  /** URI of the job spec (`s3://…/jobs/<id>.json` or a local path); the first argument wins over it. */
  jobSpec: 'JOB_SPEC_URI',
  /** Model bundle directory baked into the image (default `/models/bundle`). */
  modelDir: 'MODEL_DIR',
  /** `s3://bucket/prefix` of a bundle to fetch at start instead (into MODEL_DIR), checked against MODEL_SHA256. */
  modelUri: 'MODEL_URI',
  /** sha256 of the bundle's `model.json`, checked before use when set (required with MODEL_URI). */
  modelSha256: 'MODEL_SHA256',
  /** Execution provider: `cuda` (the image's default), `webgpu`, `cpu` or `auto`. Default `cuda`. */
  provider: 'PROVIDER',
  /** Chunks per committed part (a segment and a checkpoint). Default 50,000. */
  partChunks: 'PART_CHUNKS',
  /** Chunks handed to the encoder at once (it batches them by token budget). Default 2,048. */
  encodeBlock: 'ENCODE_BLOCK_CHUNKS',
  /** Seconds between progress log lines. Default 10. */
  progressSeconds: 'PROGRESS_SECONDS',
  /** Directory-store locks older than this many ms are taken as left by a killed job. Default 60,000. */
  staleLockMs: 'STALE_LOCK_MS',
  /** KMS key for SSE-KMS writes to the index bucket, as for the dispatcher. */
  kmsKeyId: 'INDEX_KMS_KEY_ID',
} as const;

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const dispatcherSchema = z.object({
  [DISPATCHER_ENV.indexUri]: z.string().regex(/^s3:\/\/[^/]+/, 'must be s3://bucket[/prefix]'),
  [DISPATCHER_ENV.notesBucket]: z.string().min(1),
  [DISPATCHER_ENV.notesPrefix]: z.string().default('incoming/'),
  [DISPATCHER_ENV.jobQueue]: z.string().min(1),
  [DISPATCHER_ENV.jobDefinition]: z.string().min(1),
  [DISPATCHER_ENV.maxObjects]: positiveInt(500),
  [DISPATCHER_ENV.maxBytes]: positiveInt(2 * 1024 ** 3),
  [DISPATCHER_ENV.maxAgeSeconds]: positiveInt(300),
  [DISPATCHER_ENV.kmsKeyId]: z.string().min(1).optional(),
});

/** Grouping limits of job specs. */
export interface GroupingLimits {
  /** Most objects per job. */
  readonly maxObjects: number;
  /** Most bytes per job (an object larger than this gets a job of its own). */
  readonly maxBytes: number;
  /** Most seconds between the first and last event time in one job. */
  readonly maxAgeSeconds: number;
}

/** The dispatcher's validated configuration. */
export interface DispatcherConfig {
  readonly indexUri: string;
  readonly notesBucket: string;
  readonly notesPrefix: string;
  readonly jobQueue: string;
  readonly jobDefinition: string;
  readonly limits: GroupingLimits;
  readonly kmsKeyId?: string;
}

function fail(what: string, error: z.ZodError): never {
  const problems = error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  throw new EmbedConfigError(`${what} configuration is invalid: ${problems}`);
}

/**
 * Reads the dispatcher's configuration from the environment.
 * @throws EmbedConfigError naming each missing or invalid variable
 */
export function dispatcherConfigFromEnv(env: NodeJS.ProcessEnv = process.env): DispatcherConfig {
  const parsed = dispatcherSchema.safeParse(env);
  if (!parsed.success) fail('dispatcher', parsed.error);
  const e = parsed.data;
  return {
    indexUri: e[DISPATCHER_ENV.indexUri],
    notesBucket: e[DISPATCHER_ENV.notesBucket],
    notesPrefix: e[DISPATCHER_ENV.notesPrefix],
    jobQueue: e[DISPATCHER_ENV.jobQueue],
    jobDefinition: e[DISPATCHER_ENV.jobDefinition],
    limits: {
      maxObjects: e[DISPATCHER_ENV.maxObjects],
      maxBytes: e[DISPATCHER_ENV.maxBytes],
      maxAgeSeconds: e[DISPATCHER_ENV.maxAgeSeconds],
    },
    ...(e[DISPATCHER_ENV.kmsKeyId] ? { kmsKeyId: e[DISPATCHER_ENV.kmsKeyId] } : {}),
  };
}

const jobSchema = z.object({
  [JOB_ENV.jobSpec]: z.string().min(1).optional(),
  [JOB_ENV.modelDir]: z.string().min(1).default('/models/bundle'),
  [JOB_ENV.modelUri]: z
    .string()
    .regex(/^s3:\/\/[^/]+/)
    .optional(),
  [JOB_ENV.modelSha256]: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  [JOB_ENV.provider]: z.enum(['cuda', 'webgpu', 'cpu', 'auto']).default('cuda'),
  [JOB_ENV.partChunks]: positiveInt(50_000),
  [JOB_ENV.encodeBlock]: positiveInt(2048),
  [JOB_ENV.progressSeconds]: z.coerce.number().positive().default(10),
  [JOB_ENV.staleLockMs]: positiveInt(60_000),
  [JOB_ENV.kmsKeyId]: z.string().min(1).optional(),
});

/** The batch job's validated configuration. */
export interface JobConfig {
  readonly jobSpec?: string;
  readonly modelDir: string;
  readonly modelUri?: string;
  readonly modelSha256?: string;
  readonly provider: 'cuda' | 'webgpu' | 'cpu' | 'auto';
  readonly partChunks: number;
  readonly encodeBlock: number;
  readonly progressSeconds: number;
  readonly staleLockMs: number;
  readonly kmsKeyId?: string;
}

/**
 * Reads the job's configuration from the environment.
 * @throws EmbedConfigError naming each invalid variable, or MODEL_URI without MODEL_SHA256
 */
export function jobConfigFromEnv(env: NodeJS.ProcessEnv = process.env): JobConfig {
  const parsed = jobSchema.safeParse(env);
  if (!parsed.success) fail('job', parsed.error);
  const e = parsed.data;
  if (e[JOB_ENV.modelUri] && !e[JOB_ENV.modelSha256]) {
    throw new EmbedConfigError(`${JOB_ENV.modelUri} needs ${JOB_ENV.modelSha256} to check what it fetches`);
  }
  return {
    ...(e[JOB_ENV.jobSpec] ? { jobSpec: e[JOB_ENV.jobSpec] } : {}),
    modelDir: e[JOB_ENV.modelDir],
    ...(e[JOB_ENV.modelUri] ? { modelUri: e[JOB_ENV.modelUri] } : {}),
    ...(e[JOB_ENV.modelSha256] ? { modelSha256: e[JOB_ENV.modelSha256] } : {}),
    provider: e[JOB_ENV.provider],
    partChunks: e[JOB_ENV.partChunks],
    encodeBlock: e[JOB_ENV.encodeBlock],
    progressSeconds: e[JOB_ENV.progressSeconds],
    staleLockMs: e[JOB_ENV.staleLockMs],
    ...(e[JOB_ENV.kmsKeyId] ? { kmsKeyId: e[JOB_ENV.kmsKeyId] } : {}),
  };
}
