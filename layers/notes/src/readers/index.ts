/**
 * Note readers: one entry point for every input format, streaming and in constant memory.
 *
 * {@link readNotes} yields, in file order, one item per data record (CSV row, non-blank NDJSON
 * line, plain-text object): a note, or a quarantined record with its source (`key`, and `row` or
 * `line`) and a reason. A file that cannot be read at all (binary, corrupt gzip, unknown format, a
 * required column missing) gives one quarantined item for the file. Nothing is dropped silently,
 * bad input never throws, and no note text goes into a reason, a detail or an error message.
 *
 * Formats and their mappings are documented in `mimic.ts`, `fhir.ts`, `jsonl.ts` and `text.ts`;
 * detection in `detect.ts`; limits in `limits.ts`; the invalid-UTF-8 policy in `common.ts`.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { NotesConfigError } from '../errors.ts';
import type { NoteFormat, NoteSource, ReadItem } from '../types.ts';
import {
  type ByteBody,
  GZIP_MAGIC,
  gunzip,
  limitBytes,
  PeekableBytes,
  StreamStop,
  toBuffers,
  UTF8_BOM,
} from './bytes.ts';
import { type InvalidUtf8Policy, quarantined, type ReaderContext } from './common.ts';
import { contentProblem, planRead, SNIFF_BYTES } from './detect.ts';
import { type ReadLimits, type ResolvedReadLimits, resolveReadLimits } from './limits.ts';
import { readMimicCsv } from './mimic.ts';
import { readNdjson } from './ndjson.ts';
import { readTextNote } from './text.ts';

export type { ByteBody } from './bytes.ts';
export type { InvalidUtf8Policy } from './common.ts';
export { DEFAULT_READ_LIMITS, type ReadLimits, type ResolvedReadLimits } from './limits.ts';

/** One object to read: its bytes and where it came from. */
export interface NoteInput {
  /** The object's bytes: the S3 SDK's `Body`, a file stream, any async iterable of bytes. */
  readonly body: ByteBody;
  /** Object key, or file path in local mode. Its extension helps detect the format. */
  readonly key: string;
  readonly bucket?: string;
  readonly versionId?: string;
  readonly etag?: string;
  /**
   * S3 user metadata (`x-amz-meta-patient-id` as `patient-id`; the prefix is also accepted) or a
   * sidecar's fields. Keys are case-insensitive. Only plain-text notes use it (see `text.ts`).
   */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** Options of {@link readNotes}. */
export interface ReadOptions {
  /** Input format. Default `auto`: detected from the key's extension and the first bytes. */
  readonly format?: NoteFormat | 'auto';
  /** Size and count limits; see {@link ReadLimits} for each default. */
  readonly limits?: ReadLimits;
  /** What invalid UTF-8 does to a record. Default `quarantine` (reason `invalid UTF-8`). */
  readonly invalidUtf8?: InvalidUtf8Policy;
}

/** Options of {@link readNotesFromFile}. */
export interface FileReadOptions extends ReadOptions {
  /**
   * Metadata as S3 would give it. Default: the sidecar `<path>.meta.json` when it exists (see
   * {@link readNotesFromFile}), else none.
   */
  readonly metadata?: Readonly<Record<string, string>>;
}

const FORMATS: ReadonlySet<string> = new Set(['auto', 'mimic3', 'mimic4', 'fhir', 'jsonl', 'text']);

/**
 * Reads the notes of one object, in file order. gzip is detected by its magic bytes (whatever the
 * name) and a UTF-8 BOM is dropped. Reading stops early, without reading the rest, when the
 * consumer stops iterating, when a file is quarantined whole, or at a limit.
 *
 * Where the data goes bad part-way (gzip corrupt or truncated, `maxFileBytes` passed), the items
 * already yielded stand and one more quarantines the rest: `corrupt gzip after N records`,
 * `file over limit after N records`, N counting the records yielded.
 *
 * An error of the body itself (network, file system) is not a property of the data and is not
 * quarantined: it propagates, so that the caller can retry.
 *
 * @throws NotesConfigError at once, for an unknown `format` or `invalidUtf8`, or a limit that is not a
 *   positive integer
 */
export function readNotes(input: NoteInput, options: ReadOptions = {}): AsyncIterable<ReadItem> {
  const { format, limits, invalidUtf8 } = resolveOptions(options);
  return read(input, format, limits, invalidUtf8);
}

interface ResolvedOptions {
  readonly format: NoteFormat | 'auto';
  readonly limits: ResolvedReadLimits;
  readonly invalidUtf8: InvalidUtf8Policy;
}

function resolveOptions(options: ReadOptions): ResolvedOptions {
  const format = options.format ?? 'auto';
  if (!FORMATS.has(format)) throw new NotesConfigError(`unknown note format ${JSON.stringify(format)}`);
  const invalidUtf8 = options.invalidUtf8 ?? 'quarantine';
  if (invalidUtf8 !== 'quarantine' && invalidUtf8 !== 'replace') {
    throw new NotesConfigError(
      `invalidUtf8 must be 'quarantine' or 'replace', got ${JSON.stringify(invalidUtf8)}`,
    );
  }
  return { format, limits: resolveReadLimits(options.limits), invalidUtf8 };
}

/** The sidecar of a local file: `<path>.meta.json`. */
export const SIDECAR_SUFFIX = '.meta.json';

/**
 * {@link readNotes} for a local file; the path is the key.
 *
 * Metadata: `options.metadata` when given; otherwise, when `<path>.meta.json` exists, its fields.
 * The sidecar must be a JSON object of string fields, named as S3 user metadata would be (e.g.
 * `{"patient-id": "p1", "note-id": "n1"}`; see `text.ts` for the fields a plain-text note reads).
 * A sidecar that is not such an object quarantines the whole file, unread, with reason
 * `malformed sidecar`.
 * @throws NotesConfigError as {@link readNotes}; a missing file fails on the first iteration, as
 *   any error of the body does, and so does an error reading an existing sidecar
 */
export function readNotesFromFile(path: string, options: FileReadOptions = {}): AsyncIterable<ReadItem> {
  const { metadata, ...rest } = options;
  const { format, limits, invalidUtf8 } = resolveOptions(rest);
  if (metadata) return read({ body: openLazily(path), key: path, metadata }, format, limits, invalidUtf8);
  return readWithSidecar(path, format, limits, invalidUtf8);
}

async function* readWithSidecar(
  path: string,
  format: NoteFormat | 'auto',
  limits: ResolvedReadLimits,
  invalidUtf8: InvalidUtf8Policy,
): AsyncGenerator<ReadItem> {
  const sidecar = await readSidecar(`${path}${SIDECAR_SUFFIX}`);
  if (typeof sidecar === 'string') {
    yield quarantined({ key: path }, 'malformed sidecar', sidecar);
    return;
  }
  const metadata = sidecar === undefined ? {} : { metadata: sidecar };
  yield* read({ body: openLazily(path), key: path, ...metadata }, format, limits, invalidUtf8);
}

/** The sidecar's fields, `undefined` when there is none, or why it is malformed (a string). */
async function readSidecar(path: string): Promise<Record<string, string> | string | undefined> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return `${SIDECAR_SUFFIX} is not valid JSON`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `${SIDECAR_SUFFIX} is not a JSON object`;
  }
  const fields: Record<string, string> = {};
  for (const [name, field] of Object.entries(value)) {
    if (typeof field !== 'string') return `${SIDECAR_SUFFIX} has a field that is not a string`;
    fields[name] = field;
  }
  return fields;
}

