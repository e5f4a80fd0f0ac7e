import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Annotations, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { JOB_ENV } from '../../functions/embed/src/config.ts';
import { DataBuckets } from './buckets.ts';
import type { CohortConfig } from './config.ts';
import { DISPATCHER_ENTRY, EmbedPipeline } from './embed-pipeline.ts';
import { Network } from './network.ts';
import { Observability } from './observability.ts';
import {
  handlerCode,
  jobImage,
  maintenanceImage,
  modelLayerCode,
  type NativeBuild,
  nativeLayerCode,
  REPO_ROOT,
  RUNTIME,
} from './packaging/index.ts';
import { API_ENTRY, QueryApi, SHARD_ENTRY } from './query-api.ts';

/** Properties of {@link CohortSearchStack}. */
export interface CohortSearchStackProps extends StackProps {
  readonly config: CohortConfig;
  /** How the native layer is built. Default `auto` (in a container when one answers). */
  readonly nativeBuild?: NativeBuild;
}

/** The model bundle directory used when `modelDir` is not set: the ClinicalBERT bundle in the cohort cache. */
export function defaultModelDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env['COHORT_CACHE_DIR']
    ? env['COHORT_CACHE_DIR']
    : env['XDG_CACHE_HOME']
      ? join(env['XDG_CACHE_HOME'], 'cohort')
      : join(homedir(), '.cache', 'cohort');
  return join(cache, 'models', 'emilyalsentzer--Bio_Discharge_Summary_BERT');
}

/**
 * The whole service in one stack: buckets, network, embed pipeline, query API, alarms and dashboard.
 * Data (buckets, keys, log groups) is retained when the stack is deleted.
 */
export class CohortSearchStack extends Stack {
  public readonly buckets: DataBuckets;
  public readonly network: Network;
  public readonly pipeline: EmbedPipeline;
  public readonly query: QueryApi;
  public readonly observability: Observability;
  /** Key of queues, log groups and the alarm topic. */
  public readonly opsKey: kms.Key;

