import type { Node } from 'constructs';

/** How API routes authorize callers. */
export type AuthMode = 'iam' | 'jwt';

/** Buckets that already exist and are used instead of new ones (names, and the KMS key they use). */
export interface ExistingBucketNames {
  /** Bucket holding uploaded notes (its EventBridge notifications must be turned on by its owner). */
  readonly notesBucketName: string;
  /** Bucket holding the index segments, manifests and note texts. */
  readonly indexBucketName: string;
  /** Bucket receiving the query audit records. */
  readonly auditBucketName: string;
  /** ARN of the customer-managed KMS key that encrypts all three buckets. */
  readonly keyArn: string;
}

/**
 * Deployment settings. Every field has a default; `configFromContext` reads overrides from CDK context
 * (`-c key=value` or `cdk.json` "context").
 */
export interface CohortConfig {
  /** Stack name. Default `CohortSearch`. */
  readonly stackName: string;
  /** Account and region; default the CLI's (`CDK_DEFAULT_ACCOUNT`/`CDK_DEFAULT_REGION`). */
  readonly account?: string;
  readonly region?: string;
  /** Key prefix in the notes bucket that feeds the pipeline. Default `incoming/`. */
  readonly notesPrefix: string;
  /** GPU instance types of the Batch compute environments. Default g5/g6 xlarge and 2xlarge. */
  readonly gpuInstanceTypes: readonly string[];
  /** CPU instance types of the maintenance (compaction) compute environment. Default m6i.xlarge, m6i.2xlarge. */
  readonly maintenanceInstanceTypes: readonly string[];
  /** Spot compute environment first, on-demand as the fallback. Default true; false = on-demand only. */
  readonly spot: boolean;
  /** Ceiling of each compute environment in vCPUs (the floor is always 0). Default 64. */
  readonly maxGpuVcpus: number;
  /** Attempt timeout of one embed job in minutes. Default 240. */
  readonly jobTimeoutMinutes: number;
  /** Attempts per embed job (Spot reclaims retry, application errors do not). Default 3. */
  readonly jobAttempts: number;
  /** EventBridge schedule of the maintenance job (compaction, then GC), or `off`. Default `cron(0 3 * * ? *)`. */
  readonly compactionSchedule: string;
  /** Memory of the query function in MB (its share of the index lives in memory). Default 6144. */
  readonly queryMemoryMb: number;
  /** Ephemeral storage (/tmp) of the query and shard functions in MB (segment cache). Default 10240. */
  readonly queryEphemeralMb: number;
  /** Reserved concurrency of the query function. Default 10. */
  readonly queryReservedConcurrency: number;
  /** Shard functions the query fans out to (0 = the query function searches every segment). Default 0. */
  readonly queryShards: number;
  /** Memory of each shard function in MB. Default 10240. */
  readonly shardMemoryMb: number;
  /** Route authorization. Default `iam` (SigV4). `jwt` needs `jwtIssuer` and `jwtAudience`. */
  readonly authMode: AuthMode;
  readonly jwtIssuer?: string;
  readonly jwtAudience?: readonly string[];
  /** HTTP API stage throttling: steady requests per second and burst. Default 50 and 100. */
  readonly apiRateLimit: number;
  readonly apiBurstLimit: number;
  /** Retention of CloudWatch log groups in days. Default 365. */
  readonly logRetentionDays: number;
  /** Days before objects under `jobs/` and `quarantine/` expire. Default 30 and 90. */
  readonly jobsExpirationDays: number;
  readonly quarantineExpirationDays: number;
  /** Days a deleted or overwritten object version is kept before it expires. Default 30. */
  readonly noncurrentVersionDays: number;
  /** Object Lock (governance) retention of audit records in days, 0 for none. Default 2190 (6 years). */
  readonly auditRetentionDays: number;
  /** Availability zones of the VPC (each adds interface-endpoint cost). Default 2. */
  readonly maxAzs: number;
  /** Email subscribed to the alarm topic. Default none (subscribe later). */
  readonly alarmEmail?: string;
  /** Model bundle directory whose int8 variant goes into the model layer. Default the ClinicalBERT cache. */
  readonly modelDir?: string;
  /**
   * `s3://…` of a model bundle (with its fp16 variant) that the embed job fetches at start, and the sha256 of
   * its `model.json`; both or neither. Default neither: the job uses the bundle baked into its image.
   */
  readonly jobModelUri?: string;
  readonly jobModelSha256?: string;
  /** Existing buckets to use instead of creating them; needs `acknowledgeExistingBuckets`. */
  readonly existingBuckets?: ExistingBucketNames;
  /** States that the existing buckets are encrypted, versioned, private and TLS-only. Default false. */
  readonly acknowledgeExistingBuckets: boolean;
}

