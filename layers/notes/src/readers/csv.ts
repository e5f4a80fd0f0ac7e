/**
 * Finds where CSV records end in a byte stream, so that one record at a time goes to the CSV
 * parser. A record of a MIMIC file spans many physical lines (TEXT is quoted and multi-line), and
 * a whole file is gigabytes: this splitter holds at most one record (up to the record limit) and
 * skips a longer one as it streams past, still tracking quotes so the next record is found.
 *
 * Quoting rules, shared by the splitter and {@link parseCsvFields} so that both always agree on
 * where a record and its fields end, malformed quoting included:
 * - a quote opens a quoted field only at the start of a field; a quote elsewhere is a literal
 *   character, and so is everything after a closing quote up to the next comma;
 * - inside a quoted field, `""` is a literal quote; a quote followed by a comma, CR, LF or the end
 *   of the data closes the field; any other quote is a literal character (the lenient reading of
 *   unescaped quotes in note text, e.g. `"He said "stop" twice"`);
 * - records end at LF outside quotes (a CR before it is dropped); empty lines are no records.
 * A record still inside quotes at the end of the data is reported `unterminated`.
 *
 * Why not csv-parse (the well-kept streaming parser this project first used, field by field):
 * MIMIC TEXT fields carry unescaped quotes, and csv-parse's lenient mode splits
 * `"He said "stop, "now" please` into different fields than any record splitter that must find
 * record ends in a stream would, which turned one bad row into two and shifted every later row
 * number; and it cannot skip an oversized record while streaming and keep exact row and line
 * numbers. Both matter here (nothing lost, every quarantine pointing at its row), so the splitter
 * and the field parser share these hand-written rules.
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
      /** 1-based physical line (LF-separated) where the record starts. */
      readonly line: number;
      readonly bytes: Buffer;
      /** The data ended inside a quoted field (a truncated file): this record is incomplete. */
      readonly unterminated: boolean;
    }
  | { readonly kind: 'oversize'; readonly index: number; readonly line: number; readonly size: number };

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
  /** Physical line where the current record starts, and LFs inside it so far. */
  #line = 1;
  #innerLfs = 0;

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
        // The quote before this byte escapes this one, closes the field, or is a literal.
        this.#quoteInQuotes = false;
        const next = chunk[i];
        if (next === QUOTE) {
          i++;
          continue;
        }
        // Closed: this byte is read again, outside quotes. Otherwise it is quoted text.
        if (next === COMMA || next === LF || next === CR) this.#inQuotes = false;
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
        this.#line++; // the LF that ended the record
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
    for (let lf = chunk.indexOf(LF, start); lf !== -1 && lf < end; lf = chunk.indexOf(LF, lf + 1)) {
      this.#innerLfs++;
    }
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
    const line = this.#line;
    this.#line += this.#innerLfs;
    this.#innerLfs = 0;
    if (over) {
      out.push({ kind: 'oversize', index: this.#index++, line, size });
      return;
    }
    let bytes = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, size);
    if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1);
    if (bytes.length === 0) return; // an empty line is no record
    // A record found inside one chunk is a view of it: copy so the chunk is not kept alive.
    if (pieces.length === 1) bytes = Buffer.from(bytes);
    out.push({ kind: 'record', index: this.#index++, line, bytes, unterminated });
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

/**
 * Splits one record (as the splitter gives it, decoded) into fields with the same quoting rules as
 * the splitter (see the module comment); `undefined` if it ends inside a quoted field. Never
 * fails otherwise: malformed quoting gives literal quotes, and a wrong field count is the
 * caller's to judge.
 */
export function parseCsvFields(record: string): string[] | undefined {
  const fields: string[] = [];
  const n = record.length;
  let i = 0;
  for (;;) {
    let value = '';
    if (record.charCodeAt(i) === QUOTE) {
      let from = i + 1;
      let search = from;
      for (;;) {
        const q = record.indexOf('"', search);
        if (q === -1) return undefined;
        const next = record.charCodeAt(q + 1);
        if (next === QUOTE) {
          value += record.slice(from, q + 1);
          from = q + 2;
          search = from;
        } else if (q + 1 >= n || next === COMMA || next === LF || next === CR) {
          value += record.slice(from, q);
          i = q + 1;
          break;
        } else {
          search = q + 1; // a literal quote, kept in the text
        }
      }
    }
    const comma = record.indexOf(',', i);
    const end = comma === -1 ? n : comma;
    value += record.slice(i, end);
    fields.push(value);
    if (comma === -1) return fields;
    i = comma + 1;
  }
}
