import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { ExistingBucketNames } from './config.ts';

/** Key prefixes the pipeline writes short-lived objects under (see the lifecycle rules). */
export const JOBS_PREFIX = 'jobs/';
export const QUARANTINE_PREFIX = 'quarantine/';
/** Key prefix of the audit records in the audit bucket. */
export const AUDIT_PREFIX = 'audit/';

/** Construct id of CDK's bucket-notifications handler (a stack singleton, fixed by aws-cdk-lib). */
const NOTIFICATIONS_HANDLER_ID = 'BucketNotificationsHandler050a0587b7544547bf325f094a3db834';

/** Properties of {@link DataBuckets}. */
export interface DataBucketsProps {
  /** Days before objects under `jobs/` expire. Default 30. */
  readonly jobsExpirationDays?: number;
  /** Days before objects under `quarantine/` expire. Default 90. */
  readonly quarantineExpirationDays?: number;
  /** Days a noncurrent (deleted or overwritten) version is kept. Default 30. */
  readonly noncurrentVersionDays?: number;
  /** Object Lock governance retention of audit objects in days; 0 turns Object Lock off. Default 2190. */
  readonly auditRetentionDays?: number;
  /** Days the server access logs are kept. Default 365. */
  readonly accessLogDays?: number;
  /**
   * Use these buckets instead of creating new ones. Nothing is changed on them: their owner keeps them
   * encrypted with `keyArn`, versioned, private, TLS-only, logged, and sends their events to EventBridge.
   * Default: new buckets.
   */
  readonly existing?: ExistingBucketNames;
  /**
   * Must be true with `existing`: states that the buckets meet the settings above, which this construct
   * cannot check or enforce. Default false.
   */
  readonly acknowledgeExistingBuckets?: boolean;
}

/**
 * The notes, index and audit buckets and their server access log bucket. New buckets are encrypted with a
 * customer-managed KMS key (yearly rotation, bucket keys on), versioned, private, TLS 1.2-only, logged to
 * the access log bucket, and retained when the stack is deleted (they hold PHI).
 */
export class DataBuckets extends Construct {
  /** The customer-managed key of the three data buckets. */
  public readonly key: kms.IKey;
  /** Uploaded notes (the pipeline reads the configured prefix). */
  public readonly notes: s3.IBucket;
  /** Index segments, manifests and the note texts the query returns as evidence. */
  public readonly index: s3.IBucket;
  /** Query audit records under `audit/`. */
  public readonly audit: s3.IBucket;
  /** Server access logs of the three buckets; undefined for existing buckets. */
  public readonly accessLogs: s3.IBucket | undefined;
  /** True when the buckets were imported. */
  public readonly imported: boolean;

