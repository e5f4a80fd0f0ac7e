/**
 * Byte plumbing shared by the readers: normalizing the input body to Buffers, looking at the first
 * bytes without losing them, gzip, and the file-size limit. Everything is pull-based, so a slow
 * consumer slows the source down instead of piling bytes up in memory.
 */
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { NotesError } from '../errors.ts';

/** The body of an object: what the S3 client or `fs.createReadStream` hands over. */
export type ByteBody = AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

/** `1f 8b`: the first two bytes of every gzip member. */
export const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
/** The UTF-8 byte order mark, dropped from the start of a file. */
export const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * Reading had to stop part-way for a reason that belongs to the data (corrupt gzip, file over its
 * size limit). The entry point turns it into one quarantine item for the rest of the file. Errors
 * of the source itself (network, file system) are not wrapped: they propagate, because a retry
 * may succeed where a quarantine would be wrong.
 */
export class StreamStop extends Error {
  /**
   * @param reason quarantine reason, completed with `after N records` by the entry point
   * @param detail more for a person; never note text
   */
  constructor(
    readonly reason: string,
    readonly detail?: string,
  ) {
    super(reason);
    this.name = 'StreamStop';
  }
}

/**
 * Yields the body as Buffers, whatever it is: an async iterable of Uint8Array (the S3 SDK's
 * `Body`), a Node stream (strings are encoded as UTF-8), or an old-style stream without async
 * iteration.
 * @throws NotesError when the body yields something that is not bytes (a caller's mistake)
 */
export async function* toBuffers(body: ByteBody): AsyncGenerator<Buffer> {
  const iterable: AsyncIterable<unknown> =
    Symbol.asyncIterator in body
      ? (body as AsyncIterable<unknown>)
      : new Readable().wrap(body as NodeJS.ReadableStream);
  for await (const chunk of iterable) {
    if (Buffer.isBuffer(chunk)) yield chunk;
    else if (chunk instanceof Uint8Array) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    else if (typeof chunk === 'string') yield Buffer.from(chunk, 'utf8');
    else throw new NotesError(`note body yielded a ${typeof chunk}, expected bytes`);
  }
}

/**
 * An async iterable of Buffers whose first bytes can be looked at (and some dropped) before it is
 * read; reading then starts with those bytes again.
 */
export class PeekableBytes implements AsyncIterable<Buffer> {
  readonly #source: AsyncIterator<Buffer>;
  #head: Buffer = Buffer.alloc(0);
  #done = false;
  #started = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.#source = source[Symbol.asyncIterator]();
  }

  /** Up to `n` first bytes (fewer only at the end of the data), reading as much as needed. */
  async peek(n: number): Promise<Buffer> {
    const parts = [this.#head];
    let length = this.#head.length;
    while (length < n && !this.#done) {
      const next = await this.#source.next();
      if (next.done) this.#done = true;
      else {
        parts.push(next.value);
        length += next.value.length;
      }
    }
    if (parts.length > 1) this.#head = Buffer.concat(parts);
    return this.#head.subarray(0, n);
  }

  /** Drops the first `n` bytes, which must already have been peeked. */
  skip(n: number): void {
    this.#head = this.#head.subarray(Math.min(n, this.#head.length));
  }

  /** Stops the source (e.g. destroys a file stream). Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#source.return?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    if (this.#started) throw new NotesError('PeekableBytes can be read once');
    this.#started = true;
    const head = this.#head;
    this.#head = Buffer.alloc(0);
    try {
      if (head.length > 0) yield head;
      while (!this.#done) {
        const next = await this.#source.next();
        if (next.done) this.#done = true;
        else yield next.value;
      }
    } finally {
      await this.close();
    }
  }
}

/** Decompressed bytes queued ahead of the consumer before the decompressor is paused. */
const GUNZIP_QUEUE_BYTES = 1024 * 1024;

/**
 * Decompresses gzip (concatenated members included) as it streams.
 * @throws StreamStop `corrupt gzip` when the data is not valid gzip, ends early or has trailing
 *   garbage; what zlib decompressed before that has been yielded first (zlib itself discards the
 *   output of an input chunk in which it meets garbage after a complete member)
 */
export async function* gunzip(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const input = Readable.from(source, { objectMode: false });
  const inflate = createGunzip();
  // Driven by 'data' events into a queue of our own rather than by async iteration: a stream that
  // errors discards what it still buffers, and that would lose notes decompressed before the
  // corruption. The queue is bounded by pausing the decompressor, which stops it taking input.
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let failure: { error: unknown } | undefined;
  let sourceError: unknown;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  inflate.on('data', (chunk: Buffer) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= GUNZIP_QUEUE_BYTES) inflate.pause();
    notify();
  });
  inflate.once('end', () => {
    ended = true;
    notify();
  });
  inflate.once('error', (error) => {
    failure ??= { error };
    notify();
  });
  input.once('error', (error) => {
    sourceError = error;
    inflate.destroy(error);
  });
  input.pipe(inflate);
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk !== undefined) {
        queued -= chunk.length;
        if (queued < GUNZIP_QUEUE_BYTES && inflate.isPaused() && failure === undefined) inflate.resume();
        yield chunk;
        continue;
      }
      if (failure !== undefined) {
        if (sourceError !== undefined && failure.error === sourceError) throw sourceError;
        throw new StreamStop('corrupt gzip', zlibDetail(failure.error));
      }
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    input.unpipe(inflate);
    input.destroy();
    inflate.destroy();
  }
}

/** zlib's code and message ("unexpected end of file", "incorrect header check"): never data. */
function zlibDetail(error: unknown): string {
  if (!(error instanceof Error)) return 'gzip error';
  const code = (error as NodeJS.ErrnoException).code;
  return code === undefined ? error.message : `${code}: ${error.message}`;
}

/**
 * Passes bytes through until more than `maxBytes` have gone by.
 * @throws StreamStop `file over limit` instead of yielding the chunk that crosses the limit
 */
export async function* limitBytes(source: AsyncIterable<Buffer>, maxBytes: number): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > maxBytes) throw new StreamStop('file over limit', `more than maxFileBytes (${maxBytes})`);
    yield chunk;
  }
}
