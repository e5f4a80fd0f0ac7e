import { Duration, RemovalPolicy, Size, Stack, Validations } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import { LogDriver } from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DISPATCHER_ENV, JOB_ENV } from '../../functions/embed/src/config.ts';
import type { DataBuckets } from './buckets.ts';
import { acknowledgeFunction, INLINE_POLICY_REASON, managedPolicyFinding } from './nag.ts';
import { RUNTIME } from './packaging/index.ts';

/** Exit code (EX_TEMPFAIL from sysexits.h) with which a job asks to be retried. */
export const EXIT_TEMPFAIL = 75;

/** Handler file of the dispatcher (relative to the repository root). */
export const DISPATCHER_ENTRY = 'functions/embed/src/handlers/dispatcher.ts';

/** Properties of {@link EmbedPipeline}. */
export interface EmbedPipelineProps {
  readonly buckets: DataBuckets;
  readonly vpc: ec2.IVpc;
  readonly subnets: ec2.SubnetSelection;
  /** Key of the queues and log groups. */
  readonly opsKey: kms.IKey;
  /** Code of the dispatcher (`index.handler`). */
  readonly dispatcherCode: lambda.Code;
  /**
   * Layers of the dispatcher: the native-dependency layer, since `@cohort/index` loads hnswlib-node (and
   * through `@cohort/encoder`, onnxruntime-node) when its module is imported. Default none.
   */
  readonly dispatcherLayers?: readonly lambda.ILayerVersion[];
  /** Image of the embed job (`functions/embed/Dockerfile`). */
  readonly jobImage: ecs.ContainerImage;
  /** Image of the maintenance job (`infra/jobs/maintenance.Dockerfile`: compaction, then garbage collection). */
  readonly maintenanceImage: ecs.ContainerImage;
  /** CPU instance types of the maintenance compute environment. Default m6i.xlarge, m6i.2xlarge. */
  readonly maintenanceInstanceTypes?: readonly string[];
  /** Notes key prefix that feeds the pipeline. Default `incoming/`. */
  readonly notesPrefix?: string;
  /** GPU instance types. Default g5.xlarge, g5.2xlarge, g6.xlarge, g6.2xlarge. */
  readonly instanceTypes?: readonly string[];
  /** Spot first with on-demand behind it; false = on-demand only. Default true. */
  readonly spot?: boolean;
  /** Ceiling of each compute environment in vCPUs. Default 64. */
  readonly maxvCpus?: number;
  /** Attempt timeout of one job. Default 4 hours. */
  readonly jobTimeout?: Duration;
  /** Attempts per job. Default 3. */
  readonly jobAttempts?: number;
  /** Schedule of the maintenance job (compaction, garbage collection), or undefined for none. Default none. */
  readonly compactionSchedule?: events.Schedule;
  /** Seconds the dispatcher waits to group uploads into one job (SQS batching window, ≤ 300). Default 300. */
  readonly maxAgeSeconds?: number;
  /** Extra environment of the job container (e.g. MODEL_URI and MODEL_SHA256). Default none. */
  readonly jobEnvironment?: Readonly<Record<string, string>>;
  /** Log retention. Default one year. */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * S3 → EventBridge → SQS → dispatcher → AWS Batch. Object Created and Object Deleted events under the
 * notes prefix land in an encrypted queue (with a dead-letter queue); the dispatcher groups them into job
 * specs under the index's `jobs/` and submits GPU jobs. Jobs run on g5/g6 hosts that scale from zero,
 * Spot first with on-demand behind it, with IMDSv2 required and encrypted volumes.
 */
export class EmbedPipeline extends Construct {
  public readonly queue: sqs.Queue;
  public readonly deadLetterQueue: sqs.Queue;
  public readonly rule: events.Rule;
  public readonly dispatcher: lambda.Function;
  public readonly launchTemplate: ec2.LaunchTemplate;
  public readonly computeEnvironments: readonly batch.ManagedEc2EcsComputeEnvironment[];
  /** Spot first, then on-demand: where the dispatcher submits. */
  public readonly jobQueue: batch.JobQueue;
  /** CPU hosts (on-demand, from zero) of the maintenance job. */
  public readonly maintenanceEnvironment: batch.ManagedEc2EcsComputeEnvironment;
  public readonly maintenanceQueue: batch.JobQueue;
  public readonly jobDefinition: batch.EcsJobDefinition;
  /** Compaction, then garbage collection of the index (`infra/jobs/maintenance.ts`). */
  public readonly maintenanceDefinition: batch.EcsJobDefinition;
  /** The job's role: reads notes, reads and writes the index. */
  public readonly jobRole: iam.Role;
  /** The maintenance job's role: reads and writes the index; no access to notes. */
  public readonly maintenanceRole: iam.Role;
  public readonly jobLogGroup: logs.LogGroup;
  /** Matches failed jobs of both queues (for alarms and notifications). */
  public readonly failedJobsRule: events.Rule;

