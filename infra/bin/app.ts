import { App } from 'aws-cdk-lib';
import { configFromContext } from '../lib/config.ts';
import { FEATURE_FLAGS } from '../lib/flags.ts';
import { addNagChecks } from '../lib/nag.ts';
import { CohortSearchStack } from '../lib/stack.ts';

// The CDK entry point named by cdk.json. Configuration comes from context (-c key=value or cdk.json);
// see infra/README.md for every key and its default. The cdk-nag packs (AWS Solutions, HIPAA Security)
// run on every synth, so a finding that is not acknowledged with a reason stops the deploy.
const app = new App({ context: FEATURE_FLAGS });
const config = configFromContext(app.node);
new CohortSearchStack(app, config.stackName, {
  config,
  ...(config.account || config.region ? { env: { account: config.account, region: config.region } } : {}),
  description:
    'Semantic cohort search over clinical notes (ClinicalBERT, HNSW): buckets, embed pipeline, query API',
});
if (app.node.tryGetContext('nag') !== 'false' && app.node.tryGetContext('nag') !== false) addNagChecks(app);
app.synth();