  constructor(scope: Construct, id: string, props: DataBucketsProps = {}) {
    super(scope, id);
    if (props.existing !== undefined) {
      if (props.acknowledgeExistingBuckets !== true) {
        throw new Error(
          'DataBuckets: existing buckets are used as they are; set acknowledgeExistingBuckets=true to confirm ' +
            'they are KMS-encrypted with the given key, versioned, private, TLS-only and send events to EventBridge',
        );
      }
      const existing = props.existing;
      this.imported = true;
      this.key = kms.Key.fromKeyArn(this, 'Key', existing.keyArn);
      const bucket = (name: string, bucketName: string) =>
        s3.Bucket.fromBucketAttributes(this, name, { bucketName, encryptionKey: this.key });
      this.notes = bucket('Notes', existing.notesBucketName);
      this.index = bucket('Index', existing.indexBucketName);
      this.audit = bucket('Audit', existing.auditBucketName);
      this.accessLogs = undefined;
      return;
    }
    this.imported = false;
    const key = new kms.Key(this, 'Key', {
      description: 'Cohort search data buckets (notes, index, audit)',
      enableKeyRotation: true,
      // Deleting the key would make every retained object unreadable.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.key = key;

    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      // S3 server access logging can only deliver to a bucket encrypted with S3-managed keys.
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [
        { id: 'expire-logs', expiration: Duration.days(props.accessLogDays ?? 365) },
        { id: 'expire-old-versions', noncurrentVersionExpiration: Duration.days(1) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(accessLogs).acknowledge(
      {
        id: 'AwsSolutions-S1',
        reason: 'The access log bucket is the log destination; logging it to itself would loop.',
      },
      {
        id: 'HIPAA.Security-S3BucketLoggingEnabled',
        reason: 'The access log bucket is the log destination; logging it to itself would loop.',
      },
      {
        id: 'HIPAA.Security-S3DefaultEncryptionKMS',
        reason:
          'S3 server access logging only delivers to SSE-S3 buckets; the logs hold keys, not note text.',
      },
      {
        id: 'HIPAA.Security-S3BucketReplicationEnabled',
        reason: 'Access logs are operational data; replication is left to the account owner.',
      },
    );
    this.accessLogs = accessLogs;

    const shortLived = [
      {
        id: 'expire-jobs',
        prefix: JOBS_PREFIX,
        expiration: Duration.days(props.jobsExpirationDays ?? 30),
      },
      {
        id: 'expire-quarantine',
        prefix: QUARANTINE_PREFIX,
        expiration: Duration.days(props.quarantineExpirationDays ?? 90),
      },
    ];
    const common = (logPrefix: string): s3.BucketProps => ({
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: key,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: logPrefix,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const noncurrent = {
      id: 'expire-noncurrent',
      noncurrentVersionExpiration: Duration.days(props.noncurrentVersionDays ?? 30),
      abortIncompleteMultipartUploadAfter: Duration.days(7),
    };
    this.notes = new s3.Bucket(this, 'Notes', {
      ...common('notes/'),
      // The embed pipeline listens to this bucket's events through EventBridge.
      eventBridgeEnabled: true,
      lifecycleRules: [...shortLived, noncurrent],
    });
    // Turning EventBridge on goes through CDK's bucket-notifications custom resource, a stack singleton.
    Validations.of(this.notes).acknowledge({
      id: 'HIPAA.Security-IAMNoInlinePolicy',
      reason:
        'CDK’s bucket-notifications handler policy allows only s3:PutBucketNotification, for this configuration.',
    });
    const handler = Stack.of(this).node.tryFindChild(NOTIFICATIONS_HANDLER_ID);
    if (handler !== undefined) {
      Validations.of(handler).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason: 'CDK’s bucket-notifications handler writes only its own logs with this AWS-managed policy.',
      });
    }
    this.index = new s3.Bucket(this, 'Index', {
      ...common('index/'),
      lifecycleRules: [...shortLived, noncurrent],
    });
    const auditDays = props.auditRetentionDays ?? 2190;
    this.audit = new s3.Bucket(this, 'Audit', {
      ...common('audit/'),
      ...(auditDays > 0
        ? {
            objectLockEnabled: true,
            objectLockDefaultRetention: s3.ObjectLockRetention.governance(Duration.days(auditDays)),
          }
        : {}),
    });
    for (const bucket of [this.notes, this.index, this.audit]) {
      Validations.of(bucket).acknowledge({
        id: 'HIPAA.Security-S3BucketReplicationEnabled',
        reason:
          'Cross-region replication copies PHI to a second region; whether that is allowed is the data owner’s decision, so it is left to them.',
      });
    }
  }

  /** Grants reading note objects (no listing outside the bucket, no writes, no deletes). */
  public grantReadNotes(grantee: iam.IGrantable, prefix = '*'): void {
    grantObjects(grantee, this.notes, prefix, ['s3:GetObject', 's3:GetObjectVersion'], this.key, false);
    grantList(grantee, this.notes);
  }

  /** Grants reading the index. */
  public grantReadIndex(grantee: iam.IGrantable): void {
    grantObjects(grantee, this.index, '*', ['s3:GetObject', 's3:GetObjectVersion'], this.key, false);
    grantList(grantee, this.index);
  }

  /** Grants reading and writing the index (writers also delete: compaction removes replaced segments). */
  public grantWriteIndex(grantee: iam.IGrantable): void {
    grantObjects(
      grantee,
      this.index,
      '*',
      ['s3:GetObject', 's3:GetObjectVersion', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload'],
      this.key,
      true,
    );
    grantList(grantee, this.index);
  }

  /** Grants writing new objects under one prefix of a bucket (e.g. `quarantine/` or `jobs/`). */
  public grantPutUnder(grantee: iam.IGrantable, bucket: s3.IBucket, prefix: string): void {
    grantObjects(grantee, bucket, `${prefix}*`, ['s3:PutObject', 's3:AbortMultipartUpload'], this.key, true);
  }

  /** Grants writing audit records (put only, under `audit/`). */
  public grantWriteAudit(grantee: iam.IGrantable): void {
    this.grantPutUnder(grantee, this.audit, AUDIT_PREFIX);
  }
}

/**
 * The cdk-nag finding id of an object-pattern resource (`bucket/prefix*`) in an IAM policy: the bucket's
 * ARN appears as its logical id for a bucket of this stack, or literally for an imported one.
 */
export function objectWildcardFinding(bucket: s3.IBucket, pattern: string): string {
  const cfn = bucket.node.defaultChild;
  if (cfn instanceof s3.CfnBucket) {
    return `AwsSolutions-IAM5[Resource::<${Stack.of(bucket).getLogicalId(cfn)}.Arn>/${pattern}]`;
  }
  // An imported bucket's ARN is a literal, or a join over the partition where the region is unknown.
  const arn = Stack.of(bucket).resolve(bucket.arnForObjects(pattern));
  const literal = typeof arn === 'string' ? arn : `arn:<AWS::Partition>:s3:::${bucket.bucketName}/${pattern}`;
  return `AwsSolutions-IAM5[Resource::${literal}]`;
}

function grantObjects(
  grantee: iam.IGrantable,
  bucket: s3.IBucket,
  pattern: string,
  actions: string[],
  key: kms.IKey,
  write: boolean,
): void {
  iam.Grant.addToPrincipal({
    grantee,
    actions,
    resourceArns: [bucket.arnForObjects(pattern)],
  });
  const principal = grantee.grantPrincipal;
  if (principal instanceof Construct) {
    Validations.of(principal).acknowledge({
      id: objectWildcardFinding(bucket, pattern),
      reason: `Object keys are not known in advance: the grant is ${actions.join(', ')} on objects matching ${pattern} of this one bucket, no bucket-wide or service-wide action.`,
    });
  }
  // SSE-KMS objects: S3 calls KMS with the caller's credentials to read or write them.
  iam.Grant.addToPrincipal({
    grantee,
    actions: write ? ['kms:Decrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'],
    resourceArns: [key.keyArn],
  });
}

function grantList(grantee: iam.IGrantable, bucket: s3.IBucket): void {
  iam.Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [bucket.bucketArn] });
}
