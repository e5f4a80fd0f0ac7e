import { NotesConfigError } from '../errors.ts';

/**
 * Size and count limits of one read. Each bounds memory or work per file; hitting one quarantines
 * the record (or the rest of the file) with a reason, never throws and never grows memory.
 */
export interface ReadLimits {
  /**
   * Most UTF-8 bytes of one note's text. Default 2 MiB (2,097,152). The longest MIMIC notes are
   * around 100 KB, so this is 20× headroom; a note bigger than that is almost always a scanned or
   * concatenated document, and it would cost thousands of 128-token chunks on its own. Applies to
   * the decoded text of every format, and to the whole object in plain-text mode.
   */
  readonly maxNoteBytes?: number;
  /**
   * Most bytes of one NDJSON/JSONL line or one CSV record (all its physical lines), which is what a
   * reader must hold to parse it. Default 8 MiB (8,388,608): a 2 MiB FHIR note is 2.7 MiB once
   * base64-encoded, plus JSON around it. A longer line or record is skipped as it streams past,
   * never held, and quarantined (`line over limit`, `record over limit`).
   */
  readonly maxLineBytes?: number;
  /**
   * Most data records (CSV rows, non-blank NDJSON lines) read from one file. Default 5,000,000:
   * MIMIC-III `NOTEEVENTS.csv` has 2.08 M rows and MIMIC-IV `radiology.csv` 2.3 M. Reading is
   * streaming, so this bounds the work of one job, not memory; the rest of the file is quarantined
   * as one item (`record limit reached`).
   */
  readonly maxRecordsPerFile?: number;
  /**
   * Most bytes of one file after gzip decompression. Default none (`Infinity`): reading is
   * streaming, so size costs time, not memory. Set it to bound the work a gzip bomb can cause; the
   * rest of the file is then quarantined as one item (`file over limit after N records`).
   */
  readonly maxFileBytes?: number;
}

/** {@link ReadLimits} with every default filled in. */
export type ResolvedReadLimits = { readonly [K in keyof ReadLimits]-?: number };

/** The defaults of {@link ReadLimits}. */
export const DEFAULT_READ_LIMITS: ResolvedReadLimits = Object.freeze({
  maxNoteBytes: 2 * 1024 * 1024,
  maxLineBytes: 8 * 1024 * 1024,
  maxRecordsPerFile: 5_000_000,
  maxFileBytes: Number.POSITIVE_INFINITY,
});

/**
 * Fills in defaults and checks ranges.
 * @throws NotesConfigError when a limit is not a positive integer (`maxFileBytes` may be `Infinity`)
 */
export function resolveReadLimits(limits: ReadLimits = {}): ResolvedReadLimits {
  const resolved = { ...DEFAULT_READ_LIMITS };
  for (const name of Object.keys(DEFAULT_READ_LIMITS) as (keyof ResolvedReadLimits)[]) {
    const value = limits[name];
    if (value === undefined) continue;
    const infiniteOk = name === 'maxFileBytes' && value === Number.POSITIVE_INFINITY;
    if (!infiniteOk && !(Number.isSafeInteger(value) && value > 0)) {
      throw new NotesConfigError(`limits.${name} must be a positive integer, got ${String(value)}`);
    }
    resolved[name] = value;
  }
  return resolved;
}
