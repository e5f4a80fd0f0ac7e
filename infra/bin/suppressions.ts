/**
 * Prints the cdk-nag acknowledgements of the stack as a markdown table (finding, reason, construct paths),
 * for the README: `npx tsx infra/bin/suppressions.ts`. Builds the stack with one shard function and asset
 * bundling skipped; nothing is written.
 */
import { App, Validations } from 'aws-cdk-lib';
import { configFromContext } from '../lib/config.ts';
import { FEATURE_FLAGS } from '../lib/flags.ts';
import { CohortSearchStack } from '../lib/stack.ts';

const app = new App({
  context: { ...FEATURE_FLAGS, 'aws:cdk:bundling-stacks': [], queryShards: 1, modelDir: '/nonexistent' },
});
const config = configFromContext(app.node, {});
const stack = new CohortSearchStack(app, config.stackName, { config });
// One row per finding and reason, listing every construct it is acknowledged on.
const rows = new Map<string, string[]>();
for (const c of stack.node.findAll()) {
  for (const m of c.node.metadata) {
    if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
    for (const [id, reason] of Object.entries(m.data as Record<string, string>)) {
      if (!/(AwsSolutions|HIPAA\.Security)-/.test(id)) continue;
      const finding = id.replace(/^Annotation::/, '').replace(/<([A-Za-z]+)[0-9A-F]{8}\.Arn>/g, '<$1.Arn>');
      const key = `\`${finding}\` | ${reason}`;
      rows.set(key, [...(rows.get(key) ?? []), `\`${c.node.path.replace(`${stack.node.path}/`, '')}\``]);
    }
  }
}
console.log('| finding | reason | constructs (under the stack) |\n| --- | --- | --- |');
for (const [key, paths] of rows) console.log(`| ${key} | ${paths.join(', ')} |`);