/** The file's bytes, opened on the first read, so that an iterable never read holds no descriptor. */
async function* openLazily(path: string): AsyncGenerator<Buffer> {
  yield* createReadStream(path) as AsyncIterable<Buffer>;
}

async function* read(
  input: NoteInput,
  format: NoteFormat | 'auto',
  limits: ResolvedReadLimits,
  invalidUtf8: InvalidUtf8Policy,
): AsyncGenerator<ReadItem> {
  const source: NoteSource = {
    ...(input.bucket === undefined ? {} : { bucket: input.bucket }),
    key: input.key,
    ...(input.versionId === undefined ? {} : { versionId: input.versionId }),
    ...(input.etag === undefined ? {} : { etag: input.etag }),
  };
  const ctx: ReaderContext = {
    source,
    limits,
    invalidUtf8,
    metadata: normalizeMetadata(input.metadata),
    records: 0,
  };
  const raw = new PeekableBytes(toBuffers(input.body));
  let data: PeekableBytes | undefined;
  try {
    let bytes: AsyncIterable<Buffer> = raw;
    if ((await raw.peek(GZIP_MAGIC.length)).equals(GZIP_MAGIC)) bytes = gunzip(raw);
    if (Number.isFinite(limits.maxFileBytes)) bytes = limitBytes(bytes, limits.maxFileBytes);
    data = new PeekableBytes(bytes);
    const wanted = SNIFF_BYTES + UTF8_BOM.length;
    let head = await data.peek(wanted);
    const whole = head.length < wanted;
    if (head.subarray(0, UTF8_BOM.length).equals(UTF8_BOM)) {
      data.skip(UTF8_BOM.length);
      head = head.subarray(UTF8_BOM.length);
    }
    const problem = contentProblem(head);
    if (problem !== undefined) {
      yield quarantined(source, problem.reason, problem.detail);
      return;
    }
    const plan = planRead(head, whole, input.key, ctx.metadata, format);
    if (plan.reader === 'unknown') {
      yield quarantined(source, 'unknown format', plan.detail);
      return;
    }
    // An empty object is one empty note in plain-text mode; any other format has nothing to read.
    if (head.length === 0 && plan.reader !== 'text') {
      yield quarantined(source, 'empty file');
      return;
    }
    if (plan.reader === 'csv') yield* readMimicCsv(data, ctx, plan.variant);
    else if (plan.reader === 'ndjson') yield* readNdjson(data, ctx, plan.variant);
    else yield* readTextNote(data, ctx);
  } catch (error) {
    if (!(error instanceof StreamStop)) throw error;
    yield quarantined(source, `${error.reason} after ${ctx.records} records`, error.detail);
  } finally {
    await data?.close();
    await raw.close();
  }
}

/** Lower-cased keys, `x-amz-meta-` dropped: how S3 SDKs and sidecars may spell the same field. */
function normalizeMetadata(metadata: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(metadata ?? {})) {
    if (typeof value === 'string') out[name.toLowerCase().replace(/^x-amz-meta-/, '')] = value;
  }
  return out;
}
