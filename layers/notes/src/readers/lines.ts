/**
 * Splits a byte stream into lines for the NDJSON/JSONL readers, holding at most one line, and
 * skipping a line longer than the limit as it streams past (only its length is kept).
 */

const LF = 0x0a;
const CR = 0x0d;

/** One line (without its line end), or the length of one skipped for being too long. */
export type LineBytes =
  | { readonly kind: 'line' /** 1-based */; readonly line: number; readonly bytes: Buffer }
  | { readonly kind: 'oversize' /** 1-based */; readonly line: number; readonly size: number };

/**
 * Yields every line, blank ones included (so that line numbers are those an editor shows), with a
 * trailing CR dropped. A last line without LF is yielded too.
 */
export async function* splitLines(
  chunks: AsyncIterable<Buffer>,
  maxLineBytes: number,
): AsyncGenerator<LineBytes> {
  let pieces: Buffer[] = [];
  let size = 0;
  let over = false;
  let line = 0;
  const finish = (): LineBytes => {
    line++;
    const item: LineBytes = over
      ? { kind: 'oversize', line, size }
      : { kind: 'line', line, bytes: dropCr(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, size)) };
    pieces = [];
    size = 0;
    over = false;
    return item;
  };
  const append = (chunk: Buffer, start: number, end: number): void => {
    size += end - start;
    if (over || end === start) return;
    if (size > maxLineBytes) {
      over = true;
      pieces = [];
      return;
    }
    // Copied, so that a chunk is not kept alive by a short piece of it.
    pieces.push(Buffer.from(chunk.subarray(start, end)));
  };
  for await (const chunk of chunks) {
    let start = 0;
    for (let lf = chunk.indexOf(LF); lf !== -1; lf = chunk.indexOf(LF, start)) {
      append(chunk, start, lf);
      yield finish();
      start = lf + 1;
    }
    append(chunk, start, chunk.length);
  }
  if (size > 0 || over) yield finish();
}

function dropCr(bytes: Buffer): Buffer {
  return bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.subarray(0, bytes.length - 1) : bytes;
}
