/**
 * What every format reader shares: the context of one file, the quarantine helpers, and the checks
 * that make a note a note (ids, date, non-empty text within the size limit).
 */
import { isUtf8 } from 'node:buffer';
import type { NoteRecord, NoteSource, ReadItem } from '../types.ts';
import type { ResolvedReadLimits } from './limits.ts';

/**
 * What to do with bytes that are not valid UTF-8.
 * - `quarantine` (default): the record is quarantined with reason `invalid UTF-8`. Such bytes
 *   mostly mean the file is in another encoding (Latin-1, Windows-1252), where every accented
 *   letter would silently become U+FFFD; a visible quarantine gets the file re-encoded instead of
 *   indexing damaged text.
 * - `replace`: each invalid sequence becomes U+FFFD and the note is kept, unflagged.
 */
export type InvalidUtf8Policy = 'quarantine' | 'replace';

/** The state of one file's read, shared by the entry point and the format reader. */
export interface ReaderContext {
  /** The object: bucket, key, version, etag; readers add `row` or `line`. */
  readonly source: NoteSource;
  readonly limits: ResolvedReadLimits;
  readonly invalidUtf8: InvalidUtf8Policy;
  /** Object metadata (S3 user metadata or sidecar fields), keys lower-cased, `x-amz-meta-` dropped. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Data records yielded so far (notes and quarantined records), for `after N records`. */
  records: number;
}

/** Fields of a note before its source is attached and before {@link checkNote}. */
export interface NoteFields {
  readonly noteId: string | undefined;
  readonly patientId: string | undefined;
  readonly encounterId?: string | undefined;
  readonly noteType?: string | undefined;
  readonly noteDate?: string | undefined;
  readonly text: string;
}

/** Why a record is not a note: a quarantine reason and a detail that never holds note text. */
export interface Rejection {
  readonly reason: string;
  readonly detail?: string;
}

/** Builds a {@link Rejection}. */
export function reject(reason: string, detail?: string): Rejection {
  return detail === undefined ? { reason } : { reason, detail };
}

/** Whether a mapper's result is a {@link Rejection} rather than fields. */
export function isRejection(value: NoteFields | Rejection): value is Rejection {
  return 'reason' in value;
}

/** A quarantine item. */
export function quarantined(source: NoteSource, reason: string, detail?: string): ReadItem {
  return {
    kind: 'quarantined',
    quarantined: detail === undefined ? { source, reason } : { source, reason, detail },
  };
}

/** The quarantine item for the rest of a file once `maxRecordsPerFile` records have been read. */
export function recordLimitReached(ctx: ReaderContext, unit: 'rows' | 'lines'): ReadItem {
  const max = ctx.limits.maxRecordsPerFile;
  return quarantined(
    ctx.source,
    'record limit reached',
    `maxRecordsPerFile (${max}) reached; ${unit} after the first ${max} data ${unit} were not read`,
  );
}

/** Longest id accepted: ids end up in object keys and index metadata. */
const MAX_ID_LENGTH = 256;
// Calendar date, optionally with time and zone: what MIMIC, FHIR (date, dateTime, instant) and ISO
// 8601 exports write. A space between date and time (MIMIC) is accepted and becomes `T`.
const DATE =
  /^\d{4}(?:-(?:0[1-9]|1[0-2])(?:-(?:0[1-9]|[12]\d|3[01])(?:[T ](?:[01]\d|2[0-4]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?)?)?$/;

function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * Normalizes an id read as text: trimmed; a pandas-style float (`12345.0`) loses its `.0`;
 * empty becomes `undefined`.
 */
export function cleanId(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  return /^\d+\.0+$/.test(trimmed) ? trimmed.slice(0, trimmed.indexOf('.')) : trimmed;
}

/** Trimmed text, `undefined` when empty. */
export function cleanText(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

/** Whether bytes may be decoded under the policy (always, with `replace`). */
export function utf8Acceptable(bytes: Uint8Array, policy: InvalidUtf8Policy): boolean {
  return policy === 'replace' || isUtf8(bytes);
}

/**
 * Checks what makes fields a note, in this order: `noteId`, `patientId`, `encounterId` present and
 * sane (no control characters, at most 256 characters), `noteDate` an ISO 8601 date or date-time,
 * text well-formed (a lone surrogate, as a JSON escape `"\ud800"` can give, is `invalid UTF-8`
 * under the `quarantine` policy and becomes U+FFFD under `replace`), text not empty or white space
 * only (`empty note`), text within `maxNoteBytes` (`note over limit`).
 * Returns the note with its source, or the first failure.
 */
export function checkNote(
  fields: NoteFields,
  source: NoteSource,
  limits: ResolvedReadLimits,
  invalidUtf8: InvalidUtf8Policy = 'quarantine',
): ReadItem {
  for (const name of ['noteId', 'patientId'] as const) {
    const id = fields[name];
    if (id === undefined || id === '') return quarantined(source, `missing ${name}`);
    if (id.length > MAX_ID_LENGTH || hasControl(id)) {
      return quarantined(
        source,
        `invalid ${name}`,
        `at most ${MAX_ID_LENGTH} characters, no control characters`,
      );
    }
  }
  const { encounterId, noteType } = fields;
  if (encounterId !== undefined && (encounterId.length > MAX_ID_LENGTH || hasControl(encounterId))) {
    return quarantined(
      source,
      'invalid encounterId',
      `at most ${MAX_ID_LENGTH} characters, no control characters`,
    );
  }
  let noteDate: string | undefined;
  if (fields.noteDate !== undefined && fields.noteDate.trim() !== '') {
    noteDate = fields.noteDate.trim();
    if (!DATE.test(noteDate))
      return quarantined(source, 'invalid noteDate', 'expected an ISO 8601 date or date-time');
    noteDate = noteDate.replace(' ', 'T');
  }
  let text = fields.text;
  // String.prototype.isWellFormed/toWellFormed (Node 20) are newer than the ES2022 typings.
  const wellFormed = text as string & { isWellFormed(): boolean; toWellFormed(): string };
  if (!wellFormed.isWellFormed()) {
    if (invalidUtf8 === 'quarantine') {
      return quarantined(source, 'invalid UTF-8', 'text has a lone surrogate (an unpaired \\u escape)');
    }
    text = wellFormed.toWellFormed();
  }
  if (text.trim() === '') return quarantined(source, 'empty note');
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > limits.maxNoteBytes) {
    return quarantined(source, 'note over limit', `${bytes} bytes, maxNoteBytes ${limits.maxNoteBytes}`);
  }
  const note: NoteRecord = {
    noteId: fields.noteId!,
    patientId: fields.patientId!,
    ...(encounterId === undefined || encounterId === '' ? {} : { encounterId }),
    ...(noteType === undefined || noteType === '' ? {} : { noteType }),
    ...(noteDate === undefined ? {} : { noteDate }),
    text,
    source,
  };
  return { kind: 'note', note };
}
