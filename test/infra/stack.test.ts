import { Match } from 'aws-cdk-lib/assertions';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { beforeAll, describe, expect, it } from 'vitest';
import { DISPATCHER_ENV } from '../../functions/embed/src/config.ts';
import { QUERY_ENV } from '../../functions/query/src/config.ts';
import { EXIT_TEMPFAIL } from '../../infra/lib/embed-pipeline.ts';
import { API_ROUTES } from '../../infra/lib/query-api.ts';
import { type SynthesizedStack, synthStack } from './stack-fixture.ts';

type Json = Record<string, unknown>;
interface Statement {
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: unknown;
}

let s: SynthesizedStack;
let resources: Record<string, { Type: string; Properties: Json }>;

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const idOf = (construct: { node: { defaultChild?: unknown } } | iam.IRole): string =>
  s.stack.getLogicalId((construct as { node: { defaultChild: never } }).node.defaultChild);
const mentions = (value: unknown, logicalId: string) => JSON.stringify(value).includes(`"${logicalId}"`);
const actions = (st: Statement) => (Array.isArray(st.Action) ? st.Action : [st.Action]);

/** Every Allow statement of the policies attached to a role. */
function statementsOf(roleId: string): Statement[] {
  return ofType('AWS::IAM::Policy')
    .filter(([, p]) => mentions(p.Properties['Roles'], roleId))
    .flatMap(([, p]) => (p.Properties['PolicyDocument'] as { Statement: Statement[] }).Statement)
    .filter((st) => st.Effect === 'Allow');
}

/** Actions a role is allowed on a bucket or its objects. */
function bucketActions(roleId: string, bucketId: string): Set<string> {
  return new Set(
    statementsOf(roleId)
      .filter((st) => mentions(st.Resource, bucketId))
      .flatMap(actions),
  );
}

beforeAll(() => {
  s = synthStack({ queryShards: 2 });
  resources = s.template.toJSON()['Resources'];
});

describe('DataBuckets', () => {
  it('encrypts the notes, index and audit buckets with the customer-managed key', () => {
    const keyId = idOf(s.stack.buckets.key as never);
    for (const bucket of [s.stack.buckets.notes, s.stack.buckets.index, s.stack.buckets.audit]) {
      const props = resources[idOf(bucket)]!.Properties;
      expect(props['BucketEncryption']).toEqual({
        ServerSideEncryptionConfiguration: [
          {
            BucketKeyEnabled: true,
            ServerSideEncryptionByDefault: {
              SSEAlgorithm: 'aws:kms',
              KMSMasterKeyID: { 'Fn::GetAtt': [keyId, 'Arn'] },
            },
          },
        ],
      });
      expect(props['VersioningConfiguration']).toEqual({ Status: 'Enabled' });
      expect(props['PublicAccessBlockConfiguration']).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(props['LoggingConfiguration']).toMatchObject({
        DestinationBucketName: { Ref: idOf(s.stack.buckets.accessLogs!) },
      });
    }
  });

  it('denies every request without TLS 1.2 on every bucket', () => {
    const buckets = ofType('AWS::S3::Bucket').map(([id]) => id);
    expect(buckets).toHaveLength(4);
    for (const id of buckets) {
      const policy = ofType('AWS::S3::BucketPolicy').find(([, p]) => mentions(p.Properties['Bucket'], id));
      expect(policy, id).toBeDefined();
      const statements = (policy![1].Properties['PolicyDocument'] as { Statement: Statement[] }).Statement;
      expect(statements).toContainEqual(
        expect.objectContaining({
          Effect: 'Deny',
          Action: 's3:*',
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        }),
      );
      expect(statements).toContainEqual(
        expect.objectContaining({
          Effect: 'Deny',
          Action: 's3:*',
          Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } },
        }),
      );
    }
  });

  it('expires jobs/ and quarantine/ objects and old versions in the index bucket', () => {
    const rules = (
      resources[idOf(s.stack.buckets.index)]!.Properties['LifecycleConfiguration'] as { Rules: Json[] }
    ).Rules;
    expect(rules).toContainEqual(
      expect.objectContaining({ Prefix: 'jobs/', ExpirationInDays: 30, Status: 'Enabled' }),
    );
    expect(rules).toContainEqual(
      expect.objectContaining({ Prefix: 'quarantine/', ExpirationInDays: 90, Status: 'Enabled' }),
    );
    expect(rules).toContainEqual(
      expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: 'Enabled' }),
    );
  });

  it('sends notes bucket events to EventBridge and locks audit records for six years', () => {
    s.template.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: { Ref: idOf(s.stack.buckets.notes) },
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    });
    expect(resources[idOf(s.stack.buckets.audit)]!.Properties).toMatchObject({
      ObjectLockEnabled: true,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 2190 } },
      },
    });
  });

  it('retains the buckets and keys when the stack is deleted', () => {
    for (const [, r] of [...ofType('AWS::S3::Bucket'), ...ofType('AWS::KMS::Key')]) {
      expect((r as unknown as Json)['DeletionPolicy']).toBe('Retain');
    }
  });
});

