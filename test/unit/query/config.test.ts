import { describe, expect, it } from 'vitest';
import { ConfigError, QUERY_ENV, readQueryConfig } from '../../../functions/query/src/index.ts';

const base = {
  INDEX_URI: 's3://index-bucket/index',
  MODEL_DIR: '/opt/model',
  AUDIT_URI: 's3://audit-bucket/audit/',
};

describe('readQueryConfig', () => {
  it('reads the variables with their defaults', () => {
    expect(readQueryConfig(base)).toEqual({
      indexUri: 's3://index-bucket/index',
      modelDir: '/opt/model',
      auditUri: 's3://audit-bucket/audit/',
      shardFunctions: [],
      shardIndex: 0,
      shardCount: 1,
      cacheDir: '/tmp/cohort-segments',
      refreshIntervalMs: 5000,
      maxInFlight: 64,
    });
  });

  it('splits SHARD_FUNCTIONS and parses numbers', () => {
    const c = readQueryConfig({
      ...base,
      SHARD_FUNCTIONS: ' shard-0, shard-1 ,',
      REFRESH_INTERVAL_MS: '2000',
      MODEL_THREADS: '2',
    });
    expect(c.shardFunctions).toEqual(['shard-0', 'shard-1']);
    expect(c.refreshIntervalMs).toBe(2000);
    expect(c.modelThreads).toBe(2);
  });

  it('reads a shard function without a model or audit location', () => {
    const c = readQueryConfig(
      { INDEX_URI: 's3://index-bucket/index', SHARD_INDEX: '1', SHARD_COUNT: '3' },
      'shard',
    );
    expect(c).toMatchObject({ shardIndex: 1, shardCount: 3 });
    expect(c.modelDir).toBeUndefined();
  });

  it('names each bad variable', () => {
    expect(() => readQueryConfig({ MODEL_DIR: '/opt/model', MAX_IN_FLIGHT: 'lots' })).toThrow(
      /INDEX_URI.*MAX_IN_FLIGHT|MAX_IN_FLIGHT.*INDEX_URI/,
    );
    expect(() => readQueryConfig({ ...base, AUDIT_URI: undefined })).toThrow(ConfigError);
    expect(() => readQueryConfig({ ...base, SHARD_INDEX: '2', SHARD_COUNT: '2' }, 'shard')).toThrow(
      /SHARD_INDEX/,
    );
    expect(() => readQueryConfig({ ...base, MODEL_DIR: undefined })).toThrow(/MODEL_DIR/);
  });

  it('documents every variable it reads', () => {
    expect(Object.keys(QUERY_ENV).sort()).toEqual([
      'AUDIT_URI',
      'CACHE_DIR',
      'INDEX_URI',
      'MAX_IN_FLIGHT',
      'MODEL_DIR',
      'MODEL_THREADS',
      'REFRESH_INTERVAL_MS',
      'SHARD_COUNT',
      'SHARD_FUNCTIONS',
      'SHARD_INDEX',
    ]);
  });
});
