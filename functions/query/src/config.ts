/**
 * Environment configuration of the query functions, parsed with zod at container start. A bad
 * value fails the start with a {@link ConfigError} naming the variable (never a half-configured
 * container). {@link QUERY_ENV} documents each variable for whoever wires the functions (CDK).
 */
import { z } from 'zod';
import { ConfigError } from './errors.ts';

/** Every environment variable of the API and shard functions, with what it means and its default. */
export const QUERY_ENV = {
  INDEX_URI: 'the index: s3://bucket/prefix (or a directory locally). Required.',
  MODEL_DIR:
    'the query model bundle directory (e.g. /opt/model from a layer); int8 is loaded on the CPU. Required by the API function (shards load no model).',
  AUDIT_URI:
    'where audit records go: s3://audit-bucket/audit/ (encrypted, append-only) or a directory. Required by the API function.',
  SHARD_FUNCTIONS:
    'comma-separated names or ARNs of shard functions to fan out to; unset: the API function holds every segment itself. Optional.',
  SHARD_INDEX: 'shard functions only: this shard, 0-based. Default 0.',
  SHARD_COUNT: 'shard functions only: shards in all (the length of SHARD_FUNCTIONS). Default 1.',
  CACHE_DIR: 'local segment cache. Default /tmp/cohort-segments.',
  REFRESH_INTERVAL_MS: 'least time between two manifest checks, in ms. Default 5000.',
  MAX_IN_FLIGHT: 'searches in flight before new ones get 429. Default 64.',
  MODEL_THREADS: 'ONNX Runtime intra-op threads for the query model. Default: all cores.',
} as const;

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const schema = z.object({
  INDEX_URI: z.string().min(1),
  MODEL_DIR: z.string().min(1).optional(),
  AUDIT_URI: z.string().min(1).optional(),
  SHARD_FUNCTIONS: z
    .string()
    .optional()
    .transform((s) =>
      (s ?? '')
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    ),
  SHARD_INDEX: z.coerce.number().int().min(0).default(0),
  SHARD_COUNT: positiveInt(1),
  CACHE_DIR: z.string().min(1).default('/tmp/cohort-segments'),
  REFRESH_INTERVAL_MS: z.coerce.number().int().min(0).default(5000),
  MAX_IN_FLIGHT: positiveInt(64),
  MODEL_THREADS: z.coerce.number().int().positive().optional(),
});

/** The parsed configuration. */
export interface QueryConfig {
  readonly indexUri: string;
  /** Undefined only in shard functions (they embed nothing). */
  readonly modelDir?: string;
  /** Undefined only in shard functions (they answer no searches of their own). */
  readonly auditUri?: string;
  readonly shardFunctions: readonly string[];
  readonly shardIndex: number;
  readonly shardCount: number;
  readonly cacheDir: string;
  readonly refreshIntervalMs: number;
  readonly maxInFlight: number;
  readonly modelThreads?: number;
}

/**
 * Reads the configuration from an environment.
 * @param role `api` requires AUDIT_URI; `shard` requires SHARD_INDEX < SHARD_COUNT
 * @throws ConfigError naming each bad variable
 */
export function readQueryConfig(
  env: NodeJS.ProcessEnv = process.env,
  role: 'api' | 'shard' = 'api',
): QueryConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const names = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`bad query configuration: ${names.join('; ')}`);
  }
  const e = parsed.data;
  if (role === 'api' && !e.AUDIT_URI) throw new ConfigError('bad query configuration: AUDIT_URI is required');
  if (role === 'api' && !e.MODEL_DIR) throw new ConfigError('bad query configuration: MODEL_DIR is required');
  if (role === 'shard' && e.SHARD_INDEX >= e.SHARD_COUNT) {
    throw new ConfigError(
      `bad query configuration: SHARD_INDEX ${e.SHARD_INDEX} ≥ SHARD_COUNT ${e.SHARD_COUNT}`,
    );
  }
  return {
    indexUri: e.INDEX_URI,
    ...(e.MODEL_DIR ? { modelDir: e.MODEL_DIR } : {}),
    ...(e.AUDIT_URI ? { auditUri: e.AUDIT_URI } : {}),
    shardFunctions: e.SHARD_FUNCTIONS,
    shardIndex: e.SHARD_INDEX,
    shardCount: e.SHARD_COUNT,
    cacheDir: e.CACHE_DIR,
    refreshIntervalMs: e.REFRESH_INTERVAL_MS,
    maxInFlight: e.MAX_IN_FLIGHT,
    ...(e.MODEL_THREADS === undefined ? {} : { modelThreads: e.MODEL_THREADS }),
  };
}
