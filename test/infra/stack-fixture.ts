import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { configFromContext } from '../../infra/lib/config.ts';
import { FEATURE_FLAGS } from '../../infra/lib/flags.ts';
import { CohortSearchStack } from '../../infra/lib/stack.ts';

/** A synthesized stack and its template. */
export interface SynthesizedStack {
  readonly app: App;
  readonly stack: CohortSearchStack;
  readonly template: Template;
}

/**
 * Builds the stack as the app does, from context, with asset bundling skipped (the handler files, the
 * native layer and the model need not exist): the template is the deployed one apart from asset hashes.
 */
export function synthStack(context: Record<string, unknown> = {}): SynthesizedStack {
  const app = new App({
    context: {
      ...FEATURE_FLAGS,
      'aws:cdk:bundling-stacks': [],
      // Image assets are not copied into the assembly: nothing here builds them.
      'aws:cdk:disable-asset-staging': true,
      account: '123456789012',
      region: 'eu-west-1',
      modelDir: '/nonexistent/model',
      ...context,
    },
  });
  const config = configFromContext(app.node, {});
  const stack = new CohortSearchStack(app, config.stackName, {
    config,
    env: { account: config.account, region: config.region },
  });
  return { app, stack, template: Template.fromStack(stack) };
}