  constructor(scope: Construct, id: string, props: EmbedPipelineProps) {
    super(scope, id);
    const { buckets } = props;
    const prefix = props.notesPrefix ?? 'incoming/';
    const maxAge = Math.min(props.maxAgeSeconds ?? 300, 300);
    const dispatcherTimeout = Duration.seconds(60);
    const indexUri = `s3://${buckets.index.bucketName}`;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: props.opsKey,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is the dead-letter queue.',
    });
    this.queue = new sqs.Queue(this, 'Events', {
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: props.opsKey,
      enforceSSL: true,
      retentionPeriod: Duration.days(4),
      // AWS's guidance for Lambda event sources: six times the function timeout, plus the batching window.
      visibilityTimeout: dispatcherTimeout.plus(Duration.seconds(maxAge)).plus(Duration.seconds(300)),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 5 },
    });

    this.rule = new events.Rule(this, 'NoteEvents', {
      description: `Object Created/Deleted under ${prefix} in the notes bucket`,
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created', 'Object Deleted'],
        detail: {
          bucket: { name: [buckets.notes.bucketName] },
          object: { key: [{ prefix }] },
        },
      },
    });
    this.rule.addTarget(new targets.SqsQueue(this.queue, { deadLetterQueue: this.deadLetterQueue }));

    // Batch: hosts, queues, job definitions.
    const hostGroup = new ec2.SecurityGroup(this, 'HostSecurityGroup', {
      vpc: props.vpc,
      description: 'Embed job hosts: no inbound; outbound to the VPC endpoints',
      allowAllOutbound: true,
    });
    this.launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      requireImdsv2: true,
      // Containers sit one network hop behind the host: a hop limit of 1 keeps them from the host role.
      httpPutResponseHopLimit: 1,
      blockDevices: [
        {
          deviceName: '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(100, {
            encrypted: true,
            volumeType: ec2.EbsDeviceVolumeType.GP3,
          }),
        },
      ],
    });
    const instanceTypes = (props.instanceTypes ?? ['g5.xlarge', 'g5.2xlarge', 'g6.xlarge', 'g6.2xlarge']).map(
      (t) => new ec2.InstanceType(t),
    );
    const environment = (name: string, spot: boolean, gpu = true) =>
      new batch.ManagedEc2EcsComputeEnvironment(this, name, {
        vpc: props.vpc,
        vpcSubnets: props.subnets,
        securityGroups: [hostGroup],
        instanceTypes: gpu
          ? instanceTypes
          : (props.maintenanceInstanceTypes ?? ['m6i.xlarge', 'm6i.2xlarge']).map(
              (t) => new ec2.InstanceType(t),
            ),
        useOptimalInstanceClasses: false,
        images: [
          {
            imageType: gpu
              ? batch.EcsMachineImageType.ECS_AL2023_NVIDIA
              : batch.EcsMachineImageType.ECS_AL2023,
          },
        ],
        launchTemplate: this.launchTemplate,
        minvCpus: 0,
        maxvCpus: gpu ? (props.maxvCpus ?? 64) : 16,
        spot,
        allocationStrategy: spot
          ? batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
          : batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
        updateToLatestImageVersion: true,
        replaceComputeEnvironment: false,
      });
    const onDemand = environment('OnDemand', false);
    const spotEnv = props.spot === false ? undefined : environment('Spot', true);
    this.computeEnvironments = spotEnv ? [spotEnv, onDemand] : [onDemand];
    this.jobQueue = new batch.JobQueue(this, 'JobQueue', {
      computeEnvironments: this.computeEnvironments.map((computeEnvironment, i) => ({
        computeEnvironment,
        order: i + 1,
      })),
    });
    this.maintenanceEnvironment = environment('Maintenance', false, false);
    this.maintenanceQueue = new batch.JobQueue(this, 'MaintenanceQueue', {
      computeEnvironments: [{ computeEnvironment: this.maintenanceEnvironment, order: 1 }],
    });

    this.jobRole = new iam.Role(this, 'JobRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Embed job: reads notes, reads and writes the index',
    });
    buckets.grantReadNotes(this.jobRole);
    buckets.grantWriteIndex(this.jobRole);
    this.maintenanceRole = new iam.Role(this, 'MaintenanceRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'Index maintenance job: reads and writes the index',
    });
    buckets.grantWriteIndex(this.maintenanceRole);
    this.jobLogGroup = new logs.LogGroup(this, 'JobLogs', {
      encryptionKey: props.opsKey,
      retention: logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const region = Stack.of(this).region;
    const jobEnv: Record<string, string> = {
      [JOB_ENV.kmsKeyId]: buckets.key.keyArn,
      [JOB_ENV.provider]: 'cuda',
      // Containers cannot reach the instance metadata (hop limit 1), so the SDK is told the region.
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      ...props.jobEnvironment,
    };
    const embedContainer = new batch.EcsEc2ContainerDefinition(this, 'EmbedContainer', {
      image: props.jobImage,
      cpu: 4,
      memory: Size.gibibytes(14),
      gpu: 1,
      jobRole: this.jobRole,
      environment: jobEnv,
      logging: LogDriver.awsLogs({ logGroup: this.jobLogGroup, streamPrefix: 'embed' }),
    });
    // Compaction merges the stored vectors (no re-embedding): CPU hosts, no GPU.
    const maintenanceContainer = new batch.EcsEc2ContainerDefinition(this, 'MaintenanceContainer', {
      image: props.maintenanceImage,
      cpu: 4,
      memory: Size.gibibytes(14),
      jobRole: this.maintenanceRole,
      environment: {
        INDEX_URI: indexUri,
        [JOB_ENV.kmsKeyId]: buckets.key.keyArn,
        AWS_REGION: region,
        AWS_DEFAULT_REGION: region,
      },
      logging: LogDriver.awsLogs({ logGroup: this.jobLogGroup, streamPrefix: 'maintenance' }),
    });
    const retryStrategies = [
      // Spot reclaims and host failures ("Host EC2 (instance i-…) terminated.") are retried...
      batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom({ onStatusReason: 'Host EC2*' })),
      batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.CANNOT_PULL_CONTAINER),
      // A job that knows its failure is transient (throttling, a lost connection) exits EX_TEMPFAIL.
      batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom({ onExitCode: String(EXIT_TEMPFAIL) })),
      // ...an application error (any exit code) is not: the same input would fail the same way.
      batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom({ onExitCode: '*' })),
      batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom({ onReason: '*' })),
    ];
    for (const role of [this.jobRole, this.maintenanceRole]) {
      Validations.of(role).acknowledge({
        id: 'HIPAA.Security-IAMNoInlinePolicy',
        reason: INLINE_POLICY_REASON,
      });
    }
    const timeout = props.jobTimeout ?? Duration.hours(4);
    this.jobDefinition = new batch.EcsJobDefinition(this, 'EmbedJob', {
      container: embedContainer,
      retryAttempts: props.jobAttempts ?? 3,
      retryStrategies,
      timeout,
    });
    this.maintenanceDefinition = new batch.EcsJobDefinition(this, 'MaintenanceJob', {
      container: maintenanceContainer,
      retryAttempts: props.jobAttempts ?? 3,
      retryStrategies,
      timeout,
    });
    for (const definition of [this.jobDefinition, this.maintenanceDefinition]) {
      Validations.of(definition.container.executionRole).acknowledge(
        {
          id: 'AwsSolutions-IAM5[Resource::*]',
          reason:
            'ecr:GetAuthorizationToken accepts no resource scope; image pulls are scoped to the asset repository.',
        },
        { id: 'HIPAA.Security-IAMNoInlinePolicy', reason: INLINE_POLICY_REASON },
      );
      // The EventBridge role that submits the scheduled maintenance job lives under the job definition.
      Validations.of(definition).acknowledge({
        id: 'HIPAA.Security-IAMNoInlinePolicy',
        reason: INLINE_POLICY_REASON,
      });
    }
    for (const env of [...this.computeEnvironments, this.maintenanceEnvironment]) {
      Validations.of(env).acknowledge({
        id: managedPolicyFinding('service-role/AmazonEC2ContainerServiceforEC2Role'),
        reason:
          'The AWS-managed role policy the ECS agent on each Batch host needs to register and report; the jobs themselves run with the job role.',
      });
    }

    this.dispatcher = new lambda.Function(this, 'Dispatcher', {
      description: 'Groups note events into embed jobs and submits them to AWS Batch',
      runtime: RUNTIME,
      architecture: lambda.Architecture.X86_64,
      code: props.dispatcherCode,
      handler: 'index.handler',
      layers: [...(props.dispatcherLayers ?? [])],
      memorySize: 512,
      timeout: dispatcherTimeout,
      reservedConcurrentExecutions: 5,
      vpc: props.vpc,
      vpcSubnets: props.subnets,
      tracing: lambda.Tracing.ACTIVE,
      logGroup: new logs.LogGroup(this, 'DispatcherLogs', {
        encryptionKey: props.opsKey,
        retention: logRetention,
        removalPolicy: RemovalPolicy.RETAIN,
      }),
      loggingFormat: lambda.LoggingFormat.JSON,
      environment: {
        [DISPATCHER_ENV.indexUri]: indexUri,
        [DISPATCHER_ENV.notesBucket]: buckets.notes.bucketName,
        [DISPATCHER_ENV.notesPrefix]: prefix,
        [DISPATCHER_ENV.jobQueue]: this.jobQueue.jobQueueArn,
        [DISPATCHER_ENV.jobDefinition]: this.jobDefinition.jobDefinitionArn,
        [DISPATCHER_ENV.maxAgeSeconds]: String(maxAge),
        [DISPATCHER_ENV.kmsKeyId]: buckets.key.keyArn,
        POWERTOOLS_SERVICE_NAME: 'cohort-embed-dispatcher',
        POWERTOOLS_METRICS_NAMESPACE: 'CohortSearch',
      },
    });
    // The dispatcher writes job specs (jobs/), its object ledger (ledger/) and, for deleted notes,
    // manifest commits with tombstones and the removal of their texts: the index, never the notes.
    buckets.grantWriteIndex(this.dispatcher);
    this.dispatcher.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['batch:SubmitJob'],
        resources: [this.jobQueue.jobQueueArn, this.jobDefinition.jobDefinitionArn],
      }),
    );
    acknowledgeFunction(
      this.dispatcher,
      'SQS invokes it synchronously and failed messages go to the queue’s own dead-letter queue',
    );
    this.dispatcher.addEventSource(
      new SqsEventSource(this.queue, {
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(maxAge),
        reportBatchItemFailures: true,
        maxConcurrency: 2,
      }),
    );

    if (props.compactionSchedule !== undefined) {
      const compaction = new events.Rule(this, 'CompactionSchedule', {
        description: 'Scheduled index maintenance: compaction, then garbage collection',
        schedule: props.compactionSchedule,
      });
      compaction.addTarget(
        new targets.BatchJob(
          this.maintenanceQueue.jobQueueArn,
          this.maintenanceQueue,
          this.maintenanceDefinition.jobDefinitionArn,
          this.maintenanceDefinition,
          {
            jobName: 'cohort-maintenance',
            attempts: 1,
            deadLetterQueue: this.deadLetterQueue,
            retryAttempts: 2,
          },
        ),
      );
    }

    this.failedJobsRule = new events.Rule(this, 'FailedJobs', {
      description: 'Embed or maintenance jobs that failed after their last attempt',
      eventPattern: {
        source: ['aws.batch'],
        detailType: ['Batch Job State Change'],
        detail: {
          status: ['FAILED'],
          jobQueue: [this.jobQueue.jobQueueArn, this.maintenanceQueue.jobQueueArn],
        },
      },
    });
  }
}
