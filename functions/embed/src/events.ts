/**
 * S3 events as EventBridge delivers them (here through an SQS queue): parsing, the prefix filter,
 * de-duplication and ordering. S3 delivers each event at least once and in no particular order; the
 * sequencer (a hex string, per key) orders events of one key.
 */
import { z } from 'zod';
import { EventParseError } from './errors.ts';

/** One version of a source object, as an event or a job spec names it. */
export interface ObjectRef {
  /** Bucket name; absent for a local file (then `key` is its path). */
  readonly bucket?: string;
  readonly key: string;
  readonly versionId?: string;
  /** The object's ETag (quoted or not, as S3 gives it), or a sha256 for a local file. */
  readonly etag?: string;
  /** S3 event sequencer (hex), or for a local file its mtime in ns as hex: orders versions of one key. */
  readonly sequencer?: string;
  /** Bytes. */
  readonly size?: number;
  /** ISO 8601 time of the event. */
  readonly time?: string;
}

/** A parsed S3 event. */
export interface ObjectEvent {
  readonly type: 'created' | 'deleted';
  readonly object: ObjectRef;
}

const objectDetail = z.object({
  key: z.string().min(1),
  size: z.number().nonnegative().optional(),
  etag: z.string().optional(),
  'version-id': z.string().optional(),
  sequencer: z.string().optional(),
});

const eventSchema = z.object({
  'detail-type': z.string(),
  source: z.literal('aws.s3'),
  time: z.string().optional(),
  detail: z.object({
    bucket: z.object({ name: z.string().min(1) }),
    object: objectDetail,
    'deletion-type': z.string().optional(),
  }),
});

/**
 * Parses the body of one SQS message: an EventBridge S3 event. Returns undefined for S3 event types
 * this pipeline does not act on (e.g. `Object Restore Completed`).
 * @throws EventParseError when the body is not JSON or not an S3 event
 */
export function parseEventBody(body: string): ObjectEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (cause) {
    throw new EventParseError('message body is not JSON', { cause });
  }
  const parsed = eventSchema.safeParse(value);
  if (!parsed.success) {
    throw new EventParseError(
      `message is not an EventBridge S3 event: ${parsed.error.issues.map((i) => i.path.join('.')).join(', ')}`,
    );
  }
  const e = parsed.data;
  const type =
    e['detail-type'] === 'Object Created'
      ? 'created'
      : e['detail-type'] === 'Object Deleted'
        ? 'deleted'
        : undefined;
  if (!type) return undefined;
  const o = e.detail.object;
  return {
    type,
    object: {
      bucket: e.detail.bucket.name,
      key: o.key,
      ...(o['version-id'] ? { versionId: o['version-id'] } : {}),
      ...(o.etag ? { etag: o.etag } : {}),
      ...(o.sequencer ? { sequencer: o.sequencer } : {}),
      ...(o.size === undefined ? {} : { size: o.size }),
      ...(e.time ? { time: e.time } : {}),
    },
  };
}

/**
 * Orders two sequencers of one key: negative when `a` is older. Sequencers are hex numbers of varying
 * length, so the shorter one (after dropping leading zeros) is older; a missing sequencer is older
 * than any.
 */
export function compareSequencers(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  const x = a.replace(/^0+/, '').toUpperCase();
  const y = b.replace(/^0+/, '').toUpperCase();
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The identity of an event for de-duplication: bucket, key, version id and sequencer. */
export function eventIdentity(e: ObjectEvent): string {
  const o = e.object;
  return JSON.stringify([e.type, o.bucket ?? null, o.key, o.versionId ?? null, o.sequencer ?? null]);
}

/** The identity of an object (all its versions): bucket and key. */
export function objectIdentity(o: Pick<ObjectRef, 'bucket' | 'key'>): string {
  return JSON.stringify([o.bucket ?? null, o.key]);
}

/** Whether an event is for the configured bucket and under the configured prefix. */
export function inScope(o: ObjectRef, bucket: string, prefix: string): boolean {
  return o.bucket === bucket && o.key.startsWith(prefix);
}

/**
 * Drops repeated deliveries (same type, bucket, key, version id and sequencer), keeping the first of
 * each; order is otherwise kept.
 */
export function dedupeEvents<T extends { readonly event: ObjectEvent }>(items: readonly T[]): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const id = eventIdentity(item.event);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
