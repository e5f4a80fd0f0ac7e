/**
 * CDK feature flags the app is written for (new-project defaults that change synthesized resources). The
 * app and the tests pass them to `new App({ context })`, so both synthesize the same template.
 */
export const FEATURE_FLAGS: Readonly<Record<string, boolean>> = {
  // Access logs are delivered by a bucket policy for logging.s3.amazonaws.com, not the legacy ACL.
  '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': true,
  // EventBridge may send to the encrypted queue only from this account.
  '@aws-cdk/aws-events:eventsTargetQueueSameAccount': true,
  '@aws-cdk/aws-iam:minimizePolicies': true,
  '@aws-cdk/aws-lambda:recognizeLayerVersion': true,
  '@aws-cdk/core:enablePartitionLiterals': true,
  '@aws-cdk/aws-kms:reduceCrossAccountRegionPolicyScope': true,
};
