/**
 * Finds where CSV records end in a byte stream, so that one record at a time goes to the CSV
 * parser. A record of a MIMIC file spans many physical lines (TEXT is quoted and multi-line), and
 * a whole file is gigabytes: this splitter holds at most one record (up to the record limit) and
 * skips a longer one as it streams past, still tracking quotes so the next record is found.
 *
 * It follows the quoting rules csv-parse applies with `relax_quotes`: a quote opens a quoted field
 * only at the start of a field; inside, `""` is a literal quote and any other quote closes the
 * field; a quote elsewhere is a literal character. Records end at LF outside quotes (a CR before
 * it is dropped). Splitting and csv-parse's own parse of each record therefore agree; where they
 * would not (malformed input), the record is quarantined and the next one starts cleanly.
 */

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/** One record's bytes (without its line end), or the size of one skipped for being too long. */
export type CsvRecordBytes =
  | {
      readonly kind: 'record';
      /** 0-based among non-empty records: the header is 0, data rows count from 1. */
      readonly index: number;
      readonly bytes: Buffer;
      /** The data ended inside a quoted field (a truncated file): this record is incomplete. */
      readonly unterminated: boolean;
    }
  | { readonly kind: 'oversize'; readonly index: number; readonly size: number };

/** Incremental record splitter; see the module comment for the quoting rules. */
export class CsvRecordSplitter {
  readonly #maxRecordBytes: number;
  #inQuotes = false;
  #quoteInQuotes = false;
  #fieldStart = true;
  #pieces: Buffer[] = [];
  #size = 0;
  #over = false;
  #index = 0;

  /** @param maxRecordBytes longest record kept; longer ones are reported by size only */
  constructor(maxRecordBytes: number) {
    this.#maxRecordBytes = maxRecordBytes;
  }

  /** Feeds the next chunk; complete records are appended to `out`. */
  push(chunk: Buffer, out: CsvRecordBytes[]): void {
    const n = chunk.length;
    let start = 0;
    let i = 0;
    while (i < n) {
      if (this.#quoteInQuotes) {
        // The quote before this byte either escapes this one or closes the field.
        this.#quoteInQuotes = false;
        if (chunk[i] === QUOTE) {
          i++;
          continue;
        }
        this.#inQuotes = false;
        continue;
      }
      if (this.#inQuotes) {
        // Note text is quoted: jump from quote to quote instead of visiting every byte.
        const q = chunk.indexOf(QUOTE, i);
        if (q === -1) {
          i = n;
          break;
        }
        i = q + 1;
        this.#quoteInQuotes = true;
        continue;
      }
      const b = chunk[i]!;
      if (b === LF) {
        this.#append(chunk, start, i, false);
        this.#emit(out, false);
        i++;
        start = i;
        this.#fieldStart = true;
        continue;
      }
      if (b === QUOTE && this.#fieldStart) this.#inQuotes = true;
      this.#fieldStart = b === COMMA;
      i++;
    }
    // The rest is an unfinished record: copy it, so the chunk itself is not kept alive.
    this.#append(chunk, start, n, true);
  }

  /** Ends the data: the last record, if any, is appended to `out`. */
  end(out: CsvRecordBytes[]): void {
    if (this.#quoteInQuotes) {
      this.#quoteInQuotes = false;
      this.#inQuotes = false;
    }
    this.#emit(out, this.#inQuotes);
    this.#inQuotes = false;
  }

  #append(chunk: Buffer, start: number, end: number, copy: boolean): void {
    const length = end - start;
    if (length === 0) return;
    this.#size += length;
    if (this.#over) return;
    if (this.#size > this.#maxRecordBytes) {
      this.#over = true;
      this.#pieces = [];
      return;
    }
    const piece = chunk.subarray(start, end);
    this.#pieces.push(copy ? Buffer.from(piece) : piece);
  }

  #emit(out: CsvRecordBytes[], unterminated: boolean): void {
    const size = this.#size;
    const over = this.#over;
    const pieces = this.#pieces;
    this.#pieces = [];
    this.#size = 0;
    this.#over = false;
    if (over) {
      out.push({ kind: 'oversize', index: this.#index++, size });
      return;
    }
    let bytes = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, size);
    if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1);
    if (bytes.length === 0) return; // an empty line is no record
    // A record found inside one chunk is a view of it: copy so the chunk is not kept alive.
    if (pieces.length === 1) bytes = Buffer.from(bytes);
    out.push({ kind: 'record', index: this.#index++, bytes, unterminated });
  }
}

/** Splits a byte stream into CSV records; see {@link CsvRecordSplitter}. */
export async function* splitCsvRecords(
  chunks: AsyncIterable<Buffer>,
  maxRecordBytes: number,
): AsyncGenerator<CsvRecordBytes> {
  const splitter = new CsvRecordSplitter(maxRecordBytes);
  const out: CsvRecordBytes[] = [];
  for await (const chunk of chunks) {
    splitter.push(chunk, out);
    // Hand out records one by one; the consumer may stop at any of them.
    for (let i = 0; i < out.length; i++) yield out[i]!;
    out.length = 0;
  }
  splitter.end(out);
  yield* out;
}