/** The defaults of {@link CohortConfig}. */
export const DEFAULT_CONFIG: CohortConfig = {
  stackName: 'CohortSearch',
  notesPrefix: 'incoming/',
  gpuInstanceTypes: ['g5.xlarge', 'g5.2xlarge', 'g6.xlarge', 'g6.2xlarge'],
  maintenanceInstanceTypes: ['m6i.xlarge', 'm6i.2xlarge'],
  spot: true,
  maxGpuVcpus: 64,
  jobTimeoutMinutes: 240,
  jobAttempts: 3,
  compactionSchedule: 'cron(0 3 * * ? *)',
  queryMemoryMb: 6144,
  queryEphemeralMb: 10240,
  queryReservedConcurrency: 10,
  queryShards: 0,
  shardMemoryMb: 10240,
  authMode: 'iam',
  apiRateLimit: 50,
  apiBurstLimit: 100,
  logRetentionDays: 365,
  jobsExpirationDays: 30,
  quarantineExpirationDays: 90,
  noncurrentVersionDays: 30,
  auditRetentionDays: 2190,
  maxAzs: 2,
  acknowledgeExistingBuckets: false,
};

/** A configuration value that cannot be used. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type ContextReader = Pick<Node, 'tryGetContext'>;

function raw(node: ContextReader, key: string): unknown {
  const value = node.tryGetContext(key);
  return value === undefined || value === null || value === '' ? undefined : value;
}

function str(node: ContextReader, key: string): string | undefined {
  const value = raw(node, key);
  return value === undefined ? undefined : String(value);
}

function num(node: ContextReader, key: string, fallback: number, min: number, max: number): number {
  const value = raw(node, key);
  if (value === undefined) return fallback;
  const parsed = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
    throw new ConfigError(`context ${key}=${String(value)} must be an integer from ${min} to ${max}`);
  }
  return parsed;
}

function bool(node: ContextReader, key: string, fallback: boolean): boolean {
  const value = raw(node, key);
  if (value === undefined) return fallback;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new ConfigError(`context ${key}=${String(value)} must be true or false`);
}

function list(node: ContextReader, key: string): readonly string[] | undefined {
  const value = raw(node, key);
  if (value === undefined) return undefined;
  const items = Array.isArray(value) ? value.map(String) : String(value).split(',');
  const trimmed = items.map((item) => item.trim()).filter((item) => item.length > 0);
  if (trimmed.length === 0) throw new ConfigError(`context ${key} must name at least one value`);
  return trimmed;
}

/** Retention periods CloudWatch Logs accepts, in days. */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

function retention(node: ContextReader): number {
  const days = num(node, 'logRetentionDays', DEFAULT_CONFIG.logRetentionDays, 1, 3653);
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(days)) {
    throw new ConfigError(`context logRetentionDays=${days} must be one of ${LOG_RETENTION_DAYS.join(', ')}`);
  }
  return days;
}

/**
 * Reads the configuration from CDK context, validating each value, with {@link DEFAULT_CONFIG} for
 * anything not given. Account and region fall back to `env` (`CDK_DEFAULT_ACCOUNT`, `CDK_DEFAULT_REGION`).
 * @throws ConfigError for a malformed or inconsistent value
 */