describe('encryption', () => {
  it('rotates every KMS key', () => {
    const keys = ofType('AWS::KMS::Key');
    expect(keys.length).toBeGreaterThanOrEqual(2);
    for (const [, key] of keys) expect(key.Properties['EnableKeyRotation']).toBe(true);
  });

  it('encrypts both queues and the alarm topic with the operations key', () => {
    const opsKey = { 'Fn::GetAtt': [idOf(s.stack.opsKey), 'Arn'] };
    const queues = ofType('AWS::SQS::Queue');
    expect(queues).toHaveLength(2);
    for (const [, q] of queues) expect(q.Properties['KmsMasterKeyId']).toEqual(opsKey);
    s.template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: opsKey });
  });

  it('encrypts every log group and gives each a retention', () => {
    const groups = ofType('AWS::Logs::LogGroup');
    expect(groups.length).toBeGreaterThanOrEqual(6);
    for (const [id, g] of groups) {
      expect(g.Properties['KmsKeyId'], id).toBeDefined();
      expect(g.Properties['RetentionInDays'], id).toBe(365);
    }
  });
});

describe('least privilege', () => {
  it('allows no wildcard action on a data bucket or its key to any role', () => {
    const data = [
      s.stack.buckets.notes,
      s.stack.buckets.index,
      s.stack.buckets.audit,
      s.stack.buckets.key,
    ].map((c) => idOf(c as never));
    const offending = ofType('AWS::IAM::Policy').flatMap(([id, p]) =>
      (p.Properties['PolicyDocument'] as { Statement: Statement[] }).Statement.filter(
        (st) => data.some((d) => mentions(st.Resource, d)) && actions(st).some((a) => a.includes('*')),
      ).map((st) => `${id}: ${actions(st).join(',')}`),
    );
    expect(offending).toEqual([]);
  });

  it('lets the job read notes and write the index, but never write or delete notes', () => {
    const job = idOf(s.stack.pipeline.jobRole);
    const notes = bucketActions(job, idOf(s.stack.buckets.notes));
    expect([...notes].sort()).toEqual(['s3:GetObject', 's3:GetObjectVersion', 's3:ListBucket']);
    const index = bucketActions(job, idOf(s.stack.buckets.index));
    expect(index).toContain('s3:PutObject');
    expect(index).toContain('s3:GetObject');
    expect(bucketActions(job, idOf(s.stack.buckets.audit)).size).toBe(0);
  });

  it('lets the maintenance job read and write the index but not touch notes or audit records', () => {
    const role = idOf(s.stack.pipeline.maintenanceRole);
    expect(bucketActions(role, idOf(s.stack.buckets.index))).toContain('s3:DeleteObject');
    expect(bucketActions(role, idOf(s.stack.buckets.notes)).size).toBe(0);
    expect(bucketActions(role, idOf(s.stack.buckets.audit)).size).toBe(0);
  });

  it('lets no role delete, overwrite or reconfigure notes', () => {
    const notes = idOf(s.stack.buckets.notes);
    for (const [id, p] of ofType('AWS::IAM::Policy')) {
      for (const st of (p.Properties['PolicyDocument'] as { Statement: Statement[] }).Statement) {
        if (!mentions(st.Resource, notes)) continue;
        // CDK's notifications handler may set the bucket's notification configuration, nothing else.
        const allowed = actions(st).filter((a) => a !== 's3:PutBucketNotification');
        expect(
          allowed.filter((a) => /Delete|Put/.test(a)),
          id,
        ).toEqual([]);
      }
    }
  });

  it('lets the query functions read the index and notes and write only audit records', () => {
    const fns = [s.stack.query.queryFunction, ...s.stack.query.shardFunctions];
    for (const fn of fns) {
      const role = idOf(fn.role!);
      expect([...bucketActions(role, idOf(s.stack.buckets.index))].sort()).toEqual([
        's3:GetObject',
        's3:GetObjectVersion',
        's3:ListBucket',
      ]);
      expect([...bucketActions(role, idOf(s.stack.buckets.notes))].sort()).toEqual([
        's3:GetObject',
        's3:GetObjectVersion',
        's3:ListBucket',
      ]);
    }
    const queryRole = idOf(s.stack.query.queryFunction.role!);
    const audit = statementsOf(queryRole).filter((st) => mentions(st.Resource, idOf(s.stack.buckets.audit)));
    expect(audit).toHaveLength(1);
    expect(actions(audit[0]!).sort()).toEqual(['s3:AbortMultipartUpload', 's3:PutObject']);
    expect(JSON.stringify(audit[0]!.Resource)).toContain('/audit/*');
    for (const shard of s.stack.query.shardFunctions) {
      expect(bucketActions(idOf(shard.role!), idOf(s.stack.buckets.audit)).size).toBe(0);
    }
  });

  it('lets the dispatcher write the index and submit to its own queue and definition, but not touch notes', () => {
    const role = idOf(s.stack.pipeline.dispatcher.role!);
    expect(bucketActions(role, idOf(s.stack.buckets.index))).toContain('s3:PutObject');
    expect(bucketActions(role, idOf(s.stack.buckets.notes)).size).toBe(0);
    expect(bucketActions(role, idOf(s.stack.buckets.audit)).size).toBe(0);
    const submit = statementsOf(role).find((st) => actions(st).includes('batch:SubmitJob'));
    expect(submit?.Resource).toEqual([
      { 'Fn::GetAtt': [idOf(s.stack.pipeline.jobQueue), 'JobQueueArn'] },
      { Ref: idOf(s.stack.pipeline.jobDefinition) },
    ]);
  });
});

