/**
 * Plain-text notes: the whole object is one note.
 *
 * Ids come from the object key when it has the layout `…/patients/<patientId>/notes/<noteId>.txt`
 * (`.txt` and `.gz` are dropped from the note id; the key is taken as given, not URL-decoded).
 * Otherwise from object metadata (S3 user metadata `x-amz-meta-patient-id` arrives as
 * `patient-id`; a sidecar file's fields can be passed the same way): `patient-id` and `note-id`.
 * The key wins when both are there. Metadata may add `encounter-id`, `note-type` and `note-date`
 * in either case. With neither, the object is quarantined unread: `cannot tell patient and note ids`.
 */
import type { ReadItem } from '../types.ts';
import { checkNote, cleanId, cleanText, quarantined, type ReaderContext, utf8Acceptable } from './common.ts';

const KEY_LAYOUT = /(?:^|\/)patients\/([^/]+)\/notes\/([^/]+)$/;

/** Patient and note ids for a plain-text object, from its key or else its metadata. */
export function textNoteIds(
  key: string,
  metadata: Readonly<Record<string, string>>,
): { readonly patientId: string; readonly noteId: string } | undefined {
  const match = KEY_LAYOUT.exec(key);
  if (match !== null) {
    const patientId = cleanId(match[1]);
    const noteId = cleanId(match[2]!.replace(/\.gz$/i, '').replace(/\.txt$/i, ''));
    if (patientId !== undefined && noteId !== undefined) return { patientId, noteId };
  }
  const patientId = cleanId(metadata['patient-id']);
  const noteId = cleanId(metadata['note-id']);
  return patientId !== undefined && noteId !== undefined ? { patientId, noteId } : undefined;
}

/**
 * Reads a plain-text object as one note. At most `maxNoteBytes` are held; a longer object is
 * quarantined (`note over limit`) without reading the rest.
 */
export async function* readTextNote(
  bytes: AsyncIterable<Buffer>,
  ctx: ReaderContext,
): AsyncGenerator<ReadItem> {
  const ids = textNoteIds(ctx.source.key, ctx.metadata);
  if (ids === undefined) {
    yield quarantined(
      ctx.source,
      'cannot tell patient and note ids',
      'expected a key …/patients/<patientId>/notes/<noteId>.txt or metadata patient-id and note-id',
    );
    return;
  }
  const max = ctx.limits.maxNoteBytes;
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const chunk of bytes) {
    size += chunk.length;
    if (size > max) {
      ctx.records++;
      yield quarantined(ctx.source, 'note over limit', `more than maxNoteBytes (${max}) bytes`);
      return;
    }
    pieces.push(chunk);
  }
  const body = Buffer.concat(pieces, size);
  ctx.records++;
  if (!utf8Acceptable(body, ctx.invalidUtf8)) {
    yield quarantined(ctx.source, 'invalid UTF-8');
    return;
  }
  const { metadata } = ctx;
  yield checkNote(
    {
      ...ids,
      encounterId: cleanId(metadata['encounter-id']),
      noteType: cleanText(metadata['note-type']),
      noteDate: cleanText(metadata['note-date']),
      text: body.toString('utf8'),
    },
    ctx.source,
    ctx.limits,
    ctx.invalidUtf8,
  );
}
