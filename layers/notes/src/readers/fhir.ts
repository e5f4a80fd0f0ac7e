/**
 * FHIR R4 `DocumentReference` resources, one per line as Bulk Data export writes them
 * (`DocumentReference.ndjson`).
 *
 * - `noteId`: `id`.
 * - `patientId`: the id in `subject.reference` (`Patient/<id>`, also as an absolute URL or with
 *   `/_history/<v>`); any other subject gives `missing patientId`.
 * - `encounterId`: the id in `context.encounter[0].reference` (`Encounter/<id>`), if any.
 * - `noteDate`: `date`, else `context.period.start`.
 * - `noteType`: `type.text`, else `type.coding[0].display`.
 * - `text`: the first `content[].attachment` whose `contentType` is `text/plain` (charset UTF-8,
 *   US-ASCII or none) and that has `data`, base64-decoded and read as UTF-8.
 *
 * Quarantined instead: another `resourceType` (`unsupported resourceType`), `status`
 * `entered-in-error` (`marked as error (status entered-in-error)`), a text/plain attachment given
 * only by `url` (`attachment by URL only (not fetched)`: fetching is a network call with its own
 * credentials, out of a reader's reach), another charset (`unsupported charset`), no text/plain
 * attachment (`no text/plain attachment`), data that is not base64 (`invalid base64`).
 */

import {
  cleanText,
  type InvalidUtf8Policy,
  type NoteFields,
  type Rejection,
  reject,
  utf8Acceptable,
} from './common.ts';
import type { ResolvedReadLimits } from './limits.ts';

const FHIR_ID = '[A-Za-z0-9.-]{1,64}';
const PATIENT_REF = new RegExp(`(?:^|/)Patient/(${FHIR_ID})(?:/_history/[^/]+)?$`);
const ENCOUNTER_REF = new RegExp(`(?:^|/)Encounter/(${FHIR_ID})(?:/_history/[^/]+)?$`);
const UTF8_CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii']);

/**
 * Maps one parsed FHIR resource to note fields, or says why it is not a note.
 * @param limits `maxNoteBytes` is checked on the base64 length, before anything is decoded
 */
export function mapDocumentReference(
  resource: Readonly<Record<string, unknown>>,
  limits: ResolvedReadLimits,
  invalidUtf8: InvalidUtf8Policy,
): NoteFields | Rejection {
  const resourceType = resource['resourceType'];
  if (resourceType !== 'DocumentReference') {
    return reject(
      'unsupported resourceType',
      typeof resourceType === 'string' && /^[A-Za-z]{1,64}$/.test(resourceType)
        ? `resourceType ${resourceType}, expected DocumentReference`
        : 'no resourceType name, expected DocumentReference',
    );
  }
  if (resource['status'] === 'entered-in-error') return reject('marked as error (status entered-in-error)');
  const subject = asObject(resource['subject']);
  const subjectRef =
    typeof subject?.['reference'] === 'string' ? (subject['reference'] as string) : undefined;
  const patientId = subjectRef === undefined ? undefined : PATIENT_REF.exec(subjectRef)?.[1];
  if (subjectRef !== undefined && patientId === undefined) {
    return reject('missing patientId', 'subject.reference is not a Patient reference');
  }
  const context = asObject(resource['context']);
  const encounterRef = asObject(asArray(context?.['encounter'])?.[0])?.['reference'];
  const encounterId = typeof encounterRef === 'string' ? ENCOUNTER_REF.exec(encounterRef)?.[1] : undefined;
  const type = asObject(resource['type']);
  const typeText = typeof type?.['text'] === 'string' ? (type['text'] as string) : undefined;
  const coding = asObject(asArray(type?.['coding'])?.[0]);
  const display = typeof coding?.['display'] === 'string' ? (coding['display'] as string) : undefined;
  const date = resource['date'] ?? asObject(context?.['period'])?.['start'];
  if (date !== undefined && typeof date !== 'string') return reject('invalid noteDate', 'expected a string');
  const text = attachmentText(resource, limits, invalidUtf8);
  if (typeof text === 'object') return text;
  return {
    noteId: typeof resource['id'] === 'string' ? cleanText(resource['id']) : undefined,
    patientId,
    encounterId,
    noteType: cleanText(typeText) ?? cleanText(display),
    noteDate: date,
    text,
  };
}

function attachmentText(
  resource: Readonly<Record<string, unknown>>,
  limits: ResolvedReadLimits,
  invalidUtf8: InvalidUtf8Policy,
): string | Rejection {
  const attachments = (asArray(resource['content']) ?? [])
    .map((c) => asObject(asObject(c)?.['attachment']))
    .filter((a) => a !== undefined);
  const seen: string[] = [];
  let byUrl = false;
  let charsetProblem: Rejection | undefined;
  for (const attachment of attachments) {
    const contentType = typeof attachment['contentType'] === 'string' ? attachment['contentType'] : '';
    const [mime = '', ...params] = contentType.split(';').map((p) => p.trim());
    seen.push(/^[\w.+-]{1,64}\/[\w.+-]{1,64}$/.test(mime) ? mime.toLowerCase() : '(none)');
    if (mime.toLowerCase() !== 'text/plain') continue;
    const charsetParam = params.find((p) => p.toLowerCase().startsWith('charset='));
    const charset = charsetParam?.slice('charset='.length).replace(/^"|"$/g, '').toLowerCase();
    if (charset !== undefined && !UTF8_CHARSETS.has(charset)) {
      charsetProblem ??= reject(
        'unsupported charset',
        /^[\w.:-]{1,40}$/.test(charset) ? `charset ${charset}; UTF-8 is read` : 'UTF-8 is read',
      );
      continue;
    }
    const data = attachment['data'];
    if (typeof data !== 'string') {
      if (typeof attachment['url'] === 'string') byUrl = true;
      continue;
    }
    return decodeBase64Text(data, limits, invalidUtf8);
  }
  if (charsetProblem !== undefined) return charsetProblem;
  if (byUrl) return reject('attachment by URL only (not fetched)');
  return reject(
    'no text/plain attachment',
    seen.length === 0 ? 'no content[].attachment' : `content types: ${[...new Set(seen)].join(', ')}`,
  );
}

function decodeBase64Text(
  data: string,
  limits: ResolvedReadLimits,
  invalidUtf8: InvalidUtf8Policy,
): string | Rejection {
  const compact = /\s/.test(data) ? data.replace(/\s+/g, '') : data;
  const padding = compact.endsWith('==') ? 2 : compact.endsWith('=') ? 1 : 0;
  const decodedLength = Math.floor((compact.length * 3) / 4) - padding;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) return reject('invalid base64');
  if (decodedLength > limits.maxNoteBytes) {
    return reject('note over limit', `${decodedLength} bytes, maxNoteBytes ${limits.maxNoteBytes}`);
  }
  const bytes = Buffer.from(compact, 'base64');
  if (!utf8Acceptable(bytes, invalidUtf8)) return reject('invalid UTF-8');
  const text = bytes.toString('utf8');
  // A BOM inside the attachment is an encoding mark, not text.
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function asObject(v: unknown): Readonly<Record<string, unknown>> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

function asArray(v: unknown): readonly unknown[] | undefined {
  return Array.isArray(v) ? v : undefined;
}