describe('EmbedPipeline', () => {
  it('routes Object Created and Deleted events under the prefix from EventBridge to the queue', () => {
    const queueId = idOf(s.stack.pipeline.queue);
    s.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created', 'Object Deleted'],
        detail: {
          bucket: { name: [{ Ref: idOf(s.stack.buckets.notes) }] },
          object: { key: [{ prefix: 'incoming/' }] },
        },
      },
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [queueId, 'Arn'] },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [idOf(s.stack.pipeline.deadLetterQueue), 'Arn'] } },
        }),
      ],
    });
    s.template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: queueId }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Allow', Principal: { Service: 'events.amazonaws.com' } }),
        ]),
      },
    });
  });

  it('feeds the dispatcher from the queue in batches, reporting item failures, with a dead-letter queue', () => {
    const queue = resources[idOf(s.stack.pipeline.queue)]!.Properties;
    expect(queue['RedrivePolicy']).toEqual({
      deadLetterTargetArn: { 'Fn::GetAtt': [idOf(s.stack.pipeline.deadLetterQueue), 'Arn'] },
      maxReceiveCount: 5,
    });
    // Six times the dispatcher timeout (60 s) plus the batching window.
    expect(queue['VisibilityTimeout']).toBe(660);
    s.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [idOf(s.stack.pipeline.queue), 'Arn'] },
      FunctionName: { Ref: idOf(s.stack.pipeline.dispatcher) },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      MaximumBatchingWindowInSeconds: 300,
    });
  });

  it('gives the dispatcher every variable its configuration requires', () => {
    const env = (
      resources[idOf(s.stack.pipeline.dispatcher)]!.Properties['Environment'] as { Variables: Json }
    ).Variables;
    for (const name of [
      DISPATCHER_ENV.indexUri,
      DISPATCHER_ENV.notesBucket,
      DISPATCHER_ENV.notesPrefix,
      DISPATCHER_ENV.jobQueue,
      DISPATCHER_ENV.jobDefinition,
    ]) {
      expect(env[name], name).toBeDefined();
    }
    expect(env[DISPATCHER_ENV.jobQueue]).toEqual({
      'Fn::GetAtt': [idOf(s.stack.pipeline.jobQueue), 'JobQueueArn'],
    });
    expect(env[DISPATCHER_ENV.jobDefinition]).toEqual({ Ref: idOf(s.stack.pipeline.jobDefinition) });
    expect(env[DISPATCHER_ENV.indexUri]).toEqual({
      'Fn::Join': ['', ['s3://', { Ref: idOf(s.stack.buckets.index) }]],
    });
  });

  it('runs jobs on g5/g6 hosts that scale from zero, Spot first and on-demand behind', () => {
    const [spot, onDemand] = s.stack.pipeline.computeEnvironments.map((c) => resources[idOf(c)]!.Properties);
    for (const env of [spot, onDemand]) {
      expect(env!['ComputeResources']).toMatchObject({
        MinvCpus: 0,
        InstanceTypes: ['g5.xlarge', 'g5.2xlarge', 'g6.xlarge', 'g6.2xlarge'],
        Ec2Configuration: [{ ImageType: 'ECS_AL2023_NVIDIA' }],
        LaunchTemplate: { LaunchTemplateId: { Ref: idOf(s.stack.pipeline.launchTemplate) } },
      });
    }
    expect((spot!['ComputeResources'] as Json)['Type']).toBe('SPOT');
    expect((onDemand!['ComputeResources'] as Json)['Type']).toBe('EC2');
    expect(resources[idOf(s.stack.pipeline.jobQueue)]!.Properties['ComputeEnvironmentOrder']).toEqual([
      {
        ComputeEnvironment: {
          'Fn::GetAtt': [idOf(s.stack.pipeline.computeEnvironments[0]!), 'ComputeEnvironmentArn'],
        },
        Order: 1,
      },
      {
        ComputeEnvironment: {
          'Fn::GetAtt': [idOf(s.stack.pipeline.computeEnvironments[1]!), 'ComputeEnvironmentArn'],
        },
        Order: 2,
      },
    ]);
  });

  it('requires IMDSv2 on the hosts and encrypts their volumes', () => {
    const data = resources[idOf(s.stack.pipeline.launchTemplate)]!.Properties['LaunchTemplateData'] as Json;
    expect(data['MetadataOptions']).toEqual({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 });
    const devices = data['BlockDeviceMappings'] as { Ebs: Json }[];
    expect(devices.length).toBeGreaterThan(0);
    for (const d of devices) expect(d.Ebs['Encrypted']).toBe(true);
  });

  it('retries Spot host terminations and stops on application errors, within an attempt timeout', () => {
    const def = resources[idOf(s.stack.pipeline.jobDefinition)]!.Properties;
    const retry = def['RetryStrategy'] as { Attempts: number; EvaluateOnExit: Json[] };
    expect(retry.Attempts).toBe(3);
    expect(retry.EvaluateOnExit[0]).toEqual({ Action: 'RETRY', OnStatusReason: 'Host EC2*' });
    expect(retry.EvaluateOnExit).toHaveLength(5);
    const exitAny = retry.EvaluateOnExit.findIndex((e) => e['OnExitCode'] === '*');
    expect(retry.EvaluateOnExit[exitAny]).toEqual({ Action: 'EXIT', OnExitCode: '*' });
    // Only the explicit transient exit code is retried before the catch-all exit.
    expect(retry.EvaluateOnExit.slice(0, exitAny).filter((e) => e['OnExitCode'] !== undefined)).toEqual([
      { Action: 'RETRY', OnExitCode: String(EXIT_TEMPFAIL) },
    ]);
    expect(retry.EvaluateOnExit.at(-1)).toEqual({ Action: 'EXIT', OnReason: '*' });
    expect(def['Timeout']).toEqual({ AttemptDurationSeconds: 240 * 60 });
    expect((def['ContainerProperties'] as Json)['ResourceRequirements']).toContainEqual({
      Type: 'GPU',
      Value: '1',
    });
  });

  it('schedules compaction and garbage collection on CPU hosts that scale from zero', () => {
    const env = resources[idOf(s.stack.pipeline.maintenanceEnvironment)]!.Properties['ComputeResources'];
    expect(env).toMatchObject({
      Type: 'EC2',
      MinvCpus: 0,
      InstanceTypes: ['m6i.xlarge', 'm6i.2xlarge'],
      Ec2Configuration: [{ ImageType: 'ECS_AL2023' }],
      LaunchTemplate: { LaunchTemplateId: { Ref: idOf(s.stack.pipeline.launchTemplate) } },
    });
    const container = resources[idOf(s.stack.pipeline.maintenanceDefinition)]!.Properties[
      'ContainerProperties'
    ] as { ResourceRequirements: Json[]; Environment: { Name: string }[] };
    expect(container.ResourceRequirements.map((r) => r['Type']).sort()).toEqual(['MEMORY', 'VCPU']);
    expect(container.Environment.map((e) => e.Name)).toContain('INDEX_URI');
    s.template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [idOf(s.stack.pipeline.maintenanceQueue), 'JobQueueArn'] },
          BatchParameters: Match.objectLike({
            JobDefinition: { Ref: idOf(s.stack.pipeline.maintenanceDefinition) },
          }),
        }),
      ],
    });
  });
});