export function configFromContext(node: ContextReader, env: NodeJS.ProcessEnv = process.env): CohortConfig {
  const d = DEFAULT_CONFIG;
  const authMode = str(node, 'authMode') ?? d.authMode;
  if (authMode !== 'iam' && authMode !== 'jwt') {
    throw new ConfigError(`context authMode=${authMode} must be iam or jwt`);
  }
  const jwtIssuer = str(node, 'jwtIssuer');
  const jwtAudience = list(node, 'jwtAudience');
  if (authMode === 'jwt' && (jwtIssuer === undefined || jwtAudience === undefined)) {
    throw new ConfigError('authMode=jwt needs jwtIssuer and jwtAudience');
  }
  const notesPrefix = str(node, 'notesPrefix') ?? d.notesPrefix;
  if (notesPrefix.startsWith('/') || !notesPrefix.endsWith('/')) {
    throw new ConfigError(`context notesPrefix=${notesPrefix} must be a key prefix ending in '/'`);
  }
  const names = {
    notesBucketName: str(node, 'notesBucketName'),
    indexBucketName: str(node, 'indexBucketName'),
    auditBucketName: str(node, 'auditBucketName'),
    keyArn: str(node, 'bucketsKeyArn'),
  };
  const given = Object.values(names).filter((value) => value !== undefined).length;
  if (given !== 0 && given !== 4) {
    throw new ConfigError(
      'importing buckets needs all of notesBucketName, indexBucketName, auditBucketName and bucketsKeyArn',
    );
  }
  const existingBuckets = given === 4 ? (names as ExistingBucketNames) : undefined;
  const region = str(node, 'region') ?? env['CDK_DEFAULT_REGION'];
  const account = str(node, 'account') ?? env['CDK_DEFAULT_ACCOUNT'];
  const alarmEmail = str(node, 'alarmEmail');
  const modelDir = str(node, 'modelDir');
  const jobModelUri = str(node, 'jobModelUri');
  const jobModelSha256 = str(node, 'jobModelSha256');
  if ((jobModelUri === undefined) !== (jobModelSha256 === undefined)) {
    throw new ConfigError('jobModelUri and jobModelSha256 go together');
  }
  if (jobModelUri !== undefined && !/^s3:\/\/[^/]+/.test(jobModelUri)) {
    throw new ConfigError(`context jobModelUri=${jobModelUri} must be s3://bucket/prefix`);
  }
  if (jobModelSha256 !== undefined && !/^[0-9a-f]{64}$/.test(jobModelSha256)) {
    throw new ConfigError('context jobModelSha256 must be 64 hex digits');
  }
  return {
    stackName: str(node, 'stackName') ?? d.stackName,
    ...(account === undefined ? {} : { account }),
    ...(region === undefined ? {} : { region }),
    notesPrefix,
    gpuInstanceTypes: list(node, 'gpuInstanceTypes') ?? d.gpuInstanceTypes,
    maintenanceInstanceTypes: list(node, 'maintenanceInstanceTypes') ?? d.maintenanceInstanceTypes,
    spot: bool(node, 'spot', d.spot),
    maxGpuVcpus: num(node, 'maxGpuVcpus', d.maxGpuVcpus, 4, 10_000),
    jobTimeoutMinutes: num(node, 'jobTimeoutMinutes', d.jobTimeoutMinutes, 5, 14 * 24 * 60),
    jobAttempts: num(node, 'jobAttempts', d.jobAttempts, 1, 10),
    compactionSchedule: str(node, 'compactionSchedule') ?? d.compactionSchedule,
    queryMemoryMb: num(node, 'queryMemoryMb', d.queryMemoryMb, 1024, 10240),
    queryEphemeralMb: num(node, 'queryEphemeralMb', d.queryEphemeralMb, 512, 10240),
    queryReservedConcurrency: num(node, 'queryReservedConcurrency', d.queryReservedConcurrency, 1, 1000),
    queryShards: num(node, 'queryShards', d.queryShards, 0, 64),
    shardMemoryMb: num(node, 'shardMemoryMb', d.shardMemoryMb, 1024, 10240),
    authMode,
    ...(jwtIssuer === undefined ? {} : { jwtIssuer }),
    ...(jwtAudience === undefined ? {} : { jwtAudience }),
    apiRateLimit: num(node, 'apiRateLimit', d.apiRateLimit, 1, 10_000),
    apiBurstLimit: num(node, 'apiBurstLimit', d.apiBurstLimit, 1, 5_000),
    logRetentionDays: retention(node),
    jobsExpirationDays: num(node, 'jobsExpirationDays', d.jobsExpirationDays, 1, 3650),
    quarantineExpirationDays: num(node, 'quarantineExpirationDays', d.quarantineExpirationDays, 1, 3650),
    noncurrentVersionDays: num(node, 'noncurrentVersionDays', d.noncurrentVersionDays, 1, 3650),
    auditRetentionDays: num(node, 'auditRetentionDays', d.auditRetentionDays, 0, 36500),
    maxAzs: num(node, 'maxAzs', d.maxAzs, 1, 6),
    ...(alarmEmail === undefined ? {} : { alarmEmail }),
    ...(modelDir === undefined ? {} : { modelDir }),
    ...(jobModelUri === undefined ? {} : { jobModelUri }),
    ...(jobModelSha256 === undefined ? {} : { jobModelSha256 }),
    ...(existingBuckets === undefined ? {} : { existingBuckets }),
    acknowledgeExistingBuckets: bool(node, 'acknowledgeExistingBuckets', d.acknowledgeExistingBuckets),
  };
}
