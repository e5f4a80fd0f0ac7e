import { App } from 'aws-cdk-lib';

// The CDK entry point named by cdk.json. The stacks (buckets, embed pipeline, query API, network)
// are added by the infrastructure work; until then the app synthesizes an empty cloud assembly.
const app = new App();
app.synth();