describe('QueryApi', () => {
  it('authorizes every route with IAM and none with NONE', () => {
    const routes = ofType('AWS::ApiGatewayV2::Route');
    expect(routes.map(([, r]) => r.Properties['RouteKey']).sort()).toEqual(
      API_ROUTES.map((r) => `${r.method} ${r.path}`).sort(),
    );
    for (const [, r] of routes) expect(r.Properties['AuthorizationType']).toBe('AWS_IAM');
  });

  it('throttles the stage and writes access logs to the encrypted log group', () => {
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
      AccessLogSettings: { DestinationArn: { 'Fn::GetAtt': [idOf(s.stack.query.accessLogGroup), 'Arn'] } },
    });
    const format = JSON.parse(
      (
        ofType('AWS::ApiGatewayV2::Stage')[0]![1].Properties['AccessLogSettings'] as {
          Format: string;
        }
      ).Format,
    ) as Json;
    expect(Object.values(format).join(' ')).not.toMatch(/body|querystring/i);
  });

  it('sizes the query function and gives it the layers and its configuration', () => {
    const props = resources[idOf(s.stack.query.queryFunction)]!.Properties;
    expect(props).toMatchObject({
      MemorySize: 6144,
      EphemeralStorage: { Size: 10240 },
      ReservedConcurrentExecutions: 10,
      Runtime: 'nodejs24.x',
      Handler: 'index.handler',
      TracingConfig: { Mode: 'Active' },
    });
    expect(props['Layers']).toHaveLength(2);
    const env = (props['Environment'] as { Variables: Json }).Variables;
    for (const name of ['INDEX_URI', 'MODEL_DIR', 'AUDIT_URI', 'SHARD_FUNCTIONS'] as const) {
      expect(QUERY_ENV[name]).toBeDefined();
      expect(env[name], name).toBeDefined();
    }
    expect(env['MODEL_DIR']).toBe('/opt/model');
    expect(props['VpcConfig']).toBeDefined();
  });

  it('wires the shard functions: named in SHARD_FUNCTIONS, invocable by the query function only', () => {
    const shards = s.stack.query.shardFunctions;
    expect(shards).toHaveLength(2);
    const env = (
      resources[idOf(s.stack.query.queryFunction)]!.Properties['Environment'] as { Variables: Json }
    ).Variables;
    expect(env['SHARD_FUNCTIONS']).toEqual({
      'Fn::Join': ['', [{ Ref: idOf(shards[0]!) }, ',', { Ref: idOf(shards[1]!) }]],
    });
    shards.forEach((shard, i) => {
      const vars = (resources[idOf(shard)]!.Properties['Environment'] as { Variables: Json }).Variables;
      expect(vars).toMatchObject({ SHARD_INDEX: String(i), SHARD_COUNT: '2' });
      expect(vars['AUDIT_URI']).toBeUndefined();
      expect(vars['MODEL_DIR']).toBeUndefined();
      // The native layer only: shards search vectors the query function encoded, so no model.
      expect(resources[idOf(shard)]!.Properties['Layers']).toHaveLength(1);
    });
    const invoke = statementsOf(idOf(s.stack.query.queryFunction.role!)).find((st) =>
      actions(st).includes('lambda:InvokeFunction'),
    );
    for (const shard of shards) expect(JSON.stringify(invoke?.Resource)).toContain(idOf(shard));
  });
});

