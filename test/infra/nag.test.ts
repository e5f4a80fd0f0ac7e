import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks, HIPAASecurityChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { suppressionRows } from '../../infra/lib/nag.ts';
import { REPO_ROOT } from '../../infra/lib/packaging/index.ts';
import { type SynthesizedStack, synthStack } from './stack-fixture.ts';

interface Acknowledged {
  readonly path: string;
  readonly id: string;
  readonly reason: string;
}

/** Every cdk-nag acknowledgement recorded on the construct tree under `root` (metadata: id → reason). */
function acknowledgements(root: IConstruct): Acknowledged[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string>))
      .filter(([id]) => /(AwsSolutions|HIPAA\.Security)-/.test(id))
      .map(([id, reason]) => ({ path: c.node.path, id, reason })),
  );
}

let s: SynthesizedStack;

beforeAll(() => {
  // Two shards, so that the shard functions and the fan-out grant are checked too.
  s = synthStack({ queryShards: 2 });
});

describe('cdk-nag', () => {
  it('finds no unacknowledged AWS Solutions or HIPAA Security finding in the stack', () => {
    for (const pack of [new AwsSolutionsChecks(), new HIPAASecurityChecks()]) {
      const report = pack.validateScope(s.app);
      const findings = report.violations.map(
        (v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`,
      );
      expect(findings, pack.name).toEqual([]);
      expect(report.success).toBe(true);
    }
  });

  it('reports a finding that is not acknowledged', () => {
    // The check is only worth something if it fails: a bare bucket breaks several rules of both packs.
    const stack = new Stack(s.app, 'Unsafe');
    new s3.Bucket(stack, 'Bare');
    const aws = new AwsSolutionsChecks().validateScope(stack);
    const hipaa = new HIPAASecurityChecks().validateScope(stack);
    expect(aws.violations.map((v) => v.ruleName)).toContain('AwsSolutions-S1');
    expect(hipaa.violations.map((v) => v.ruleName)).toContain('HIPAA.Security-S3BucketSSLRequestsOnly');
  });

  it('scopes every acknowledgement to a construct below the stack, with a written reason', () => {
    const acks = acknowledgements(s.stack);
    expect(acks.length).toBeGreaterThan(10);
    for (const ack of acks) {
      expect(ack.path.split('/').length, `${ack.id} at ${ack.path}`).toBeGreaterThan(1);
      expect(ack.reason.length, `${ack.id} at ${ack.path}`).toBeGreaterThan(30);
    }
    expect(acknowledgements(s.app).filter((a) => a.path === '' || a.path === s.stack.node.path)).toEqual([]);
  });

  it('lists every acknowledgement in the README', () => {
    // Built with two shards here and one for the README: compare with the shard paths folded together.
    const readme = readFileSync(join(REPO_ROOT, 'infra/README.md'), 'utf8');
    const fold = (row: string) => row.replace(/`Query\/Shard\d+(\/ServiceRole)?`(, )?/g, '');
    const listed = new Set(
      readme
        .split('\n')
        .filter((l) => l.startsWith('| `'))
        .map(fold),
    );
    for (const row of suppressionRows(s.stack)) expect(listed.has(fold(row)), row).toBe(true);
  });
});
