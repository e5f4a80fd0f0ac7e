/**
 * MIMIC-III `NOTEEVENTS.csv` and MIMIC-IV-Note (`discharge.csv`, `radiology.csv`, …) readers.
 *
 * Column names are matched case-insensitively (PhysioNet ships MIMIC-III upper-case, database
 * exports write lower-case). Field mapping:
 *
 * | NoteRecord    | MIMIC-III                                          | MIMIC-IV-Note          |
 * | ------------- | -------------------------------------------------- | ---------------------- |
 * | `noteId`      | `ROW_ID`                                           | `note_id`              |
 * | `patientId`   | `SUBJECT_ID`                                       | `subject_id`           |
 * | `encounterId` | `HADM_ID`                                          | `hadm_id`              |
 * | `noteType`    | `CATEGORY`, or `CATEGORY: DESCRIPTION`             | `note_type` (DS, RR, …)|
 * | `noteDate`    | `CHARTTIME`, else `CHARTDATE`                      | `charttime`            |
 * | `text`        | `TEXT`                                             | `text`                 |
 *
 * Required columns: the id, subject and text columns; without one the file is quarantined whole
 * (`missing column TEXT`). MIMIC-III rows with `ISERROR` = 1 (a note the care giver marked as an
 * error) are not notes: each is yielded as quarantined, reason `marked as error (ISERROR=1)`, so
 * that they are excluded and still counted. Ids written as floats (`12345.0`) lose the `.0`.
 */
import type { NoteSource, ReadItem } from '../types.ts';
import {
  checkNote,
  cleanId,
  cleanText,
  isRejection,
  type NoteFields,
  quarantined,
  type ReaderContext,
  type Rejection,
  recordLimitReached,
  reject,
  utf8Acceptable,
} from './common.ts';
import { parseCsvFields, splitCsvRecords } from './csv.ts';

/** The two CSV layouts. */
export type MimicVariant = 'mimic3' | 'mimic4';

const REQUIRED: Record<MimicVariant, readonly string[]> = {
  mimic3: ['ROW_ID', 'SUBJECT_ID', 'TEXT'],
  mimic4: ['note_id', 'subject_id', 'text'],
};

/** Which variant a header is, from its (lower-cased) column names; `undefined` for neither. */
export function mimicVariantOf(columns: readonly string[]): MimicVariant | undefined {
  if (columns.includes('note_id')) return 'mimic4';
  if (columns.includes('row_id')) return 'mimic3';
  return undefined;
}

/** Parses one CSV line as a header: trimmed, lower-cased names, or `undefined` if it does not parse. */
export function parseCsvHeader(line: Buffer): string[] | undefined {
  return parseCsvFields(line.toString('utf8'))?.map((c) => c.trim().toLowerCase());
}

/**
 * Reads a MIMIC CSV file. One item per data row, in order, with `source.row` (1-based, header 0;
 * empty lines are not rows) and `source.line` (the 1-based physical line where the row starts, as
 * an editor shows it); file-level problems (no header, neither layout, a required column missing,
 * no data row: `empty file`) give one quarantine item for the file. Records are split and their
 * fields parsed with the same quoting rules (`csv.ts`), so a row with malformed quoting is one
 * item and never shifts the rows after it.
 * @param variant forced layout; default: from the header
 */
