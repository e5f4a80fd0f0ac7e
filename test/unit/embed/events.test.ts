import { describe, expect, it } from 'vitest';
import {
  DISPATCHER_ENV,
  dispatcherConfigFromEnv,
  JOB_ENV,
  jobConfigFromEnv,
} from '../../../functions/embed/src/config.ts';
import { EmbedConfigError, EventParseError } from '../../../functions/embed/src/errors.ts';
import {
  compareSequencers,
  dedupeEvents,
  inScope,
  parseEventBody,
} from '../../../functions/embed/src/events.ts';
import { groupObjects, makeJobSpec } from '../../../functions/embed/src/spec.ts';
import { s3Event } from '../../helpers/embed.ts';

describe('parseEventBody', () => {
  it('reads created and deleted objects with version id, etag, size and sequencer', () => {
    const created = parseEventBody(
      JSON.stringify(
        s3Event('Object Created', {
          bucket: 'b',
          key: 'incoming/a.csv',
          size: 5,
          etag: '"abc"',
          versionId: 'v1',
          sequencer: '0A',
        }),
      ),
    );
    expect(created).toEqual({
      type: 'created',
      object: {
        bucket: 'b',
        key: 'incoming/a.csv',
        size: 5,
        etag: 'abc',
        versionId: 'v1',
        sequencer: '0A',
        time: '2026-01-01T00:00:00Z',
      },
    });
    const deleted = parseEventBody(
      JSON.stringify(s3Event('Object Deleted', { bucket: 'b', key: 'k', sequencer: '0B' })),
    );
    expect(deleted?.type).toBe('deleted');
  });

  it('returns nothing for S3 event types it does not act on, and throws for what is not an S3 event', () => {
    const restore = {
      ...s3Event('Object Created', { bucket: 'b', key: 'k', sequencer: '1' }),
      'detail-type': 'Object Restore Completed',
    };
    expect(parseEventBody(JSON.stringify(restore))).toBeUndefined();
    expect(() => parseEventBody('nope')).toThrow(EventParseError);
    expect(() =>
      parseEventBody(JSON.stringify({ source: 'aws.ec2', 'detail-type': 'x', detail: {} })),
    ).toThrow(EventParseError);
  });
});

describe('compareSequencers', () => {
  it('orders hex sequencers numerically, whatever their length, and puts a missing one first', () => {
    expect(compareSequencers('0A', '0B')).toBeLessThan(0);
    expect(compareSequencers('FF', '0100')).toBeLessThan(0);
    expect(compareSequencers('0064D3901D00059242', '64D3901D00059242')).toBe(0);
    expect(compareSequencers(undefined, '00')).toBeLessThan(0);
    expect(compareSequencers('1', undefined)).toBeGreaterThan(0);
  });
});

describe('dedupeEvents and inScope', () => {
  it('keeps one of each bucket, key, version id and sequencer', () => {
    const e = (key: string, seq: string, versionId?: string) => ({
      event: {
        type: 'created' as const,
        object: { bucket: 'b', key, sequencer: seq, ...(versionId ? { versionId } : {}) },
      },
    });
    expect(dedupeEvents([e('a', '1'), e('a', '1'), e('a', '2'), e('a', '1', 'v'), e('b', '1')])).toHaveLength(
      4,
    );
  });

  it('accepts only the configured bucket and prefix', () => {
    expect(inScope({ bucket: 'b', key: 'incoming/x' }, 'b', 'incoming/')).toBe(true);
    expect(inScope({ bucket: 'c', key: 'incoming/x' }, 'b', 'incoming/')).toBe(false);
    expect(inScope({ bucket: 'b', key: 'other/x' }, 'b', 'incoming/')).toBe(false);
  });
});

describe('job specs', () => {
  it('give the same id to the same objects in any order', () => {
    const a = { bucket: 'b', key: 'a', etag: '1', sequencer: '01' };
    const b = { bucket: 'b', key: 'b', etag: '2', sequencer: '02' };
    expect(makeJobSpec('s3://i', [a, b]).id).toBe(makeJobSpec('s3://i', [b, a]).id);
    expect(makeJobSpec('s3://i', [a]).id).not.toBe(makeJobSpec('s3://i', [{ ...a, sequencer: '03' }]).id);
  });

  it('put an object larger than the byte limit in a job of its own', () => {
    const groups = groupObjects(
      [
        { key: 'a', size: 10 },
        { key: 'big', size: 500 },
        { key: 'c', size: 10 },
      ],
      { maxObjects: 10, maxBytes: 100, maxAgeSeconds: 60 },
    );
    expect(groups.map((g) => g.map((o) => o.key))).toEqual([['a'], ['big'], ['c']]);
  });
});

describe('configuration', () => {
  const base = {
    [DISPATCHER_ENV.indexUri]: 's3://index/prefix',
    [DISPATCHER_ENV.notesBucket]: 'notes',
    [DISPATCHER_ENV.jobQueue]: 'queue',
    [DISPATCHER_ENV.jobDefinition]: 'def',
  };

  it('reads the dispatcher variables with their defaults', () => {
    expect(dispatcherConfigFromEnv(base)).toEqual({
      indexUri: 's3://index/prefix',
      notesBucket: 'notes',
      notesPrefix: 'incoming/',
      jobQueue: 'queue',
      jobDefinition: 'def',
      limits: { maxObjects: 500, maxBytes: 2 * 1024 ** 3, maxAgeSeconds: 300 },
    });
    expect(dispatcherConfigFromEnv({ ...base, [DISPATCHER_ENV.maxObjects]: '7' }).limits.maxObjects).toBe(7);
  });

  it('names every missing or invalid variable', () => {
    expect(() => dispatcherConfigFromEnv({ [DISPATCHER_ENV.indexUri]: '/tmp/x' })).toThrow(
      /INDEX_URI.*NOTES_BUCKET.*JOB_QUEUE.*JOB_DEFINITION/,
    );
    expect(() => dispatcherConfigFromEnv({ ...base, [DISPATCHER_ENV.maxBytes]: '-1' })).toThrow(
      EmbedConfigError,
    );
    expect(() => jobConfigFromEnv({ [JOB_ENV.modelUri]: 's3://m/b' })).toThrow(/MODEL_SHA256/);
    expect(() => jobConfigFromEnv({ [JOB_ENV.provider]: 'tpu' })).toThrow(/PROVIDER/);
  });
});
