/**
 * Format detection, from the key's extension and the first bytes of the (decompressed) data.
 *
 * - `.csv` → MIMIC CSV; the header tells MIMIC-III (`ROW_ID`) from MIMIC-IV-Note (`note_id`).
 * - `.ndjson`, `.jsonl` → line-delimited JSON; the first record tells FHIR (it has a
 *   `resourceType`, whatever the type) from the JSONL note schema.
 * - `.txt` → plain text.
 * - Any other name (`.gz` is looked through): the content decides. A first line that is a JSON
 *   object → JSON lines as above; a CSV header with `ROW_ID` or `note_id` → MIMIC; otherwise plain
 *   text when the key or metadata give the ids (see `text.ts`); otherwise `unknown format`.
 */

import type { NoteFormat } from '../types.ts';
import { type Rejection, reject } from './common.ts';
import { type MimicVariant, mimicVariantOf, parseCsvHeader } from './mimic.ts';
import type { NdjsonVariant } from './ndjson.ts';
import { textNoteIds } from './text.ts';

/** How the file will be read. */
export type ReadPlan =
  | { readonly reader: 'csv'; readonly variant?: MimicVariant }
  | { readonly reader: 'ndjson'; readonly variant: NdjsonVariant }
  | { readonly reader: 'text' }
  | { readonly reader: 'unknown'; readonly detail: string };

/** Bytes looked at to detect the format. */
export const SNIFF_BYTES = 64 * 1024;
/** Bytes looked at to tell binary from text. */
export const BINARY_SAMPLE_BYTES = 1024;

/**
 * Says why data cannot be text, from its first bytes: a UTF-16 byte order mark
 * (`unsupported encoding`), or more than 8 (or 10 %) NUL and other control bytes that text does not
 * hold (tab, line ends, form feed and escape excepted) in the first KiB (`binary content`).
 * Compressed or random bytes have about 11 % such bytes; a PDF or image, far more in its header.
 */
export function contentProblem(head: Buffer): Rejection | undefined {
  if (
    head.length >= 2 &&
    ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff))
  ) {
    return reject('unsupported encoding', 'UTF-16 byte order mark; re-encode as UTF-8');
  }
  const sample = head.subarray(0, BINARY_SAMPLE_BYTES);
  let control = 0;
  for (const b of sample) {
    if ((b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0c && b !== 0x0d && b !== 0x1b) || b === 0x7f)
      control++;
  }
  if (control > 8 || (sample.length > 0 && control / sample.length > 0.1)) {
    return reject('binary content', `${control} control bytes in the first ${sample.length}`);
  }
  return undefined;
}

/**
 * Chooses the reader.
 * @param head the first {@link SNIFF_BYTES} of the data, after gzip and BOM
 * @param whole whether `head` is all of the data
 * @param format a forced format, or `auto`
 */
export function planRead(
  head: Buffer,
  whole: boolean,
  key: string,
  metadata: Readonly<Record<string, string>>,
  format: NoteFormat | 'auto',
): ReadPlan {
  switch (format) {
    case 'mimic3':
    case 'mimic4':
      return { reader: 'csv', variant: format };
    case 'fhir':
    case 'jsonl':
      return { reader: 'ndjson', variant: format };
    case 'text':
      return { reader: 'text' };
  }
  const extension = /\.([A-Za-z0-9]+)$/.exec(key.replace(/\.gz$/i, ''))?.[1]?.toLowerCase();
  if (extension === 'csv') return { reader: 'csv' };
  if (extension === 'ndjson' || extension === 'jsonl') {
    return { reader: 'ndjson', variant: jsonVariant(head, whole) ?? 'jsonl' };
  }
  if (extension === 'txt') return { reader: 'text' };
  const firstByte = head.find((b) => b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d);
  if (firstByte === 0x7b) {
    const variant = jsonVariant(head, whole, true);
    if (variant !== undefined) return { reader: 'ndjson', variant };
  }
  const first = firstLine(head, whole);
  if (first !== undefined) {
    const header = parseCsvHeader(Buffer.from(first, 'utf8'));
    if (header !== undefined && mimicVariantOf(header) !== undefined) return { reader: 'csv' };
  }
  if (textNoteIds(key, metadata) !== undefined) return { reader: 'text' };
  return {
    reader: 'unknown',
    detail: 'no .csv, .ndjson, .jsonl or .txt name, and the content looks like none of them',
  };
}

/** The first non-blank line, if it ends within `head` (or `head` is the whole data). */
function firstLine(head: Buffer, whole: boolean): string | undefined {
  let start = 0;
  while (start < head.length) {
    const lf = head.indexOf(0x0a, start);
    if (lf === -1 && !whole) return undefined;
    const end = lf === -1 ? head.length : lf;
    const line = head.subarray(start, end).toString('utf8').replace(/\r$/, '');
    if (line.trim() !== '') return line;
    if (lf === -1) return undefined;
    start = lf + 1;
  }
  return undefined;
}

/**
 * FHIR when the first record has a `resourceType`, else JSONL. A first line too long to parse here
 * (a large base64 attachment) is judged by whether `"resourceType":` appears in `head`.
 * @param strict `undefined` unless the first line is a complete JSON object
 */
function jsonVariant(head: Buffer, whole: boolean, strict = false): NdjsonVariant | undefined {
  const line = firstLine(head, whole);
  if (line === undefined) {
    if (strict && whole) return undefined;
    return /"resourceType"\s*:/.test(head.toString('latin1')) ? 'fhir' : 'jsonl';
  }
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return strict ? undefined : 'jsonl';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return strict ? undefined : 'jsonl';
  return 'resourceType' in value ? 'fhir' : 'jsonl';
}