export async function* readMimicCsv(
  bytes: AsyncIterable<Buffer>,
  ctx: ReaderContext,
  variant?: MimicVariant,
): AsyncGenerator<ReadItem> {
  const { maxLineBytes, maxRecordsPerFile } = ctx.limits;
  let columns: ReadonlyMap<string, number> | undefined;
  let layout: MimicVariant | undefined = variant;
  let width = 0;
  let dataRows = 0;
  for await (const record of splitCsvRecords(bytes, maxLineBytes)) {
    if (columns === undefined) {
      const header = record.kind === 'record' ? parseCsvHeader(record.bytes) : undefined;
      if (header === undefined) {
        yield quarantined(ctx.source, 'unknown format', 'first CSV record is not a readable header');
        return;
      }
      layout ??= mimicVariantOf(header);
      if (layout === undefined) {
        yield quarantined(
          ctx.source,
          'unknown format',
          'CSV header has neither ROW_ID (MIMIC-III NOTEEVENTS) nor note_id (MIMIC-IV-Note)',
        );
        return;
      }
      const missing = REQUIRED[layout].find((name) => !header.includes(name.toLowerCase()));
      if (missing !== undefined) {
        yield quarantined(ctx.source, `missing column ${missing}`, `required for ${layout}`);
        return;
      }
      const map = new Map<string, number>();
      header.forEach((name, i) => {
        if (!map.has(name)) map.set(name, i);
      });
      columns = map;
      width = header.length;
      continue;
    }
    if (ctx.records >= maxRecordsPerFile) {
      yield recordLimitReached(ctx, 'rows');
      return;
    }
    ctx.records++;
    dataRows++;
    const source = { ...ctx.source, row: record.index, line: record.line };
    if (record.kind === 'oversize') {
      yield quarantined(source, 'record over limit', `${record.size} bytes, maxLineBytes ${maxLineBytes}`);
      continue;
    }
    yield readRow(record.bytes, record.unterminated, columns, width, layout!, source, ctx);
  }
  if (columns === undefined) yield quarantined(ctx.source, 'empty file', 'no CSV record');
  else if (dataRows === 0) yield quarantined(ctx.source, 'empty file', 'a CSV header and no data row');
}

function readRow(
  bytes: Buffer,
  unterminated: boolean,
  columns: ReadonlyMap<string, number>,
  width: number,
  layout: MimicVariant,
  source: NoteSource,
  ctx: ReaderContext,
): ReadItem {
  if (unterminated) return quarantined(source, 'malformed CSV row', 'quote not closed at end of file');
  if (!utf8Acceptable(bytes, ctx.invalidUtf8)) return quarantined(source, 'invalid UTF-8');
  // The splitter ended this record outside quotes, so with the same rules it always parses.
  const fields = parseCsvFields(bytes.toString('utf8'));
  if (fields === undefined) return quarantined(source, 'malformed CSV row', 'quote not closed');
  if (fields.length !== width) {
    return quarantined(source, 'wrong column count', `expected ${width} fields, got ${fields.length}`);
  }
  const get = (name: string): string | undefined => {
    const i = columns.get(name);
    return i === undefined ? undefined : fields[i];
  };
  const mapped = layout === 'mimic3' ? mapMimic3(get) : mapMimic4(get);
  if (isRejection(mapped)) return quarantined(source, mapped.reason, mapped.detail);
  return checkNote(mapped, source, ctx.limits, ctx.invalidUtf8);
}

function mapMimic3(get: (name: string) => string | undefined): NoteFields | Rejection {
  const isError = get('iserror')?.trim();
  if (isError !== undefined && isError !== '' && Number(isError) === 1)
    return reject('marked as error (ISERROR=1)');
  const category = cleanText(get('category'));
  const description = cleanText(get('description'));
  const noteType =
    category !== undefined &&
    description !== undefined &&
    description.toLowerCase() !== category.toLowerCase()
      ? `${category}: ${description}`
      : (category ?? description);
  // CHARTDATE is a date column; some exports add a midnight time to it, which says nothing.
  const chartDate = cleanText(get('chartdate'))?.replace(/[T ]00:00:00(?:\.0+)?$/, '');
  return {
    noteId: cleanId(get('row_id')),
    patientId: cleanId(get('subject_id')),
    encounterId: cleanId(get('hadm_id')),
    noteType,
    noteDate: cleanText(get('charttime')) ?? chartDate,
    text: get('text') ?? '',
  };
}

function mapMimic4(get: (name: string) => string | undefined): NoteFields {
  return {
    noteId: cleanId(get('note_id')),
    patientId: cleanId(get('subject_id')),
    encounterId: cleanId(get('hadm_id')),
    noteType: cleanText(get('note_type')),
    noteDate: cleanText(get('charttime')),
    text: get('text') ?? '',
  };
}
