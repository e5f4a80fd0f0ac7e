/**
 * Line-delimited JSON files: FHIR Bulk Data NDJSON and the JSONL note schema. One item per
 * non-blank line, in order, with `source.line` (1-based, blank lines counted but not read).
 * Per line: `line over limit` (longer than `maxLineBytes`, skipped without being held),
 * `invalid UTF-8`, `malformed JSON`, `not a JSON object`, then the format's own checks. A file
 * with no non-blank line gives one `empty file` item.
 */
import type { ReadItem } from '../types.ts';
import {
  checkNote,
  isRejection,
  quarantined,
  type ReaderContext,
  recordLimitReached,
  utf8Acceptable,
} from './common.ts';
import { mapDocumentReference } from './fhir.ts';
import { mapJsonlNote } from './jsonl.ts';
import { splitLines } from './lines.ts';

/** The two line-delimited layouts. */
export type NdjsonVariant = 'fhir' | 'jsonl';

/** Reads an NDJSON/JSONL file as FHIR `DocumentReference`s or JSONL notes. */
export async function* readNdjson(
  bytes: AsyncIterable<Buffer>,
  ctx: ReaderContext,
  variant: NdjsonVariant,
): AsyncGenerator<ReadItem> {
  const { limits } = ctx;
  let seen = false;
  for await (const item of splitLines(bytes, limits.maxLineBytes)) {
    if (item.kind === 'line' && isBlank(item.bytes)) continue;
    if (ctx.records >= limits.maxRecordsPerFile) {
      yield recordLimitReached(ctx, 'lines');
      return;
    }
    ctx.records++;
    seen = true;
    const source = { ...ctx.source, line: item.line };
    if (item.kind === 'oversize') {
      yield quarantined(source, 'line over limit', `${item.size} bytes, maxLineBytes ${limits.maxLineBytes}`);
      continue;
    }
    if (!utf8Acceptable(item.bytes, ctx.invalidUtf8)) {
      yield quarantined(source, 'invalid UTF-8');
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(item.bytes.toString('utf8'));
    } catch {
      // V8's message quotes the line; it may hold note text, so it is not kept.
      yield quarantined(source, 'malformed JSON');
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      yield quarantined(source, 'not a JSON object');
      continue;
    }
    const record = value as Record<string, unknown>;
    const mapped =
      variant === 'fhir' ? mapDocumentReference(record, limits, ctx.invalidUtf8) : mapJsonlNote(record);
    yield isRejection(mapped)
      ? quarantined(source, mapped.reason, mapped.detail)
      : checkNote(mapped, source, limits, ctx.invalidUtf8);
  }
  if (!seen) yield quarantined(ctx.source, 'empty file', 'only blank lines');
}

function isBlank(bytes: Buffer): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}
