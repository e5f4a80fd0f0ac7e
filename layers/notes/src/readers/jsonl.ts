/**
 * The JSONL note schema: one JSON object per line.
 *
 * ```text
 * noteId       string | integer   required
 * patientId    string | integer   required
 * encounterId  string | integer   optional (null = absent)
 * noteType     string            optional (null = absent)
 * noteDate     string            optional (null = absent), ISO 8601 date or date-time
 * text         string            required, not empty
 * ```
 *
 * Other fields are ignored. A field of another type quarantines the line (`invalid noteDate`,
 * `invalid text`, …); a required one absent, `null` or blank gives `missing noteId` and so on.
 * Checked by hand: the layer has no schema library, and six fields do not need one.
 */
import { type NoteFields, type Rejection, reject } from './common.ts';

/** Maps one parsed JSONL object to note fields, or says why it is not a note. */
export function mapJsonlNote(value: Readonly<Record<string, unknown>>): NoteFields | Rejection {
  const noteId = idField(value, 'noteId');
  if (typeof noteId === 'object') return noteId;
  const patientId = idField(value, 'patientId');
  if (typeof patientId === 'object') return patientId;
  const encounterId = idField(value, 'encounterId');
  if (typeof encounterId === 'object') return encounterId;
  const noteType = stringField(value, 'noteType');
  if (typeof noteType === 'object') return noteType;
  const noteDate = stringField(value, 'noteDate');
  if (typeof noteDate === 'object') return noteDate;
  const text = value['text'];
  if (text === undefined || text === null) return reject('missing text');
  if (typeof text !== 'string') return reject('invalid text', `expected a string, got ${jsonType(text)}`);
  return { noteId, patientId, encounterId, noteType: noteType?.trim(), noteDate, text };
}

/** A string or safe integer id, trimmed; `undefined` when absent, null or blank. */
function idField(value: Readonly<Record<string, unknown>>, name: string): string | undefined | Rejection {
  const v = value[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v.trim() === '' ? undefined : v.trim();
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  return reject(`invalid ${name}`, `expected a string or an integer, got ${jsonType(v)}`);
}

function stringField(value: Readonly<Record<string, unknown>>, name: string): string | undefined | Rejection {
  const v = value[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  return reject(`invalid ${name}`, `expected a string, got ${jsonType(v)}`);
}

/** The JSON type of a value, for details (never the value itself). */
export function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v === 'number' && !Number.isInteger(v) ? 'a non-integer number' : typeof v;
}
