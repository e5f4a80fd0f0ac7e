import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';

/** The cdk-nag packs the app is checked against. */
export function nagPacks(): [AwsSolutionsChecks, HIPAASecurityChecks] {
  return [new AwsSolutionsChecks(), new HIPAASecurityChecks()];
}

/**
 * Registers the cdk-nag packs on the app: a synth (and so a deploy) stops on any finding that is not
 * acknowledged on its construct with a reason.
 */
export function addNagChecks(app: IConstruct): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app), new HIPAASecurityChecks(app));
}

/** cdk-nag finding id of an AWS-managed policy attached to a role. */
export function managedPolicyFinding(name: string): string {
  return `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/${name}]`;
}

/** The reason shared by every role whose grants CDK writes into the role's own (inline) policy. */
export const INLINE_POLICY_REASON =
  'CDK writes each grant, scoped to this stack’s resources, into the role’s own policy; a customer-managed policy would hold the same statements and could be attached elsewhere.';

/**
 * Acknowledges what every function of this app shares: the AWS-managed execution policies Lambda needs to
 * write its logs and to attach to the VPC, X-Ray's resource-less actions, the role's own policy, and no
 * asynchronous dead-letter queue (`invokedBy` says why none applies).
 */
export function acknowledgeFunction(fn: IConstruct, invokedBy: string): void {
  Validations.of(fn).acknowledge(
    {
      id: managedPolicyFinding('service-role/AWSLambdaBasicExecutionRole'),
      reason: 'AWS-managed policy that only lets Lambda write the function’s own logs.',
    },
    {
      id: managedPolicyFinding('service-role/AWSLambdaVPCAccessExecutionRole'),
      reason:
        'AWS-managed policy that lets Lambda manage the function’s network interfaces in the private subnets; these EC2 actions take no resource scope.',
    },
    {
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'X-Ray PutTraceSegments and PutTelemetryRecords accept no resource scope.',
    },
    { id: 'HIPAA.Security-IAMNoInlinePolicy', reason: INLINE_POLICY_REASON },
    {
      id: 'HIPAA.Security-LambdaDLQ',
      reason: `${invokedBy}; a Lambda dead-letter queue only catches asynchronous invocations, which this function never gets.`,
    },
  );
}

/**
 * The cdk-nag acknowledgements under `root` as markdown table rows (finding, reason, construct paths
 * relative to `root`), one row per finding and reason: the README's list of suppressions.
 */
export function suppressionRows(root: IConstruct): string[] {
  const rows = new Map<string, string[]>();
  for (const c of root.node.findAll()) {
    for (const m of c.node.metadata) {
      if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(m.data as Record<string, string>)) {
        if (!/(AwsSolutions|HIPAA\.Security)-/.test(id)) continue;
        // Logical ids carry a hash suffix; the README names the construct instead.
        const finding = id.replace(/^Annotation::/, '').replace(/<([A-Za-z]+)[0-9A-F]{8}\.Arn>/g, '<$1.Arn>');
        const key = `\`${finding}\` | ${reason}`;
        const path = `\`${c.node.path.replace(`${root.node.path}/`, '')}\``;
        rows.set(key, [...(rows.get(key) ?? []), path]);
      }
    }
  }
  return [...rows].map(([key, paths]) => `| ${key} | ${paths.join(', ')} |`);
}
