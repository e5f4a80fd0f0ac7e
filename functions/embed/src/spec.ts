/**
 * Job specs: the list of object versions one batch job embeds. The dispatcher writes each spec to
 * the index store (`jobs/<id>.json`, create-only) and submits a job that names it. The id is a hash
 * of the objects, so a redelivered batch of events makes the same spec and the same id.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type ObjectStore, openStore, PreconditionFailedError } from '@cohort/index';
import { z } from 'zod';
import type { GroupingLimits } from './config.ts';
import { JobSpecError } from './errors.ts';
import type { ObjectRef } from './events.ts';

/** Format tag of job specs. */
export const JOB_SPEC_FORMAT = 'cohort-embed-job/1';

/** Key prefix of job specs and reports in the index store. */
export const JOBS_PREFIX = 'jobs/';

/** The contents of `jobs/<id>.json`. */
export interface JobSpec {
  readonly format: typeof JOB_SPEC_FORMAT;
  /** Derived from the objects (see {@link jobIdFor}). */
  readonly id: string;
  /** Where the index lives: `s3://bucket/prefix` or a directory. */
  readonly index: string;
  readonly createdAt: string;
  readonly objects: readonly ObjectRef[];
}

const objectRefSchema = z.object({
  bucket: z.string().min(1).optional(),
  key: z.string().min(1),
  versionId: z.string().optional(),
  etag: z.string().optional(),
  sequencer: z.string().optional(),
  size: z.number().nonnegative().optional(),
  time: z.string().optional(),
});

const specSchema = z.object({
  format: z.literal(JOB_SPEC_FORMAT),
  id: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/),
  index: z.string().min(1),
  createdAt: z.string(),
  objects: z.array(objectRefSchema).min(1),
});

/** The key of a job's spec in the index store. */
export function jobSpecKey(id: string): string {
  return `${JOBS_PREFIX}${id}.json`;
}

/** The key of a job's report in the index store. */
export function jobReportKey(id: string): string {
  return `${JOBS_PREFIX}${id}.report.json`;
}

/** The job id of a list of object versions: 32 hex digits of sha256 over their identities, in order. */
export function jobIdFor(objects: readonly ObjectRef[]): string {
  const hash = createHash('sha256');
  for (const o of objects) {
    hash.update(
      JSON.stringify([o.bucket ?? null, o.key, o.versionId ?? null, o.etag ?? null, o.sequencer ?? null]),
    );
    hash.update('\n');
  }
  return hash.digest('hex').slice(0, 32);
}

/** Builds a spec for `objects` (sorted by bucket and key so that the same set gives the same id). */
export function makeJobSpec(index: string, objects: readonly ObjectRef[], now = new Date()): JobSpec {
  if (objects.length === 0) throw new JobSpecError('a job needs at least one object');
  const sorted = [...objects].sort((a, b) => {
    const x = `${a.bucket ?? ''}\0${a.key}\0${a.sequencer ?? ''}`;
    const y = `${b.bucket ?? ''}\0${b.key}\0${b.sequencer ?? ''}`;
    return x < y ? -1 : x > y ? 1 : 0;
  });
  return {
    format: JOB_SPEC_FORMAT,
    id: jobIdFor(sorted),
    index,
    createdAt: now.toISOString(),
    objects: sorted,
  };
}

/**
 * Splits created objects into groups that each keep within the limits: at most `maxObjects`, at most
 * `maxBytes` (an object larger than that alone), and event times at most `maxAgeSeconds` apart.
 * Objects are taken in event-time order.
 */
export function groupObjects(objects: readonly ObjectRef[], limits: GroupingLimits): ObjectRef[][] {
  const timeOf = (o: ObjectRef) => (o.time ? Date.parse(o.time) : 0) || 0;
  const sorted = [...objects].sort((a, b) => timeOf(a) - timeOf(b));
  const groups: ObjectRef[][] = [];
  let current: ObjectRef[] = [];
  let bytes = 0;
  let firstTime = 0;
  for (const o of sorted) {
    const size = o.size ?? 0;
    const full =
      current.length >= limits.maxObjects ||
      (current.length > 0 && bytes + size > limits.maxBytes) ||
      (current.length > 0 && timeOf(o) - firstTime > limits.maxAgeSeconds * 1000);
    if (full) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    if (current.length === 0) firstTime = timeOf(o);
    current.push(o);
    bytes += size;
  }
  if (current.length) groups.push(current);
  return groups;
}

/**
 * Writes a spec create-only. Returns false when a spec with that id is already there (a redelivered
 * batch): the caller need not submit again unless the job was never submitted.
 */
export async function writeJobSpec(store: ObjectStore, spec: JobSpec): Promise<boolean> {
  try {
    await store.put(jobSpecKey(spec.id), `${JSON.stringify(spec, null, 2)}\n`, {
      ifNoneMatch: '*',
      contentType: 'application/json',
    });
    return true;
  } catch (error) {
    if (error instanceof PreconditionFailedError) return false;
    throw error;
  }
}

/** Parses and validates spec JSON. @throws JobSpecError */
export function parseJobSpec(text: string, where: string): JobSpec {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new JobSpecError(`${where} is not JSON`, { cause });
  }
  const parsed = specSchema.safeParse(value);
  if (!parsed.success) {
    throw new JobSpecError(
      `${where} is not a ${JOB_SPEC_FORMAT} job spec: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data as JobSpec;
}

/**
 * Reads a spec from a URI: `s3://bucket/prefix/jobs/<id>.json`, or a local path.
 * @throws JobSpecError when it cannot be read or parsed
 */
export async function readJobSpec(
  uri: string,
  options: { s3?: Parameters<typeof openStore>[1] } = {},
): Promise<JobSpec> {
  let text: string;
  try {
    if (uri.startsWith('s3://')) {
      const slash = uri.lastIndexOf('/');
      const store = openStore(uri.slice(0, slash), options.s3);
      text = new TextDecoder().decode(await store.get(uri.slice(slash + 1)));
    } else {
      text = await readFile(uri, 'utf8');
    }
  } catch (cause) {
    throw new JobSpecError(`cannot read job spec ${uri}`, { cause });
  }
  return parseJobSpec(text, uri);
}
