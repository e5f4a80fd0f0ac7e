/**
 * Prints the cdk-nag acknowledgements of the stack as a markdown table (finding, reason, construct paths),
 * for the README: `npx tsx infra/bin/suppressions.ts`. Builds the stack with one shard function and asset
 * bundling skipped; nothing is written. test/infra/nag.test.ts checks the README holds every row.
 */
import { App } from 'aws-cdk-lib';
import { configFromContext } from '../lib/config.ts';
import { FEATURE_FLAGS } from '../lib/flags.ts';
import { suppressionRows } from '../lib/nag.ts';
import { CohortSearchStack } from '../lib/stack.ts';

const app = new App({
  context: { ...FEATURE_FLAGS, 'aws:cdk:bundling-stacks': [], queryShards: 1, modelDir: '/nonexistent' },
});
const config = configFromContext(app.node, {});
const stack = new CohortSearchStack(app, config.stackName, { config });
console.log('| finding | reason | constructs (under the stack) |\n| --- | --- | --- |');
for (const row of suppressionRows(stack)) console.log(row);