  constructor(scope: Construct, id: string, props: CohortSearchStackProps) {
    super(scope, id, props);
    const config = props.config;
    const retention = config.logRetentionDays as logs.RetentionDays;

    this.opsKey = new kms.Key(this, 'OperationsKey', {
      description: 'Cohort search queues, logs and alarm topic',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // CloudWatch Logs encrypts this account's log groups in this region with the key.
    this.opsKey.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal(`logs.${this.region}.amazonaws.com`)],
        actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:logs:arn': `arn:${this.partition}:logs:${this.region}:${this.account}:*`,
          },
        },
      }),
    );
    // Alarms and EventBridge publish to the encrypted topic.
    this.opsKey.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [
          new iam.ServicePrincipal('cloudwatch.amazonaws.com'),
          new iam.ServicePrincipal('events.amazonaws.com'),
        ],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
    );

    this.buckets = new DataBuckets(this, 'Buckets', {
      jobsExpirationDays: config.jobsExpirationDays,
      quarantineExpirationDays: config.quarantineExpirationDays,
      noncurrentVersionDays: config.noncurrentVersionDays,
      auditRetentionDays: config.auditRetentionDays,
      ...(config.existingBuckets ? { existing: config.existingBuckets } : {}),
      acknowledgeExistingBuckets: config.acknowledgeExistingBuckets,
    });
    this.network = new Network(this, 'Network', {
      maxAzs: config.maxAzs,
      logKey: this.opsKey,
      logRetention: retention,
    });

    // The job fetches its model bundle (with the fp16 variant for the GPU) from S3 at start, checked
    // against the sha256 of its model.json: the configured location, else the local bundle's place in
    // the index bucket (models/<first 16 hex of that sha256>/), where it must be uploaded.
    const modelDir = config.modelDir ?? defaultModelDir();
    const localModel = existsSync(join(modelDir, 'model.json'));
    let jobModel: { uri: string; sha256: string } | undefined;
    if (config.jobModelUri && config.jobModelSha256) {
      jobModel = { uri: config.jobModelUri, sha256: config.jobModelSha256 };
    } else if (localModel) {
      const sha256 = createHash('sha256')
        .update(readFileSync(join(modelDir, 'model.json')))
        .digest('hex');
      jobModel = { uri: `s3://${this.buckets.index.bucketName}/models/${sha256.slice(0, 16)}/`, sha256 };
    }
    const jobEnvironment: Record<string, string> = jobModel
      ? { [JOB_ENV.modelUri]: jobModel.uri, [JOB_ENV.modelSha256]: jobModel.sha256 }
      : {};
    const nativeLayer = new lambda.LayerVersion(this, 'NativeLayer', {
      description: 'onnxruntime-node, tokenizers, hnswlib-node for Linux x64 (glibc 2.34)',
      code: nativeLayerCode(props.nativeBuild ?? 'auto'),
      compatibleRuntimes: [RUNTIME],
      compatibleArchitectures: [lambda.Architecture.X86_64],
    });
    this.pipeline = new EmbedPipeline(this, 'Embed', {
      buckets: this.buckets,
      vpc: this.network.vpc,
      subnets: this.network.subnets,
      opsKey: this.opsKey,
      dispatcherCode: handlerCode(DISPATCHER_ENTRY),
      dispatcherLayers: [nativeLayer],
      jobImage: jobImage(),
      maintenanceImage: maintenanceImage(),
      maintenanceInstanceTypes: config.maintenanceInstanceTypes,
      notesPrefix: config.notesPrefix,
      instanceTypes: config.gpuInstanceTypes,
      spot: config.spot,
      maxvCpus: config.maxGpuVcpus,
      jobTimeout: Duration.minutes(config.jobTimeoutMinutes),
      jobAttempts: config.jobAttempts,
      ...(config.compactionSchedule === 'off'
        ? {}
        : { compactionSchedule: events.Schedule.expression(config.compactionSchedule) }),
      jobEnvironment,
      logRetention: retention,
    });

    let modelCode: lambda.Code;
    if (localModel) {
      modelCode = modelLayerCode(modelDir);
    } else {
      Annotations.of(this).addWarningV2(
        'cohort:model-missing',
        `No model bundle at ${modelDir}: the model layer is empty and searches will fail until it is deployed ` +
          "with one ('cohort model pull', or -c modelDir=BUNDLE).",
      );
      modelCode = lambda.Code.fromAsset(join(REPO_ROOT, 'infra', 'layers', 'model-missing'));
    }
    const modelLayer = new lambda.LayerVersion(this, 'ModelLayer', {
      description: 'Query model bundle (int8) under /opt/model',
      code: modelCode,
      compatibleRuntimes: [RUNTIME],
    });

    this.query = new QueryApi(this, 'Query', {
      buckets: this.buckets,
      vpc: this.network.vpc,
      subnets: this.network.subnets,
      opsKey: this.opsKey,
      apiCode: handlerCode(API_ENTRY),
      shardCode: handlerCode(SHARD_ENTRY),
      layers: [nativeLayer],
      queryLayers: [modelLayer],
      memoryMb: config.queryMemoryMb,
      ephemeralMb: config.queryEphemeralMb,
      reservedConcurrency: config.queryReservedConcurrency,
      shards: config.queryShards,
      shardMemoryMb: config.shardMemoryMb,
      auth:
        config.authMode === 'jwt'
          ? { mode: 'jwt', issuer: config.jwtIssuer ?? '', audience: config.jwtAudience ?? [] }
          : { mode: 'iam' },
      rateLimit: config.apiRateLimit,
      burstLimit: config.apiBurstLimit,
      logRetention: retention,
    });

    this.observability = new Observability(this, 'Observability', {
      key: this.opsKey,
      deadLetterQueue: this.pipeline.deadLetterQueue,
      eventQueue: this.pipeline.queue,
      dispatcher: this.pipeline.dispatcher,
      queryFunction: this.query.queryFunction,
      shardFunctions: this.query.shardFunctions,
      api: this.query.api,
      failedJobsRule: this.pipeline.failedJobsRule,
      ...(config.alarmEmail ? { alarmEmail: config.alarmEmail } : {}),
    });

    new CfnOutput(this, 'ApiUrl', { value: this.query.url, description: 'Query API (SigV4 or JWT)' });
    new CfnOutput(this, 'NotesBucket', {
      value: this.buckets.notes.bucketName,
      description: 'Upload notes here',
    });
    new CfnOutput(this, 'NotesPrefix', { value: config.notesPrefix });
    new CfnOutput(this, 'IndexBucket', { value: this.buckets.index.bucketName });
    new CfnOutput(this, 'AuditBucket', { value: this.buckets.audit.bucketName });
    new CfnOutput(this, 'JobQueue', { value: this.pipeline.jobQueue.jobQueueArn });
    new CfnOutput(this, 'AlarmTopic', { value: this.observability.topic.topicArn });
    if (jobModel) {
      new CfnOutput(this, 'JobModelUri', {
        value: jobModel.uri,
        description: 'Where the embed job fetches its model bundle: aws s3 sync the bundle there',
      });
    } else {
      Annotations.of(this).addWarningV2(
        'cohort:job-model-missing',
        'The embed job has no model: give -c modelDir=BUNDLE (then upload it to the JobModelUri output) or ' +
          '-c jobModelUri=s3://… -c jobModelSha256=<sha256 of its model.json>.',
      );
    }
    new CfnOutput(this, 'Dashboard', { value: this.observability.dashboard.dashboardName });
  }
}