describe('Network', () => {
  it('has private isolated subnets only, no internet or NAT gateway, and flow logs', () => {
    s.template.resourceCountIs('AWS::EC2::InternetGateway', 0);
    s.template.resourceCountIs('AWS::EC2::NatGateway', 0);
    for (const [, subnet] of ofType('AWS::EC2::Subnet'))
      expect(subnet.Properties['MapPublicIpOnLaunch']).toBe(false);
    s.template.hasResourceProperties('AWS::EC2::FlowLog', {
      TrafficType: 'ALL',
      LogDestinationType: 'cloud-watch-logs',
    });
  });

  it('reaches S3 through a gateway endpoint and the other services through interface endpoints', () => {
    const endpoints = ofType('AWS::EC2::VPCEndpoint').map(([, e]) =>
      JSON.stringify(e.Properties['ServiceName']),
    );
    const services = [
      's3',
      'ecr.api',
      'ecr.dkr',
      'ecs',
      'ecs-agent',
      'ecs-telemetry',
      'logs',
      'sts',
      'batch',
      'lambda',
    ];
    for (const service of services) {
      expect(
        endpoints.some((e) => e.includes(`.${service}"`) || e.endsWith(`.${service}"]]}`)),
        service,
      ).toBe(true);
    }
    s.template.hasResourceProperties('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway' });
  });

  it('puts every function in the VPC', () => {
    for (const fn of [
      s.stack.pipeline.dispatcher,
      s.stack.query.queryFunction,
      ...s.stack.query.shardFunctions,
    ]) {
      expect(resources[idOf(fn)]!.Properties['VpcConfig']).toBeDefined();
    }
  });
});

describe('Observability', () => {
  it('sends every alarm to the topic', () => {
    const alarms = ofType('AWS::CloudWatch::Alarm');
    expect(alarms.map(([id]) => id.replace(/^Observability|[0-9A-F]{8}$/g, '')).sort()).toEqual(
      [
        'Api5xx',
        'Backlog',
        'DeadLetters',
        'FailedJobs',
        'QueryErrors',
        'QueryLatencyP99',
        'Throttles',
      ].sort(),
    );
    for (const [, a] of alarms) {
      expect(a.Properties['AlarmActions']).toEqual([{ Ref: idOf(s.stack.observability.topic) }]);
    }
  });

  it('watches dead letters, p99 latency and failed Batch jobs', () => {
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [
        { Name: 'QueueName', Value: { 'Fn::GetAtt': [idOf(s.stack.pipeline.deadLetterQueue), 'QueueName'] } },
      ],
    });
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Latency',
      ExtendedStatistic: 'p99',
    });
    s.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({
        source: ['aws.batch'],
        detail: Match.objectLike({ status: ['FAILED'] }),
      }),
      Targets: [Match.objectLike({ Arn: { Ref: idOf(s.stack.observability.topic) } })],
    });
    s.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });
});
