import { Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { synthStack } from './stack-fixture.ts';

const IMPORT = {
  notesBucketName: 'hospital-notes',
  indexBucketName: 'hospital-index',
  auditBucketName: 'hospital-audit',
  bucketsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000',
};

describe('CohortSearchStack variants', () => {
  it('refuses existing buckets without the acknowledgement', () => {
    expect(() => synthStack(IMPORT)).toThrow(/acknowledgeExistingBuckets=true/);
  });

  it('uses acknowledged existing buckets as they are and grants on them by name', () => {
    const { app, template } = synthStack({ ...IMPORT, acknowledgeExistingBuckets: true });
    // The object-wildcard acknowledgements follow the imported buckets' literal ARNs.
    expect(new AwsSolutionsChecks().validateScope(app).violations).toEqual([]);
    template.resourceCountIs('AWS::S3::Bucket', 0);
    template.resourceCountIs('AWS::S3::BucketPolicy', 0);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({
        detail: { bucket: { name: ['hospital-notes'] }, object: Match.anyValue() },
      }),
    });
    const policies = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    expect(policies).toContain(':s3:::hospital-index/*');
    expect(policies).toContain(IMPORT.bucketsKeyArn);
  });

  it('authorizes every route with JWT when asked, never NONE', () => {
    const { template } = synthStack({
      authMode: 'jwt',
      jwtIssuer: 'https://cognito-idp.eu-west-1.amazonaws.com/pool',
      jwtAudience: 'client-id',
    });
    const routes = Object.values(template.findResources('AWS::ApiGatewayV2::Route'));
    expect(routes.length).toBe(3);
    for (const r of routes) expect(r['Properties']['AuthorizationType']).toBe('JWT');
    template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      JwtConfiguration: {
        Audience: ['client-id'],
        Issuer: 'https://cognito-idp.eu-west-1.amazonaws.com/pool',
      },
    });
  });

  it('runs on-demand only, with no compaction schedule, when Spot and compaction are off', () => {
    const { template } = synthStack({ spot: 'false', compactionSchedule: 'off' });
    const gpu = Object.values(template.findResources('AWS::Batch::ComputeEnvironment')).filter(
      (e) => e['Properties']['ComputeResources']['Ec2Configuration'][0]['ImageType'] === 'ECS_AL2023_NVIDIA',
    );
    expect(gpu.map((e) => e['Properties']['ComputeResources']['Type'])).toEqual(['EC2']);
    expect(
      Object.values(template.findResources('AWS::Events::Rule')).filter(
        (r) => r['Properties']['ScheduleExpression'],
      ),
    ).toEqual([]);
  });

  it('splits the throttle alarm so that no alarm uses more than 10 metrics in its math', () => {
    const { template } = synthStack({ queryShards: 12 });
    const alarms = Object.entries(template.findResources('AWS::CloudWatch::Alarm')).filter(([id]) =>
      id.includes('Throttles'),
    );
    expect(alarms).toHaveLength(2);
    const counts = alarms.map(
      ([, a]) =>
        (a['Properties']['Metrics'] as { MetricStat?: unknown }[]).filter((m) => m.MetricStat).length,
    );
    expect(counts.sort()).toEqual([10, 4]);
  });
});
