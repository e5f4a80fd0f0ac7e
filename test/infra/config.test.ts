import { App } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { ConfigError, configFromContext, DEFAULT_CONFIG } from '../../infra/lib/config.ts';

const read = (context: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
  configFromContext(new App({ context }).node, env);

describe('configFromContext', () => {
  it('gives the documented defaults when no context is set', () => {
    expect(read({})).toEqual(DEFAULT_CONFIG);
  });

  it('takes the account and region from the CLI environment unless context names them', () => {
    const env = { CDK_DEFAULT_ACCOUNT: '111111111111', CDK_DEFAULT_REGION: 'us-east-1' };
    expect(read({}, env)).toMatchObject({ account: '111111111111', region: 'us-east-1' });
    expect(read({ region: 'eu-central-1' }, env).region).toBe('eu-central-1');
  });

  it('parses strings from -c flags: numbers, booleans and lists', () => {
    const config = read({
      spot: 'false',
      queryMemoryMb: '8192',
      queryShards: '3',
      gpuInstanceTypes: 'g6.xlarge, g6.4xlarge',
      logRetentionDays: '90',
    });
    expect(config).toMatchObject({
      spot: false,
      queryMemoryMb: 8192,
      queryShards: 3,
      gpuInstanceTypes: ['g6.xlarge', 'g6.4xlarge'],
      logRetentionDays: 90,
    });
  });

  it('rejects malformed and out-of-range values by name', () => {
    expect(() => read({ queryMemoryMb: '20000' })).toThrow(
      /queryMemoryMb=20000 must be an integer from 1024 to 10240/,
    );
    expect(() => read({ spot: 'maybe' })).toThrow(ConfigError);
    expect(() => read({ logRetentionDays: '100' })).toThrow(/logRetentionDays=100 must be one of/);
    expect(() => read({ notesPrefix: 'incoming' })).toThrow(/must be a key prefix ending in '\/'/);
    expect(() => read({ authMode: 'none' })).toThrow(/authMode=none must be iam or jwt/);
  });

  it('needs an issuer and an audience for JWT authorization', () => {
    expect(() => read({ authMode: 'jwt' })).toThrow(/jwtIssuer and jwtAudience/);
    expect(read({ authMode: 'jwt', jwtIssuer: 'https://issuer.example', jwtAudience: 'a,b' })).toMatchObject({
      authMode: 'jwt',
      jwtIssuer: 'https://issuer.example',
      jwtAudience: ['a', 'b'],
    });
  });

  it('imports buckets only when all three names and the key are given', () => {
    expect(() => read({ notesBucketName: 'n', indexBucketName: 'i' })).toThrow(/needs all of/);
    const config = read({
      notesBucketName: 'n',
      indexBucketName: 'i',
      auditBucketName: 'a',
      bucketsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/k',
      acknowledgeExistingBuckets: 'true',
    });
    expect(config.existingBuckets).toEqual({
      notesBucketName: 'n',
      indexBucketName: 'i',
      auditBucketName: 'a',
      keyArn: 'arn:aws:kms:eu-west-1:123456789012:key/k',
    });
    expect(config.acknowledgeExistingBuckets).toBe(true);
  });

  it('takes the job model location and checksum together or not at all', () => {
    expect(() => read({ jobModelUri: 's3://models/bert/' })).toThrow(/go together/);
    expect(() => read({ jobModelUri: 's3://models/bert/', jobModelSha256: 'abc' })).toThrow(/64 hex digits/);
  });
});
